"""Writing the demo care group: :func:`generate` draws the plan and the register, generates each
practice, writes the dataset, its payments and the ground truth beside it, and replaces the
output folder safely (only a folder it wrote, never the project, data or home folder; a crash
leaves the previous dataset whole). Also :func:`edit_first_patient`, a new extraction of one
practice for benchmarks and tests."""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import config
from ..atomic import temp_path, write_atomic
from ..config import PARAMETERS_DIR
from ..errors import ParameterError, SpiegelError
from ..rules.contracts import load_contracts
from ..rules.programmes import load_programmes
from ..quarter import Quarter
from . import practice
from .constants import (EPOCH, GROUND_TRUTH_COLUMNS, GROUND_TRUTH_KINDS, LATEST_EXTRACTION, MARKER, MAX_AGE,
                        MIRROR_TRUTH_COLUMNS, MONEY_TRUTH_COLUMNS, PAYMENT_COLUMNS, PLAN_COLUMNS, TABLE_COLUMNS)
from .payments import declarations
from .plan import _make_plan, _practice_register
from .text import _Text, _write_csv


@dataclass
class DemoSummary:
    """What :func:`generate` wrote."""

    out: Path
    ground_truth: Path
    practices: int
    regions: int
    patients: int
    registered: int
    rows: dict[str, int]
    reference_quarter: str
    planted: dict[str, int]
    seconds: float
    seed: int
    extraction_date: date
    mirror_truth: Path | None = None  # the planted care-use profiles (helpers.demo.plant)
    money_truth: Path | None = None  # the money per practice x programme x quarter x insurer (helpers.demo.payments)

    def describe(self) -> str:
        rows = ", ".join(f"{k} {v}" for k, v in self.rows.items())
        defects = {k: v for k, v in self.planted.items() if k not in ("excluded_by_reason", "implausible_value")}
        planted = ", ".join(f"{k} {v}" for k, v in defects.items())
        return (
            f"Demo care group written to {self.out}: {self.practices} practices in {self.regions} regions, "
            f"{self.patients} patients ({self.registered} registered on {self.extraction_date.isoformat()}). "
            f"Rows: {rows}. Reference quarter {self.reference_quarter}: {sum(defects.values())} planted findings "
            f"({planted}), plus {self.planted.get('implausible_value', 0)} implausible values and "
            f"{self.planted.get('excluded_by_reason', 0)} patients excluded by a recorded reason; ground truth in "
            f"{self.ground_truth}. Seed {self.seed}, {self.seconds:.1f} s."
        )


def generate(
    out: Path,
    practices: int = 12,
    regions: int = 2,
    seed: int = 20261123,
    extraction_date: date = date(2026, 10, 5),
    years: int = 3,
    *,
    parameters: Path | None = None,
    force: bool = False,
) -> DemoSummary:
    """Write the demo care group to ``out`` and its ground truth to ``<out>.ground_truth.csv``.

    Beside it, ``<out>.mirror_truth.csv`` lists the planted care-use profiles (see
    :mod:`helpers.demo.plant`) and ``<out>.money_truth.csv`` the expected money (see
    :mod:`helpers.demo.payments`). Deterministic: the same arguments give the same files, byte
    for byte. The dataset is written into a temporary of helpers.atomic's one scheme
    (``.<out>.tmp-<pid>-<random>``) and renamed into place at the end (an older ``out`` is
    moved aside first and removed once the new one is in place, or put back when that fails),
    so a crashed run never leaves a dataset that looks complete.
    ``out`` may be new, an empty folder or a dataset this function wrote (it holds
    :data:`MARKER`); anything else is refused unless ``force``, and even then ``out`` is never
    the project, ``data/``, the working folder, the home folder or a folder above one of them.
    ``parameters`` points to another folder with codes.yaml and programmes.yaml, and
    optionally contracts.yaml (default: the project's ``parameters/``).
    """
    t0 = time.perf_counter()
    out = Path(out)
    if practices < 1:
        raise ValueError("practices must be at least 1")
    if years < 1:
        raise ValueError("years must be at least 1")
    if seed < 0:
        raise ParameterError(f"seed {seed} is negative: give a whole number from 0 on (e.g. 20261123)")
    earliest = _earliest_extraction(years)
    if not earliest <= extraction_date <= LATEST_EXTRACTION:
        raise ParameterError(
            f"extraction date {extraction_date.isoformat()} is outside what the demo can generate: choose a "
            f"date from {earliest.isoformat()} to {LATEST_EXTRACTION.isoformat()}")
    truth_path = out.parent / f"{out.name}.ground_truth.csv"
    mirror_path = out.parent / f"{out.name}.mirror_truth.csv"
    money_path = out.parent / f"{out.name}.money_truth.csv"
    _check_replaceable(out, truth_path, force)
    _check_replaceable_beside(mirror_path, MIRROR_TRUTH_COLUMNS, "the planted care-use profiles", force)
    _check_replaceable_beside(money_path, MONEY_TRUTH_COLUMNS, "the money ground truth", force)
    params = Path(parameters) if parameters else PARAMETERS_DIR
    rules = load_programmes(params / "programmes.yaml", params / "codes.yaml")
    plan = _make_plan(rules, seed, extraction_date, years)
    plan.contracts = load_contracts(params / "contracts.yaml" if (params / "contracts.yaml").is_file() else
                                    PARAMETERS_DIR / "contracts.yaml")
    register = _practice_register(plan, practices, regions)

    # one naming scheme for every temporary (helpers.atomic): a killed run's leftovers are told by pid
    tmp = temp_path(out)
    old = temp_path(out)  # what out held, until the new one is in place
    truth_tmp, mirror_tmp, money_tmp = temp_path(truth_path), temp_path(mirror_path), temp_path(money_path)
    rows = {t: 0 for t in TABLE_COLUMNS}
    rows["payments"] = 0
    patients = registered = 0
    truth: list[tuple] = []
    mirror: list[tuple] = []
    payments: list[tuple] = []
    money: list[tuple] = []
    first_q = Quarter.containing(date.fromordinal(EPOCH.toordinal() + plan.H0))
    quarters = []
    qq = first_q
    while qq <= plan.quarter:
        quarters.append(qq)
        qq = qq.next()
    max_ext = max(i.ext for i in register)
    try:
        (tmp / "extracts").mkdir(parents=True)
        (tmp / MARKER).write_text(
            "Written by `spiegel demo-data`: the next run replaces this folder. Remove this file to keep it.\n",
            encoding="utf-8")
        fte = {}
        for info in register:
            prac = practice.make_practice(plan, info)
            folder = tmp / "extracts" / info.agb
            folder.mkdir()
            for name, cols in TABLE_COLUMNS.items():
                table = prac.tables[name]
                rows[name] += _write_csv(folder / f"{name}.csv", {c: table[c] for c in cols}, bom=info.bom)
            patients += prac.n
            n_reg = int(((prac.reg <= info.ext) & (prac.leave > info.ext)).sum())
            registered += n_reg
            fte[info.agb] = round(n_reg / 2095 * prac.rng.uniform(0.9, 1.1), 1)
            for i, p, kind, control in prac.truth:
                truth.append((info.agb, str(prac.pid[i]), p, kind, control, str(plan.quarter)))
            mirror += [(info.agb, m, d, f"{f:.2f}") for m, d, f in prac.profile_truth]
            if prac.plan_rows:
                _write_csv(folder / "veelgebruikers_plan.csv", {
                    c: pa.array([str(r[k]) for r in prac.plan_rows], pa.string()) for k, c in enumerate(PLAN_COLUMNS)},
                    bom=info.bom)
            pay_rows, money_rows = declarations(prac, quarters, max_ext)
            payments += pay_rows
            money += money_rows
        text = plan.text
        _write_csv(tmp / "practices.csv", {
            "practice_agb": pa.array([i.agb for i in register], pa.string()),
            "name": pa.array([i.name for i in register], pa.string()),
            "region": pa.array([i.region for i in register], pa.string()),
            "hagro": pa.array([i.hagro for i in register], pa.string()),
            "his_system": pa.array([i.his for i in register], pa.string()),
            "fte_gp": _Text.decimal(np.array([max(fte[i.agb], 0.5) for i in register]), 1),
            "extraction_date": text.dates(np.array([i.ext for i in register])),
        })
        pay = list(zip(*payments)) if payments else [[] for _ in PAYMENT_COLUMNS]
        rows["payments"] = _write_csv(tmp / "payments.csv", {
            "practice_agb": pa.array(list(pay[0]), pa.string()),
            "programme": pa.array(list(pay[1]), pa.string()),
            "quarter": pa.array(list(pay[2]), pa.string()),
            "insurer_uzovi": pa.array(list(pay[3]), pa.string()),
            "patients_declared": _Text.ints(np.array(pay[4], dtype=np.int64)),
            "patients_awarded": _Text.ints(np.array(pay[5], dtype=np.int64)),
            "amount_eur": _Text.decimal(np.array(pay[6], dtype=float), 2),
            "paid_on": text.dates(np.array(pay[7], dtype=np.int64)),
            "invoice_number": pa.array(list(pay[8]), pa.string()),
        })
        truth.sort()
        tr = list(zip(*truth)) if truth else [[] for _ in GROUND_TRUTH_COLUMNS]
        _write_csv(truth_tmp, {c: pa.array(list(v), pa.string()) for c, v in zip(GROUND_TRUTH_COLUMNS, tr)})
        mirror.sort()
        mt = list(zip(*mirror)) if mirror else [[] for _ in MIRROR_TRUTH_COLUMNS]
        _write_csv(mirror_tmp, {c: pa.array(list(v), pa.string()) for c, v in zip(MIRROR_TRUTH_COLUMNS, mt)})
        money.sort()
        mo = list(zip(*money)) if money else [[] for _ in MONEY_TRUTH_COLUMNS]
        _write_csv(money_tmp, {c: pa.array(list(v), pa.string()) for c, v in zip(MONEY_TRUTH_COLUMNS, mo)})
        if out.exists() or out.is_symlink():
            out.rename(old)
        tmp.rename(out)
        os.replace(truth_tmp, truth_path)
        os.replace(mirror_tmp, mirror_path)
        os.replace(money_tmp, money_path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        truth_tmp.unlink(missing_ok=True)
        mirror_tmp.unlink(missing_ok=True)
        money_tmp.unlink(missing_ok=True)
        if old.exists() or old.is_symlink():  # put the previous dataset back
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out)
            old.rename(out)
        if isinstance(exc, OSError):  # unwritable, missing or full: the user's to fix, not a bug
            raise SpiegelError(f"cannot write the demo dataset to {out}: "
                               f"{exc.strerror or exc}; choose a folder you can write to with --out") from None
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    elif old.exists() or old.is_symlink():
        old.unlink()
    planted = {k: 0 for k in GROUND_TRUTH_KINDS}
    for t in truth:
        planted[t[3]] += 1
    return DemoSummary(
        out=out, ground_truth=truth_path, practices=practices, regions=len({i.region for i in register}),
        patients=patients, registered=registered, rows=rows, reference_quarter=str(plan.quarter),
        planted=planted, seconds=time.perf_counter() - t0, seed=seed, extraction_date=extraction_date,
        mirror_truth=mirror_path, money_truth=money_path,
    )


def _earliest_extraction(years: int) -> date:
    """The oldest patient, born MAX_AGE years before the history starts, must be born in or after
    the contract's earliest birth year."""
    from ..contract import EARLIEST_BIRTH_YEAR
    return date(EARLIEST_BIRTH_YEAR + MAX_AGE + years + 1, 1, 1)


def _is_demo_dataset(folder: Path, truth_path: Path) -> bool:
    if (folder / MARKER).is_file():
        return True
    # datasets written before the marker existed: the generator alone writes this pair
    return (folder / "practices.csv").is_file() and _is_ground_truth(truth_path)


def _is_ground_truth(path: Path, columns=GROUND_TRUTH_COLUMNS) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\n") == ";".join(columns)
    except (OSError, UnicodeDecodeError):
        return False


def _check_replaceable_beside(path: Path, columns, what: str, force: bool) -> None:
    """A truth file beside the dataset is replaced only when the generator wrote it (or ``force``)."""
    if path.is_dir() or path.is_symlink():
        raise ParameterError(f"{path} (where {what} go) is a folder or a link: move it away")
    if path.exists() and not _is_ground_truth(path, columns) and not force:
        raise ParameterError(f"{path} (where {what} go) was not written by `spiegel demo-data`: move it away, "
                             "or add --force to replace it")


def _check_replaceable(out: Path, truth_path: Path, force: bool) -> None:
    """Refuse to replace what generate() did not write (unless ``force``), and never a folder
    that holds the project, the data, the working folder or the home folder."""
    target = out.resolve()
    if target.parent == Path(target.anchor):
        raise ParameterError(f"--out {out} is a top-level folder: give a folder of its own, e.g. data/demo")
    kept = (config.PROJECT_ROOT, config.DATA_DIR, config.OUTPUTS_DIR, config.PARAMETERS_DIR,
            Path.cwd().resolve(), Path.home().resolve(), Path(sys.prefix).resolve())
    for path in kept:
        if target == path or target in path.parents:
            raise ParameterError(
                f"--out {out} would replace {path}: give a folder of its own for the demo dataset, e.g. data/demo")
    if out.is_symlink():
        if not force:
            raise ParameterError(f"--out {out} is a symbolic link: give the folder itself, or add --force "
                                 "to replace the link (its target is left alone)")
    elif out.is_dir():
        if any(out.iterdir()) and not _is_demo_dataset(out, truth_path) and not force:
            raise ParameterError(
                f"--out {out} is a folder that was not written by `spiegel demo-data` (no {MARKER} file): "
                "choose a new or empty folder, or add --force to replace it")
    elif out.exists() and not force:
        raise ParameterError(f"--out {out} is a file: choose a new or empty folder, or add --force to replace it")
    if truth_path.is_dir() or truth_path.is_symlink():
        raise ParameterError(f"{truth_path} (where the ground truth goes) is a folder or a link: move it away")
    if truth_path.exists() and not _is_ground_truth(truth_path) and not force:
        raise ParameterError(
            f"{truth_path} (where the ground truth goes) is not a demo ground truth: move it away, "
            "or add --force to replace it")


def edit_first_patient(dataset: Path, agb: str, edit=None) -> bytes:
    """Change one practice's delivery the way a new extraction would: apply ``edit`` to the
    first data row of its patients.csv (default: move the patient to another postcode),
    keeping its BOM. Returns the file's original bytes, so a caller can put it back.
    Benchmarks and tests use it to show that only that practice's runs are redone.

    >>> original = edit_first_patient(Path("data/demo"), "01124526")   # doctest: +SKIP
    """
    def new_postcode(line: str) -> str:
        cols = line.split(";")
        cols[3] = "1011" if cols[3] != "1011" else "1012"
        return ";".join(cols)

    path = Path(dataset) / "extracts" / agb / "patients.csv"
    raw = path.read_bytes()
    lines = raw.decode("utf-8-sig").splitlines(keepends=True)
    lines[1] = (edit or new_postcode)(lines[1])
    bom = "\ufeff" if raw.startswith(b"\xef\xbb\xbf") else ""
    write_atomic(path, bom + "".join(lines))
    return raw
