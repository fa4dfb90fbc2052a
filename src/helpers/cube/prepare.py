"""Compute once, render many: every figure of a quarter for every practice, stored as parquet.

``prepare_quarter`` runs the set-based SQL of findings, indicators and data quality over
the whole warehouse once per quarter and writes the *quarter cube*; notebooks only read
their practice's slice with ``read_slice``. The cube holds patient-level rows (findings,
data-quality listings): it lives beside the warehouse under ``data/``, never in outputs.

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


def _write_atomic(target: Path, tables: dict[str, pd.DataFrame], meta: dict) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, df in tables.items():
        df.to_parquet(tmp / f"{name}.parquet", index=False)
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
    return h.hexdigest()


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
    meta = {"quarter": str(quarter), "key": key, "computed_at": datetime.now(timezone.utc).isoformat(),
            "spiegel_version": __version__, "parameters_hash": parameters_hash(), "practices": n,
            "timings_s": timings, "seconds": round(time.perf_counter() - start, 3)}
    _write_atomic(target, tables, meta)
    return target


def read_meta(cube: Path) -> dict:
    """The cube's ``cube.json``: quarter, key, timings, versions."""
    return json.loads((Path(cube) / "cube.json").read_text())
