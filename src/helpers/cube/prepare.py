"""Compute once, render many: every figure of a quarter for every practice, stored as parquet.

``prepare_quarter`` runs the set-based SQL of findings, indicators and data quality over
the whole warehouse once per quarter (``compute.compute_cube``), then the prepare step of
every registered report (``helpers.reports.prepare_steps``), and writes the *quarter cube*;
practice reports read their practice's slice with ``read_slice``, shared-scope reports only
the suppressed tables under ``<cube>/shared/`` (``helpers.cube.shared``). The cube holds
patient-level rows (findings, data-quality listings): it lives beside the warehouse under
``data/``, never in outputs.

>>> path = prepare_quarter("data/warehouse.duckdb", "2026Q3")        # doctest: +SKIP
>>> read_slice(path, "findings", practice_agb="01000001")             # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from .. import __version__
from ..config import PACKAGE_DIR, PARAMETERS_DIR, cube_dir
from ..errors import ParameterError, SpiegelError
from ..quarter import Quarter
from .compute import compute_cube


def parameter_files(directory: Path = PARAMETERS_DIR) -> list[Path]:
    """Every file of ``parameters/`` the figures and reports may depend on: all of it, sub-folders
    included, except batch files and hidden files (editor swap files).

    A batch file is told by its content, not its name: a YAML file at the top of ``parameters/``
    that holds a mapping with only batch-file keys (``helpers.batch.BATCH_KEYS``), like ``demo.yaml``. Which practices and quarters a batch builds is in each run's own key, so
    editing a batch file reruns nothing; ``codes.yaml`` or ``programmes.yaml`` are no batch files.
    """
    directory = Path(directory)
    files = [f for f in directory.rglob("*")
             if f.is_file() and not any(part.startswith(".") for part in f.relative_to(directory).parts)
             and "__pycache__" not in f.parts]
    return sorted((f for f in files if not (f.parent == directory and is_batch_file(f))),
                  key=lambda f: f.relative_to(directory).as_posix())


def is_batch_file(path: Path) -> bool:
    """A YAML mapping with nothing but batch-file keys (``description``, ``quarters``, ``reports``, ...)."""
    import yaml

    from ..batch.batchfile import BATCH_KEYS
    if Path(path).suffix.lower() not in (".yaml", ".yml"):
        return False
    try:
        data = yaml.load(Path(path).read_bytes(), Loader=getattr(yaml, "CBaseLoader", yaml.BaseLoader))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False   # unreadable: hashed like any rules file, so a fix is seen
    return isinstance(data, dict) and bool(data) and all(k in BATCH_KEYS for k in data)


def parameters_hash(directory: Path = PARAMETERS_DIR) -> str:
    """Hash of ``parameter_files()``: names (relative to ``parameters/``) and bytes."""
    h = hashlib.sha256()
    for f in parameter_files(directory):
        h.update(f.relative_to(directory).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def code_files(package: Path = PACKAGE_DIR) -> list[Path]:
    """Every ``.py`` file of the helpers package, subpackages included (``__pycache__`` not)."""
    package = Path(package)
    return sorted((f for f in package.rglob("*.py") if "__pycache__" not in f.relative_to(package).parts),
                  key=lambda f: f.relative_to(package).as_posix())


def code_hash(package: Path = PACKAGE_DIR) -> str:
    """Hash of the helpers package source (``code_files``: relative names and bytes): a change
    in the logic, in any subpackage, invalidates the cube and every run."""
    h = hashlib.sha256()
    for f in code_files(package):
        h.update(f.relative_to(package).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _write_atomic(target: Path, tables: dict[str, pd.DataFrame], meta: dict,
                  shared: tuple[list, dict[str, pd.DataFrame]] = ((), {})) -> None:
    from .shared import SHARED_DIR, write_shared
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, df in tables.items():
        df.to_parquet(tmp / f"{name}.parquet", index=False)
    declared, frames = shared
    write_shared(tmp / SHARED_DIR, list(declared), frames)
    (tmp / "cube.json").write_text(json.dumps(meta, indent=2, default=str))
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def cube_key(warehouse: Path, quarter: Quarter) -> str:
    """What the cube depends on: the data of every practice, the rules and the code."""
    from ..warehouse import Warehouse
    hashes = Warehouse(warehouse).practice_hashes()
    h = hashlib.sha256(json.dumps(sorted(hashes.items())).encode())
    h.update(str(quarter).encode())
    h.update(parameters_hash().encode())
    h.update(code_hash().encode())
    h.update(prepare_signature().encode())
    return h.hexdigest()


def prepare_signature() -> str:
    """What the registered reports' prepare steps add to the cube key: their report ids and
    table declarations, and the source of a step defined outside the helpers package (a plugin),
    so registering or changing one prepares the cube again."""
    import inspect

    from ..reports import prepare_steps
    parts = []
    for report_id, step in prepare_steps():
        source = ""
        try:
            f = Path(inspect.getsourcefile(step.function) or "").resolve()
            if f.is_file() and PACKAGE_DIR.resolve() not in f.parents:
                source = hashlib.sha256(f.read_bytes()).hexdigest()
        except TypeError:
            pass
        parts.append([report_id, list(step.tables), [repr(t) for t in step.shared], source])
    return json.dumps(parts)


def run_prepare_steps(con, quarter: Quarter, tables: dict[str, pd.DataFrame]):
    """The registered reports' prepare steps over the computed core tables: returns
    (practice-level tables for the cube, declared shared tables, their frames, timings)."""
    from ..reports import prepare_steps
    from .memo import prepare_pass
    kept, declared, frames, timings = {}, [], {}, {}
    with prepare_pass():   # figures several steps need are computed once (``cube.memo``)
        for report_id, step in prepare_steps():
            _run_step(con, quarter, tables, report_id, step, kept, declared, frames, timings)
    return kept, declared, frames, timings


def _run_step(con, quarter, tables, report_id, step, kept, declared, frames, timings) -> None:
    """One report's prepare step, its tables checked and filed (``run_prepare_steps``)."""
    t0 = time.perf_counter()
    try:
        out = step.function(con, quarter, dict(tables))
    except SpiegelError:
        raise
    except Exception as exc:  # noqa: BLE001 - named for the user, with the report
        raise SpiegelError(f"report {report_id}: its prepare step failed: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    names = step.table_names()
    got = set(out or {})
    if got != set(names):
        raise SpiegelError(f"report {report_id}: its prepare step returned {', '.join(sorted(got)) or 'nothing'}; "
                           f"it declares {', '.join(names) or 'nothing'}")
    for name in names:
        if name in tables or name in kept or name in frames:
            raise SpiegelError(f"report {report_id}: prepare table {name!r} is already in the cube; rename it")
    for name in step.tables:
        if "practice_agb" not in out[name].columns:
            raise SpiegelError(f"report {report_id}: prepare table {name!r} needs a practice_agb column "
                               f"(read_slice filters on it)")
        kept[name] = out[name]
    for t in step.shared:
        declared.append(t)
        frames[t.name] = out[t.name]
    timings[f"prepare_{report_id}"] = round(time.perf_counter() - t0, 3)


def add_findings_history(con, quarter: Quarter, tables: dict[str, pd.DataFrame]):
    """Give the cube's findings their history (``findings.findings_history``): the findings get
    first seen, quarters open and status, and the cube the tables ``findings_resolved`` (the
    previous quarter's findings gone now, patient-level) and ``findings_history`` (counts per
    practice, programme and group); returns the core shared table (``findings_resolution``)
    as (declarations, frames) for ``write_shared``."""
    from ..rules.programmes import load_programmes
    from .findings import findings_history
    from .shared import core_shared_tables, findings_resolution_frame
    tables["findings"], tables["findings_resolved"], tables["findings_history"] = findings_history(
        con, quarter, load_programmes(), tables["findings"])
    declared = core_shared_tables()
    return declared, {declared[0].name: findings_resolution_frame(tables["practices"], tables["findings_history"])}


def prepare_quarter(warehouse: Path | str, quarter: Quarter | str, force: bool = False) -> Path:
    """Compute the cube of ``quarter`` (unless it is up to date) and return its folder."""
    quarter = Quarter.parse(quarter)
    warehouse = Path(warehouse)
    if not warehouse.exists():
        raise ParameterError(f"warehouse {warehouse} does not exist: run `spiegel ingest <dataset>` first")
    target = cube_dir(warehouse, str(quarter))
    key = cube_key(warehouse, quarter)
    meta_file = target / "cube.json"
    if not force and meta_file.exists():
        try:
            if json.loads(meta_file.read_text()).get("key") == key:
                return target
        except json.JSONDecodeError:
            pass
    from ..warehouse import Warehouse
    start = time.perf_counter()
    with Warehouse(warehouse).connect(read_only=True) as con:
        n = con.execute("SELECT count(*) FROM practices").fetchone()[0]
        if n == 0:
            raise SpiegelError(f"warehouse {warehouse} holds no practices: run `spiegel ingest <dataset>` first")
        tables, timings = compute_cube(con, quarter)
        t0 = time.perf_counter()
        core_declared, core_frames = add_findings_history(con, quarter, tables)
        timings["findings_history"] = round(time.perf_counter() - t0, 3)
        kept, declared, frames, step_timings = run_prepare_steps(con, quarter, tables)
        declared, frames = [*core_declared, *declared], {**core_frames, **frames}
    meta = {"quarter": str(quarter), "key": key, "computed_at": datetime.now(timezone.utc).isoformat(),
            "spiegel_version": __version__, "parameters_hash": parameters_hash(), "practices": n,
            "timings_s": {**timings, **step_timings}, "seconds": round(time.perf_counter() - start, 3),
            "report_tables": sorted(kept), "shared_tables": sorted(t.name for t in declared)}
    _write_atomic(target, {**tables, **kept}, meta, (declared, frames))
    return target


def read_meta(cube: Path) -> dict:
    """The cube's ``cube.json``: quarter, key, timings, versions."""
    return json.loads((Path(cube) / "cube.json").read_text())
