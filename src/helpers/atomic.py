"""Atomic writes, in one place: a file appears complete under its final name or not at all.

Everything is first written under ONE temporary naming scheme beside the final path (same
file system, so the rename is atomic)::

    .<stem>.tmp-<pid>-<random><suffix>        e.g. .his_analyse.tmp-4242-1a2b3c4d.html

The suffix stays (papermill and Chromium look at it); the pid says whose temporary it is, so
:func:`clean_stale` can remove what a killed process left without touching the temporaries
of a process that is still writing. Folders staged before a rename into place use the same
scheme (``.<name>.tmp-<pid>-<random>``).

>>> import tempfile; folder = Path(tempfile.mkdtemp())
>>> write_atomic(folder / "a.txt", "klaar")
>>> (folder / "a.txt").read_text()
'klaar'
>>> with atomic_file(folder / "b.csv") as tmp:
...     _ = tmp.write_text("x;y")
>>> sorted(p.name for p in folder.iterdir())
['a.txt', 'b.csv']

Semantics follow the runner's former ``write_atomic`` (no fsync unless asked: the build
reruns what a crash lost) and the batch's ``clean_stale_temporaries`` (files and folders).
A write error removes the temporary and is raised with the *final* path as its file name,
so a message says ``disk full at outputs/.../his_analyse.html``, not a temporary name.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Iterator

__all__ = ["temp_path", "is_temporary", "temporary_pid", "write_atomic", "write_bytes", "write_text",
           "write_temporary", "atomic_file", "atomic_dir", "clean_stale", "remove_quietly", "pid_alive"]

#: ``.<stem>.tmp-<pid>-<random>[<suffix>]``, the scheme of :func:`temp_path`. It also matches
#: the schemes the modules used before this one (``.<name>.tmp-<pid>[<suffix>]`` in cube,
#: portal, render, worklists; ``.<stem>.tmp-<pid>-<n><suffix>`` in the runner), so
#: :func:`clean_stale` removes their leftovers too while they switch over.
TEMPORARY = re.compile(r"^\.(?P<stem>.+?)\.tmp-(?P<pid>[0-9]+)(?:-(?P<token>[0-9a-f]+))?(?=\.|$)")
#: Staging folders of an older runner (no pid in the name): removed only by ``everyone=True``.
_LEGACY_DIR_PREFIX = ".extras-tmp-"


def temp_path(final: Path | str) -> Path:
    """The temporary name for ``final``: beside it, ``.<stem>.tmp-<pid>-<random><suffix>``.

    >>> p = temp_path("outputs/2026Q3/01000001/his_analyse.html")
    >>> p.parent.as_posix(), p.name.startswith(".his_analyse.tmp-"), p.suffix
    ('outputs/2026Q3/01000001', True, '.html')
    >>> temporary_pid(p.name) == os.getpid()
    True
    """
    final = Path(final)
    return final.with_name(f".{final.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{final.suffix}")


def temporary_pid(name: str) -> int | None:
    """The writer's pid when ``name`` is a temporary of this scheme, else None.

    >>> temporary_pid(".x.tmp-12-ab.csv"), temporary_pid(".cube.tmp-7"), temporary_pid(".x.tmp-old")
    (12, 7, None)
    >>> temporary_pid("x.csv"), temporary_pid(".x.tmp-12-ab-notours")
    (None, None)
    """
    m = TEMPORARY.match(name)
    return int(m["pid"]) if m else None


def is_temporary(name: str) -> bool:
    """True for a name of the temporary scheme (a file or a staging folder)."""
    return temporary_pid(name) is not None


def remove_quietly(path: Path | str) -> None:
    """Remove the file ``path`` if it is there; an error (already gone, no permission) is
    ignored: used where a temporary is cleaned up on the way out of a failure.

    >>> remove_quietly("/nonexistent/.x.tmp-1-ab.html")   # nothing there: no error
    """
    try:
        os.unlink(path)
    except OSError:
        pass



@contextlib.contextmanager
def _removed_on_error(tmp: Path, final: Path) -> Iterator[None]:
    """The one cleanup of a failed write: the temporary goes, and an OSError is raised again
    with the *final* path as its file name."""
    try:
        yield
    except OSError as exc:
        remove_quietly(tmp)
        raise OSError(exc.errno, exc.strerror, str(final)) from None
    except BaseException:
        remove_quietly(tmp)
        raise


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mkdir_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path.parent)) from None


def _replace(tmp: Path, final: Path) -> None:
    try:
        os.replace(tmp, final)
    except OSError as exc:
        if Path(tmp).is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            remove_quietly(tmp)
        raise OSError(exc.errno, exc.strerror, str(final)) from None


def write_bytes(path: Path | str, data: bytes, fsync: bool = False) -> None:
    """Write ``path`` completely or not at all (a write error leaves no temporary).

    ``fsync``: flush file and folder to disk before returning (off by default, as the runner
    always did: outputs are rebuilt when lost; turn it on for state that must survive a crash).
    """
    with atomic_file(path, fsync=fsync) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text(path: Path | str, text: str, encoding: str = "utf-8", fsync: bool = False) -> None:
    """:func:`write_bytes` for text (UTF-8 unless told)."""
    write_bytes(path, text.encode(encoding), fsync=fsync)


def write_atomic(path: Path | str, data: str | bytes, fsync: bool = False) -> None:
    """Write text (as UTF-8) or bytes to ``path`` atomically; see :func:`write_bytes`."""
    write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data, fsync=fsync)


def write_temporary(final: Path | str, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) under ``final``'s temporary name and return that name,
    NOT renamed: for a caller that renames several files into place together once all are
    complete (the runner's staging). A write error removes the temporary and names ``final``.

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> tmp = write_temporary(folder / "r.html", "<p>klaar</p>")
    >>> temporary_pid(tmp.name) == os.getpid(), (folder / "r.html").exists()
    (True, False)
    """
    final = Path(final)
    tmp = temp_path(final)
    with _removed_on_error(tmp, final):
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return tmp


@contextlib.contextmanager
def atomic_file(path: Path | str, fsync: bool = False) -> Iterator[Path]:
    """A file written through its temporary name by whatever writes files (pandas, pyarrow,
    Chromium): yields the temporary path; renamed to ``path`` when the block ends without an
    error, removed when it raises.

    >>> import tempfile; out = Path(tempfile.mkdtemp()) / "t.txt"
    >>> try:
    ...     with atomic_file(out) as tmp:
    ...         _ = tmp.write_text("half")
    ...         raise RuntimeError("stopped")
    ... except RuntimeError:
    ...     pass
    >>> list(out.parent.iterdir())
    []
    """
    path = Path(path)
    _mkdir_parent(path)
    tmp = temp_path(path)
    with _removed_on_error(tmp, path):
        yield tmp
        if fsync and tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
    if not tmp.exists():
        raise FileNotFoundError(2, "nothing was written to the temporary file", str(path))
    _replace(tmp, path)
    if fsync:
        _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_dir(path: Path | str, replace: bool = True) -> Iterator[Path]:
    """A folder filled under a staging name (``.<name>.tmp-<pid>-<random>`` beside ``path``),
    then renamed into place as a whole; removed when the block raises.

    ``replace``: an existing ``path`` is replaced (moved aside under the temporary scheme and
    removed after the rename, so readers see the old or the new folder, never a mix); when
    False, an existing ``path`` is an error (FileExistsError) and the staging folder goes.

    >>> import tempfile; root = Path(tempfile.mkdtemp())
    >>> with atomic_dir(root / "cube") as stage:
    ...     _ = (stage / "a.parquet").write_bytes(b"x")
    >>> [p.name for p in (root / "cube").iterdir()], [p.name for p in root.iterdir()]
    (['a.parquet'], ['cube'])
    """
    path = Path(path)
    _mkdir_parent(path)
    stage = temp_path(path)
    try:
        stage.mkdir()
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if path.exists():
        if not replace:
            shutil.rmtree(stage, ignore_errors=True)
            raise FileExistsError(17, "already exists", str(path))
        old = temp_path(path)
        try:
            os.replace(path, old)
        except OSError as exc:
            shutil.rmtree(stage, ignore_errors=True)
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        _replace(stage, path)
    except OSError:
        if old is not None:
            os.replace(old, path)  # put the previous folder back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def pid_alive(pid: int | None) -> bool:
    """The process exists and is not a zombie (a zombie's parent has not reaped it yet): the
    one test of "is that writer, worker, factory or kernel still there".

    >>> pid_alive(os.getpid()), pid_alive(None), pid_alive(999_999_999)
    (True, False, False)
    """
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        pass   # it exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True   # no /proc (not Linux) or it just went: kill(0) said it was there


def clean_stale(folder: Path | str, pids: set[int] | None = None, recursive: bool = True,
                everyone: bool = False, keep: frozenset[str] | set[str] = frozenset()) -> int:
    """Remove the temporaries (files and staging folders) under ``folder`` whose writer is gone
    (or, with ``pids``, written by exactly those processes). Returns how many went.

    Temporaries of a live process are kept: it may still be writing (the caller's own count
    as stale only when named in ``pids``). ``everyone=True`` removes every temporary whatever
    its writer, as the build does at its start while it holds the outputs lock (the former
    ``batch.clean_stale_temporaries``); ``recursive=False`` looks in ``folder`` only (the
    former ``runner.remove_temporaries``; the runner cleans up after a crashed worker so).
    ``keep``: paths (as given, ``folder`` joined with the name) left alone whatever their writer.

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / ".r.tmp-999999999-ab.html").write_text("half")   # a writer long gone
    >>> _ = (folder / "r.html").write_text("done")
    >>> clean_stale(folder), [p.name for p in folder.iterdir()]
    (1, ['r.html'])
    """
    folder = Path(folder)
    n = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        pid = temporary_pid(entry.name)
        is_dir = entry.is_dir(follow_symlinks=False)
        if everyone and pid is None and is_dir and entry.name.startswith(_LEGACY_DIR_PREFIX):
            shutil.rmtree(entry.path, ignore_errors=True)
            n += 1
            continue
        if pid is not None:
            if everyone:
                stale = True
            else:
                stale = (pid in pids) if pids is not None else not pid_alive(pid)
            if stale and entry.path not in keep:
                if is_dir:
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    remove_quietly(entry.path)
                n += 1
            continue
        if recursive and is_dir:
            n += clean_stale(entry.path, pids, recursive=True, everyone=everyone, keep=keep)
    return n
