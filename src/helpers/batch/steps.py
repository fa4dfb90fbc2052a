"""The data steps of a build, each in a worker (the coordinator never loads patient tables):
ingest the dataset when its files changed, prepare each quarter's cube once."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..atomic import write_atomic
from ..config import cube_dir
from ..errors import ParameterError
from ..quarter import Quarter
from .batchfile import Batch
from .cache import dataset_fingerprint
from .manifest import _now_iso


def check_register(b: Batch, in_warehouse) -> None:
    """Before the (long) ingest: the dataset's practices.csv is usable (else ContractError, one
    line), and every practice the batch names is in it or already in the warehouse."""
    from ..contract import read_practices
    register = read_practices(b.dataset)
    known = set(register.known) | set(in_warehouse)
    unknown = [agb for agb in b.practices or [] if agb not in known]
    if unknown:
        listed = ", ".join(register.known[:12]) + (" ..." if len(register.known) > 12 else "")
        raise ParameterError(f"practice {', '.join(unknown)} is neither in {b.dataset / register.source} nor in "
                             f"the warehouse {b.warehouse.name} (the register lists {listed or 'none'}): "
                             f"check --practice or `practices:` in {b.source}")


def ingest_task(warehouse: str, dataset: str) -> dict:
    """Run in a worker: load changed practices; return counts and messages (no rows)."""
    from ..warehouse import Warehouse
    report = Warehouse(warehouse).ingest(Path(dataset))
    return {"loaded": report.loaded, "unchanged": report.unchanged, "refused": report.refused,
            "failed": report.failed, "dataset_problems": report.dataset_problems,
            "warnings": report.warnings, "seconds": report.timings.get("total")}


def prepare_task(warehouse: str, quarter: str, force: bool = False) -> dict:
    """Run in a worker: compute (or reuse) the quarter cube; return its key and timing."""
    from ..cube import prepare_quarter, read_meta
    t0 = time.perf_counter()
    path = prepare_quarter(warehouse, quarter, force=force)
    meta = read_meta(path)
    return {"path": str(path), "key": meta.get("key"), "seconds": round(time.perf_counter() - t0, 3),
            "computed_at": meta.get("computed_at"), "timings_s": meta.get("timings_s")}


def _fresh_cube(warehouse: Path, quarter: str) -> dict | None:
    """The cube's record when it is up to date (same key as the data, rules and code now)."""
    from ..cube.prepare import cube_key
    meta_file = cube_dir(warehouse, quarter) / "cube.json"
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("key") != cube_key(warehouse, Quarter.parse(quarter)):
            return None
    except (OSError, ValueError):
        return None
    return {"path": str(meta_file.parent), "key": meta["key"], "seconds": 0.0,
            "computed_at": meta.get("computed_at"), "timings_s": meta.get("timings_s")}


def _ingest_if_changed(b: Batch, executor_factory, out) -> dict | None:
    """Ingest the batch's dataset when its files or the warehouse changed since the last build.

    The state file beside the warehouse remembers the dataset's fingerprint and the refused
    practices, so an unchanged dataset costs a directory listing, not a worker."""
    from ..warehouse import Warehouse
    state_path = Path(str(b.warehouse) + ".ingest.json")
    fingerprint = dataset_fingerprint(b.dataset)
    hashes = Warehouse(b.warehouse).practice_hashes() if b.warehouse.exists() else {}
    if state_path.exists() and not b.force:
        try:
            state = json.loads(state_path.read_text())
            if (state.get("dataset") == str(b.dataset.resolve()) and state.get("fingerprint") == fingerprint
                    and state.get("practice_hashes") == hashes):
                return {"skipped": True, "refused": state.get("refused", {}), "failed": state.get("failed", {})}
        except ValueError:
            pass
    check_register(b, hashes)
    out(f"ingest {b.dataset} -> {b.warehouse} ...")
    t0 = time.perf_counter()
    result = executor_factory().call("helpers.batch.steps:ingest_task", str(b.warehouse), str(b.dataset))
    result["seconds"] = round(time.perf_counter() - t0, 3)
    hashes = Warehouse(b.warehouse).practice_hashes()
    write_atomic(state_path, json.dumps({
        "dataset": str(b.dataset.resolve()), "fingerprint": fingerprint, "practice_hashes": hashes,
        "refused": result["refused"], "failed": result["failed"], "checked_at": _now_iso()}, indent=1))
    return result
