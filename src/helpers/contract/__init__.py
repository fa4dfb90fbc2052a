"""INGEST, first step: the input data contract (spec/his-extract.md, version 2) and the one
loader that enforces it. :mod:`helpers.warehouse` loads what this package accepts.

The package: :mod:`.tables` (the contract as data), :mod:`.dialect` (reading one CSV or
parquet file as raw text, and parsing that text), :mod:`.checks` (pandera column checks,
rules across tables, problems); this module holds the public API and its result classes.

Every table of the contract is a :class:`TableSpec` in :data:`TABLES`. Each file is read as
raw text first (so a problem shows the value exactly as delivered), checked per column with
a pandera schema built from the spec (all problems of a file at once, ``lazy=True``), then
typed. Rules across tables (patients exist, dates in range, ends after starts, practice
folders match the register) run vectorised on the typed frames.

>>> from helpers import contract
>>> register = contract.read_practices(dataset)                     # doctest: +SKIP
>>> data = contract.load_practice(dataset, register.practices.iloc[0])  # doctest: +SKIP
>>> data.contacts.head()                                             # doctest: +SKIP

Which files are required is our reading of the contract ("a missing optional file means
no rows"): ``practices.csv`` for the dataset and ``patients.csv`` for each practice are
required (see :data:`REQUIRED_FILES`); every other table, and ``payments.csv``, may be
absent and then has no rows.

Where the contract leaves room, this is how we read it:

- Codes (sex, kind, role, programme, main_practitioner) are case-sensitive as listed. ICPC
  and ATC codes are accepted in either case and stored in upper case.
- Every cell is trimmed; a cell of only spaces is empty (= missing).
- Numbers: one decimal comma or point, an optional sign; no thousands separators
  (``1.234,5`` is refused: ``1.234`` would be ambiguous). ``int`` holds up to 9 digits.
- ``insurer_uzovi`` is 4 digits in payments.csv too. ``invoice_number`` is not checked.
- payments.csv dates are only bounded below (1900-01-01): payment rounds come after the
  HIS extraction. A payments row with a problem refuses the practice it belongs to; a row
  whose practice_agb is not in practices.csv is a problem of no practice.
- ``x.csv`` and ``x.parquet`` side by side is a problem. An empty (0-byte) optional file is
  no rows, with a warning. Hidden folders under extracts/ (``.x``, ``__x``) are ignored.
- For a parquet file, ``line`` is the row number + 1, as if it had been exported with a header.
- Problems are listed per file: the first of each kind, then the rest, in line order.
- veelgebruikers_plan.csv (version 2, optional): ``profile`` is checked against the ids in
  ``parameters/veelgebruikers.yaml`` (the frequent-attender monitor's profiles,
  ``helpers.rules.veelgebruikers``); without that file any code-like value
  (``[a-z0-9_-]{1,40}``) would be accepted. A version-1 delivery (no plan) loads as before,
  with no plan rows.

This module touches patient rows. Warnings and logs name files and columns only; patient
values appear only in :class:`~helpers.errors.Problem` entries, which the contract asks for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..errors import ContractError, Problem
from .checks import (_check_file, _fingerprints, _for_reading, _periods_and_refs, profile_ids, profile_problems,
                     schema_for)
from .dialect import _read, _to_date, isin, parse_dates, parse_ints, parse_numbers
from .tables import (CONTACT_KINDS, CONTACT_ROLES, DATE_EXPECTED, EARLIEST_BIRTH_YEAR, EARLIEST_DATE,
                     INT_EXPECTED, NUM_EXPECTED, OPTIONAL_FILES, PRACTICE_TABLES, PROGRAMMES, REQUIRED_FILES,
                     TABLES, TYPES, VEELGEBRUIKERS_FILE, VERSION_2_TABLES, ColumnSpec, TableSpec)

__all__ = [
    # reading and loading
    "read_practices", "load_practice", "read_payments", "load_payments", "practice_files",
    "PracticesResult", "PracticeData", "PaymentsResult",
    # the contract as data
    "TABLES", "TYPES", "ColumnSpec", "TableSpec", "PRACTICE_TABLES", "VERSION_2_TABLES", "REQUIRED_FILES",
    "OPTIONAL_FILES", "PROGRAMMES", "CONTACT_KINDS", "CONTACT_ROLES", "EARLIEST_DATE", "EARLIEST_BIRTH_YEAR",
    "DATE_EXPECTED", "INT_EXPECTED", "NUM_EXPECTED", "VEELGEBRUIKERS_FILE",
    # parsing and checks
    "parse_dates", "parse_numbers", "parse_ints", "isin", "schema_for", "profile_ids",
]

log = logging.getLogger("spiegel.contract")

# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass
class PracticesResult:
    """What :func:`read_practices` found in ``practices.csv``.

    ``practices``: typed rows of the practices that passed (register row valid and a folder
    present). ``problems``: practice_agb (or folder name) -> problems that refuse it.
    ``file_problems``: problems that belong to no practice (a row without an AGB code).
    ``known``: every practice named by the register or by a folder.
    ``fingerprints``: practice_agb -> the raw text of its register row (for content hashes).
    """

    practices: pd.DataFrame
    problems: dict[str, list[Problem]]
    file_problems: list[Problem]
    warnings: list[str]
    known: list[str]
    fingerprints: dict[str, str] = field(default_factory=dict)
    source: str = "practices.csv"


@dataclass
class PracticeData:
    """The typed tables of one accepted practice, each with a ``practice_agb`` column."""

    practice_agb: str
    patients: pd.DataFrame
    episodes: pd.DataFrame
    contacts: pd.DataFrame
    measurements: pd.DataFrame
    prescriptions: pd.DataFrame
    referrals: pd.DataFrame
    enrolments: pd.DataFrame
    veelgebruikers_plan: pd.DataFrame  # version 2; no rows when the practice delivered no plan
    warnings: list[str] = field(default_factory=list)
    absent: tuple[str, ...] = ()  # tables whose file the practice did not deliver

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in PRACTICE_TABLES}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in PRACTICE_TABLES:
            raise KeyError(name)
        return getattr(self, name)

    def row_counts(self) -> dict[str, int]:
        """Rows per table; a version-2 table only when delivered (a version-1 delivery's counts
        stay what they were)."""
        return {name: int(len(df)) for name, df in self.tables.items()
                if not (name in VERSION_2_TABLES and name in self.absent)}


@dataclass
class PaymentsResult:
    """All of payments.csv, typed, with problems per practice (see :func:`read_payments`)."""

    payments: pd.DataFrame  # every row with a usable practice_agb (rows with problems too)
    problems: dict[str, list[Problem]]  # practice_agb -> problems in its rows
    file_problems: list[Problem]  # problems tied to no registered practice
    warnings: list[str]
    fingerprints: dict[str, str] = field(default_factory=dict)  # agb -> raw text of its rows

    def all_problems(self) -> list[Problem]:
        out = list(self.file_problems)
        for probs in self.problems.values():
            out += probs
        return _for_reading(out)


def _log(warnings: Iterable[str]) -> None:
    for w in warnings:
        log.warning(w)


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


def read_practices(dataset: Path) -> PracticesResult:
    """Read and check the practice register; match it against the folders under extracts/.

    Raises ContractError when the register itself can't be used (missing, unreadable,
    required columns missing). Problems of single rows refuse only that practice.

    >>> reg = read_practices(Path("data/demo"))   # doctest: +SKIP
    >>> reg.practices.practice_agb.tolist(), sorted(reg.problems)  # doctest: +SKIP
    """
    dataset = Path(dataset)
    table = TABLES["practices"]
    if not dataset.is_dir():
        raise ContractError([Problem(str(dataset), None, None, None, "a dataset folder")], subject=f"dataset {dataset}")
    checked = _check_file(dataset, table, "")
    _log(checked.warnings)
    fatal = [p for p in checked.problems if p.line in (None, 1)]
    if checked.raw is None or fatal or len(checked.raw.columns) == 0:
        raise ContractError(fatal or checked.problems, subject=f"dataset {dataset}")

    raw, typed = checked.raw, checked.typed
    problems: dict[str, list[Problem]] = {}
    file_problems: list[Problem] = []
    agb_at_line = raw["practice_agb"]
    for p in checked.problems:
        agb = agb_at_line.get(p.line) if p.line is not None else None
        if agb is None or pd.isna(agb):
            file_problems.append(p)
        else:
            problems.setdefault(str(agb), []).append(p)

    extracts = dataset / "extracts"
    folders = sorted(
        p.name for p in extracts.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))
    ) if extracts.is_dir() else []
    listed = agb_at_line.dropna()
    for line, agb in listed.items():
        if agb not in folders:
            problems.setdefault(str(agb), []).append(Problem(
                checked.rel, int(line), "practice_agb", agb,
                f"a folder extracts/{agb}/ with the practice's extraction (or remove the row)"))
    for folder in folders:
        if folder not in set(listed):
            problems.setdefault(folder, []).append(Problem(
                f"extracts/{folder}/", None, None, folder,
                f"a row for practice {folder} in {checked.rel} (every folder under extracts/ needs one)"))

    ok = listed.index[~listed.isin(list(problems))]
    practices = typed.loc[ok].reset_index(drop=True)
    for agb in problems:
        problems[agb] = _for_reading(problems[agb])
    known = sorted(set(map(str, listed)) | set(folders))
    return PracticesResult(
        practices=practices,
        problems=problems,
        file_problems=_for_reading(file_problems),
        warnings=checked.warnings,
        known=known,
        fingerprints=_fingerprints(raw, table),
        source=checked.rel,
    )


def load_practice(dataset: Path, practice, profiles: Iterable[str] | None = None) -> PracticeData:
    """Check every file of one practice's extraction and return its typed tables.

    ``practice`` is its register row (a row of ``read_practices(...).practices`` or a dict
    with at least ``practice_agb`` and ``extraction_date``). ``profiles``: the allowed
    veelgebruikers_plan profiles (default: the ids in ``parameters/veelgebruikers.yaml`` when
    that file exists, else any code-like value). Raises ContractError
    (subject ``practice <agb>``) listing every problem of every file.

    >>> data = load_practice(Path("data/demo"), {"practice_agb": "01234567", "extraction_date": "2025-07-01"})  # doctest: +SKIP
    >>> data.patients.dtypes  # doctest: +SKIP
    """
    dataset = Path(dataset)
    row = dict(practice)
    agb = str(row["practice_agb"])
    try:
        extraction_date = _to_date(row["extraction_date"])
    except (KeyError, ValueError) as e:
        raise ContractError([Problem("practices.csv", None, "extraction_date", row.get("extraction_date"), DATE_EXPECTED)],
                            subject=f"practice {agb}") from e
    folder = dataset / "extracts" / agb
    rel_folder = f"extracts/{agb}/"
    problems: list[Problem] = []
    warnings: list[str] = []

    if folder.is_dir():
        allowed = {f"{t}.{ext}" for t in PRACTICE_TABLES for ext in ("csv", "parquet")}
        unknown = sorted(p.name for p in folder.iterdir() if p.name not in allowed and not p.name.startswith("."))
        if unknown:
            warnings.append(f"{rel_folder}: file(s) not in the contract ignored: {', '.join(unknown)}")

    frames: dict[str, pd.DataFrame] = {}
    absent: list[str] = []
    patient_ids = None
    allowed_profiles = tuple(map(str, profiles)) if profiles is not None else profile_ids(VEELGEBRUIKERS_FILE)
    for name in PRACTICE_TABLES:
        table = TABLES[name]
        checked = _check_file(folder, table, rel_folder, extraction_date)
        file_problems = list(checked.problems)
        if name == "patients" and "patient_id" in checked.usable:
            # Without a usable patients.csv every reference would fail: that is one problem, not thousands.
            patient_ids = checked.raw["patient_id"].dropna()
        file_problems += _periods_and_refs(checked, table, patient_ids)
        if name == "veelgebruikers_plan":
            file_problems += profile_problems(checked, allowed_profiles)
        if not checked.usable:
            absent.append(name)
        problems += _for_reading(file_problems)
        warnings += checked.warnings
        df = checked.typed.reset_index(drop=True)
        df.insert(0, "practice_agb", pd.Series(agb, index=df.index, dtype="str"))
        frames[name] = df

    _log(warnings)
    if problems:
        raise ContractError(problems, subject=f"practice {agb}")
    return PracticeData(practice_agb=agb, warnings=warnings, absent=tuple(absent), **frames)


def read_payments(dataset: Path, registered: Iterable[str]) -> PaymentsResult:
    """Check payments.csv; problems grouped by the practice whose row has them.

    Rows whose practice_agb is not in ``registered`` (the AGB codes of practices.csv) are
    problems tied to no practice. A missing payments.csv means no payments.
    """
    dataset = Path(dataset)
    table = TABLES["payments"]
    registered = set(map(str, registered))
    checked = _check_file(dataset, table, "")
    _log(checked.warnings)
    raw, typed = checked.raw, checked.typed
    problems: dict[str, list[Problem]] = {}
    file_problems: list[Problem] = []
    agbs = raw["practice_agb"] if "practice_agb" in raw.columns else pd.Series([], dtype="str")
    unknown = agbs.notna() & ~isin(agbs, list(registered))
    for line, agb in zip(agbs.index[unknown], agbs[unknown]):
        file_problems.append(Problem(checked.rel, int(line), "practice_agb", agb, "a practice_agb listed in practices.csv"))
    for p in checked.problems:
        agb = agbs.get(p.line) if p.line is not None else None
        if agb is None or pd.isna(agb) or agb not in registered:
            file_problems.append(p)
        else:
            problems.setdefault(str(agb), []).append(p)
    df = typed[agbs.isin(list(registered))].reset_index(drop=True) if len(typed) else typed.reset_index(drop=True)
    for agb in problems:
        problems[agb] = _for_reading(problems[agb])
    return PaymentsResult(
        payments=df,
        problems=problems,
        file_problems=_for_reading(file_problems),
        warnings=checked.warnings,
        fingerprints=_fingerprints(raw, table),
    )


def load_payments(dataset: Path, valid_practices: set[str]) -> tuple[pd.DataFrame, list[Problem], list[str]]:
    """Typed payments of the accepted practices, every problem in payments.csv, warnings.

    A row whose practice_agb is not in practices.csv is a problem. Rows of practices not in
    ``valid_practices`` (refused ones) are left out. Rows with problems are left out too.

    >>> payments, problems, warnings = load_payments(Path("data/demo"), {"01234567"})  # doctest: +SKIP
    """
    dataset = Path(dataset)
    registered = _registered_agbs(dataset)
    result = read_payments(dataset, registered)
    df = result.payments
    valid = set(map(str, valid_practices)) - set(result.problems)
    df = df[df["practice_agb"].isin(list(valid))].reset_index(drop=True)
    return df, result.all_problems(), result.warnings


def _registered_agbs(dataset: Path) -> set[str]:
    """AGB codes in practices.csv as written (also rows with problems)."""
    table = TABLES["practices"]
    raw_result, _ = _read(dataset, table, "")
    if raw_result.frame is None or "practice_agb" not in raw_result.frame.columns:
        return set()
    return set(raw_result.frame["practice_agb"].dropna().astype(str))


def practice_files(dataset: Path, agb: str) -> list[Path]:
    """The contract files present in one practice's folder, sorted (for content hashes)."""
    folder = Path(dataset) / "extracts" / str(agb)
    if not folder.is_dir():
        return []
    names = {f"{t}.{ext}" for t in PRACTICE_TABLES for ext in ("csv", "parquet")}
    return sorted(p for p in folder.iterdir() if p.name in names and p.is_file())
