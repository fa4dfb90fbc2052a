"""A run's files on their way out: its log (``RunLog``) and its outputs (``Staging``) live
under temporary names (``helpers.atomic.temp_path``) and are renamed into place only when
the run has finished and the build is not stopping, so an interrupted build never replaces
a file without its manifest entry. A write error is the run's failure, named with the final
path; whatever was not committed is removed.

In a batch the worker does not rename: it hands the staged files over with its result
(``Staging.hand_over``, ``RunResult.staged``) and the build commits them
(``commit_staged``) after it has written the run's manifest entry with a note of the renames
to come, so a build killed at any moment leaves no file the manifest does not know of; the
next build completes the renames it noted (``Manifest.complete_commits``).

>>> import tempfile; out = Path(tempfile.mkdtemp())
>>> staging = Staging(); _ = staging.write("html", out / "r.html", "<p>klaar</p>")
>>> result = RunResult(name="r"); staging.commit(result)
>>> sorted(result.outputs), [p.name for p in out.iterdir()]
(['html'], ['r.html'])
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..atomic import remove_quietly, temp_path, write_temporary
from .spec import RunResult, file_record

__all__ = ["RunLog", "Staging", "NOT_FILES", "commit_staged", "discard_staged", "record_staged"]

#: kinds of handed-over items that are no staged file: a staging folder, a file to remove
NOT_FILES = ("dir", "remove")


class RunLog:
    """A run's own log, under a temporary name until the run ends. A write error here is
    the run's failure too: the first one is kept (``error``) and writing stops, so the
    run's error handling never trips over its own log. Call it with a message to log a
    timestamped line; it is also a stream for ``logging.StreamHandler``."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.tmp = temp_path(self.path)
        self.error: OSError | None = None
        self._f = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.tmp, "w", buffering=1, encoding="utf-8")
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        if self.error is None:
            self.error = OSError(exc.errno, exc.strerror, str(self.path))
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None
        remove_quietly(self.tmp)

    def write(self, text: str) -> None:
        """Append ``text`` (stream protocol); after a write error, nothing more is written."""
        if self._f is not None:
            try:
                self._f.write(text)
            except OSError as exc:
                self._fail(exc)

    def flush(self) -> None:
        """Stream protocol: the file is line-buffered already."""

    def __call__(self, msg: str) -> None:
        self.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

    def close(self) -> None:
        """Close and rename the log into place (a failure there is kept in ``error``)."""
        if self._f is None:
            return
        try:
            self._f.close()
            self._f = None
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self._fail(exc)

    def discard(self) -> None:
        """Drop the log without closing it cleanly (SIGTERM: no waiting on anything)."""
        self._f = None
        remove_quietly(self.tmp)


class Staging:
    """A run's files under temporary names, renamed into place together once the run is
    complete (``commit``); whatever is not committed is removed (``discard``)."""

    def __init__(self):
        self.items: list[tuple[str, Path, Path, dict]] = []   # (format or "extra", tmp, final, record)
        self.dirs: list[Path] = []

    def write(self, kind: str, final: Path, data: str | bytes) -> Path:
        """Write ``data`` under ``final``'s temporary name and stage it; returns the temporary."""
        final = Path(final)
        tmp = write_temporary(final, data)
        self.add(kind, tmp, final)
        return tmp

    def add(self, kind: str, tmp: Path, final: Path, **extra) -> None:
        """Stage a temporary someone else wrote (the PDF, the extras) as ``final``."""
        record = {**file_record(tmp), "path": str(final), **extra}
        self.items.append((kind, Path(tmp), Path(final), record))

    def commit(self, result: RunResult) -> None:
        """Rename every staged file into place and record it in ``result`` (outputs by format,
        extras in order); a failed rename raises with the final path."""
        while self.items:
            kind, tmp, final, record = self.items[0]
            _rename(tmp, final)
            self.items.pop(0)
            _add_record(result, kind, record)

    def hand_over(self) -> list[list]:
        """The staged files as ``[kind, temporary, final, record]`` and the staging folders as
        ``["dir", folder, "", {}]`` (and the run may add ``["remove", path, "", {}]``: a file
        to remove once committed), for the build to commit (``commit_staged``); from now on
        they are not this staging's to remove."""
        items = [[kind, str(tmp), str(final), record] for kind, tmp, final, record in self.items]
        items += [["dir", str(d), "", {}] for d in self.dirs]
        self.items, self.dirs = [], []
        return items

    def discard(self) -> None:
        """Remove whatever was not committed: staged files and staging folders."""
        for _kind, tmp, _final, _record in self.items:
            remove_quietly(tmp)
        self.items = []
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.dirs = []


def _rename(tmp, final) -> None:
    try:
        os.replace(tmp, final)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(final)) from None


def _add_record(result: RunResult, kind: str, record: dict) -> None:
    if kind == "extra":
        result.extras.append(record)
    else:
        result.outputs[kind] = record


def record_staged(result: RunResult, staged: list[list]) -> None:
    """Record the files a worker handed over (``staged``, from ``result.staged``) in ``result``
    as they will be once committed: outputs by format, extras in order."""
    for kind, _tmp, _final, record in staged:
        if kind not in NOT_FILES:
            _add_record(result, kind, record)


def commit_staged(staged: list[list]) -> None:
    """Rename the files a worker handed over into place, in order, then remove its staging
    folders. A failed rename raises with the final path and ``renamed`` (the items renamed
    before it), and what was not renamed is removed."""
    renamed = []
    try:
        for item in staged:
            if item[0] not in NOT_FILES:
                _rename(item[1], item[2])
                renamed.append(item)
    except OSError as exc:
        discard_staged(staged)
        exc.renamed = renamed
        raise
    discard_staged(staged)
    for kind, path, _final, _record in staged:   # an earlier failure's partial notebook
        if kind == "remove":
            remove_quietly(path)


def discard_staged(staged: list[list]) -> None:
    """Remove what is left of the files a worker handed over: temporaries and staging folders."""
    for kind, tmp, _final, _record in staged:
        if kind == "dir":
            shutil.rmtree(tmp, ignore_errors=True)
        elif kind != "remove":   # not a temporary: a file to remove once committed
            remove_quietly(tmp)
