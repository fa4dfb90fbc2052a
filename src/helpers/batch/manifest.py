"""``outputs/<quarter>/manifest.json``: every run's parameters, status, timings, cache key and
output hashes, written atomically as each run finishes; what an interrupt leaves is discarded.

A run's files are renamed into place by the build after its entry is saved with the renames
to come (``committing``: pairs of temporary and final path, relative to the quarter), and the
note goes once they are done. A build killed in between leaves entry, note and temporaries;
the next build first completes those renames (``complete_commits``), so entry and files agree
again, then removes every other temporary."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path

from ..atomic import write_atomic
from ..runner.staging import NOT_FILES


class Manifest:
    """``outputs/<quarter>/manifest.json``: every run with parameters, status, timings,
    cache key, output hashes and versions. No patient data: counts and names only."""

    def __init__(self, outputs: Path, quarter: str):
        self.path = Path(outputs) / quarter / "manifest.json"
        self.quarter = quarter
        self.data = {"quarter": quarter, "runs": {}}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
                self.data.setdefault("runs", {})
            except ValueError:
                pass   # a damaged manifest means: rebuild everything of this quarter

    @property
    def runs(self) -> dict:
        return self.data["runs"]

    def up_to_date(self, spec) -> bool:
        entry = self.runs.get(spec.name)
        if not entry or entry.get("status") != "done" or entry.get("cache_key") != spec.cache_key:
            return False
        root = self.path.parent
        records = list(entry.get("outputs", {}).values()) + list(entry.get("extras", []))
        wanted = {"ipynb", "html", *spec.formats}
        if not wanted <= set(entry.get("outputs", {})):
            return False
        for rec in records:
            p = root / rec["path"]
            if not p.exists() or p.stat().st_size != rec.get("bytes"):
                return False
        return True

    def renderable(self, spec) -> bool:
        """The run was executed with this very cache key and its notebook kept, but a later stage
        failed (no browser for the PDF): the next build renders from that notebook, not executing it."""
        entry = self.runs.get(spec.name)
        if not entry or entry.get("status") == "done" or entry.get("cache_key") != spec.cache_key:
            return False
        rec = entry.get("outputs", {}).get("ipynb")
        path = self.path.parent / rec["path"] if rec else None
        return bool(path and path.is_file() and _file_sha(path) == rec.get("sha256"))

    def record(self, spec, result, batch_name: str, extra: dict | None = None) -> None:
        root = self.path.parent.resolve()

        def rel(rec):
            return {**rec, "path": _relative(rec["path"], root)}

        previous = self.runs.get(spec.name, {})
        entry = {
            "report": spec.report, "scope": spec.scope, "key": spec.key, "label": spec.label,
            "quarter": spec.quarter, "params": spec.params, "status": result.status,
            "cache_key": spec.cache_key, "timings_s": result.timings,
            "outputs": {k: rel(v) for k, v in result.outputs.items()}, "outputs_done": result.outputs_done,
            "extras": [rel(x) for x in result.extras], "figures": result.figures,
            "error": result.error, "log": rel({"path": spec.log_path})["path"],
            "partial_notebook": rel({"path": result.error["partial_notebook"]})["path"]
            if result.error and result.error.get("partial_notebook") else None,
            "attempts": result.attempts, "worker": result.worker, "memory_mb": result.memory_mb,
            "finished_at": result.finished_at, "batch": batch_name,
            "provenance": spec.provenance,
        }
        if extra:
            entry.update(extra)
        if result.status != "done" and previous.get("status") == "done":
            entry["previous_success"] = {"finished_at": previous.get("finished_at"),
                                         "outputs": previous.get("outputs", {})}
        self.runs[spec.name] = entry

    def note_commit(self, name: str, staged: list[list]) -> None:
        """Note on ``name``'s entry the renames about to be made (``helpers.runner.staging.commit_staged``)."""
        root = self.path.parent.resolve()
        self.runs[name]["committing"] = [[_relative(tmp, root), _relative(final, root)]
                                         for kind, tmp, final, _rec in staged if kind not in NOT_FILES]

    def commit_done(self, name: str) -> None:
        self.runs.get(name, {}).pop("committing", None)

    def complete_commits(self) -> int:
        """Finish the renames a killed build noted but may not have made (its entries already
        record the new files); returns how many files were renamed, and saves when any note was left."""
        root = self.path.parent
        renamed, noted = 0, False
        for entry in self.runs.values():
            for tmp, final in entry.pop("committing", None) or []:
                noted = True
                if not (root / tmp).exists():
                    continue
                try:
                    os.replace(root / tmp, root / final)
                    renamed += 1
                except OSError:   # the folder went or turned read-only: the run is done again
                    try:
                        os.unlink(root / tmp)
                    except OSError:
                        pass
                    entry["status"] = "failed"
                    entry["error"] = {"stage": "interrupted", "message": "a build was killed while it put "
                                      "this run's files in place; the next build runs it again"}
        if noted:
            self.save()
        return renamed

    def mark_skipped(self, spec, batch_name: str, extra: dict | None = None) -> None:
        """An up-to-date run; ``extra`` (``stale_data``) replaces what the last build said about its data."""
        entry = self.runs[spec.name]
        entry["last_checked"] = {"at": _now_iso(), "batch": batch_name, "outcome": "skipped"}
        entry.pop("stale_data", None)
        entry.update(extra or {})

    def save(self, meta: dict | None = None) -> None:
        if meta:
            self.data.update(meta)
        self.data["updated_at"] = _now_iso()
        self.data["runs"] = dict(sorted(self.runs.items()))
        write_atomic(self.path, json.dumps(self.data, indent=1, default=str, ensure_ascii=False))


def _relative(path: str, root: Path) -> str:
    """``path`` relative to ``root`` (resolved), or as it is when it lies outside."""
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def _now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def discard_unrecorded(manifests: dict, specs) -> int:
    """After an interrupt: a run that was under way may have replaced some of its files without
    being recorded. Each file whose bytes differ from the manifest's record is removed (with its
    record), so no file is described by a stale hash; the next build redoes the run."""
    removed = 0
    for spec in specs:
        m = manifests.get(spec.quarter)
        if m is None:
            continue
        entry = m.runs.get(spec.name) or {}
        recorded = {str((m.path.parent / r["path"]).resolve()): r
                    for r in [*entry.get("outputs", {}).values(), *entry.get("extras", [])]}
        candidates = {str(Path(p).resolve()) for p in spec.files.values()} | set(recorded)
        for path in sorted(candidates):
            rec = recorded.get(path)
            if not os.path.exists(path) or (rec is not None and _file_sha(path) == rec.get("sha256")):
                continue
            os.unlink(path)
            removed += 1
            if entry:
                entry["outputs"] = {k: v for k, v in entry.get("outputs", {}).items() if v is not rec}
                entry["extras"] = [x for x in entry.get("extras", []) if x is not rec]
                entry["status"] = "failed"
                entry["error"] = {"stage": "interrupted",
                                  "message": "the build was interrupted while this run wrote its files; "
                                             "the next build runs it again"}
    return removed


def _file_sha(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
