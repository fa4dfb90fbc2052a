"""The executed notebook as the run keeps it: same inputs, same bytes (cell ids from their
position, no execution times), and cells counted as the author counts them (without the
parameters cell papermill injects).

>>> import nbformat
>>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("x")])
>>> nb.cells[1]["id"] = "kept"; fix_cell_ids(nb, ["", "kept"]); [c["id"] for c in nb.cells]
['cell-0', 'kept']
"""

from __future__ import annotations

import json
from pathlib import Path

from .spec import RunSpec, first_line

__all__ = ["fix_cell_ids", "drop_timestamps", "stopped_cell", "source_cell_index"]


def fix_cell_ids(nb, source_ids: list) -> None:
    """Same inputs, same bytes: the cells papermill adds (the injected parameters) or gives
    a random id (upgrading a notebook without ids) get ids derived from their position."""
    keep = {i for i in source_ids if i}
    used = set()
    for index, cell in enumerate(nb.cells):
        cid = cell.get("id")
        if cid not in keep or cid in used:
            tags = cell.get("metadata", {}).get("tags", [])
            base = "injected-parameters" if "injected-parameters" in tags else f"cell-{index}"
            cid, n = base, 1
            while cid in keep or cid in used:
                n += 1
                cid = f"{base}-{n}"
            cell["id"] = cid
        used.add(cid)


def drop_timestamps(nb, spec: RunSpec) -> None:
    """Same inputs, same bytes: no execution times in the notebook (the manifest has the
    run's timings)."""
    meta = nb.metadata.get("papermill", {})
    for key in ("start_time", "end_time", "duration"):
        meta.pop(key, None)
    meta["output_path"] = spec.files["ipynb"]
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
        for key in ("start_time", "end_time", "duration"):
            cell.get("metadata", {}).get("papermill", {}).pop(key, None)


def stopped_cell(nb, executed_index: int | None) -> dict:
    """The cell that was running when the run was stopped, marked failed (the cells after it
    stay pending), and its index as the author counts cells (without the injected cell)."""
    if nb is None or executed_index is None:
        return {}
    cell = nb.cells[executed_index]
    cell.setdefault("metadata", {}).setdefault("papermill", {})["status"] = "failed"
    injected = sum("injected-parameters" in c.get("metadata", {}).get("tags", [])
                   for c in nb.cells[:executed_index])
    return {"cell_index": executed_index - injected, "cell_source": first_line(cell.get("source", ""), 120)}


def source_cell_index(executed_index: int, partial: str | None) -> int:
    """Map papermill's index (which counts the injected parameters cell) to the cell
    index in the notebook the author edits."""
    if partial:
        try:
            nb = json.loads(Path(partial).read_text(encoding="utf-8"))
            cells = [c for c in nb["cells"] if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
            injected = [i for i, c in enumerate(cells)
                        if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
            if injected and executed_index > injected[0]:
                return executed_index - 1
        except (OSError, ValueError, KeyError):
            pass
    return executed_index
