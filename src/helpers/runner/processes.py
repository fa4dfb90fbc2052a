"""Process lifetimes: every process dies with the one that started it (``die_with_parent``),
each keeps its temporaries in a private folder that the next one removes once its owner is
gone (``private_dir``), the process table the fault handling reads, and memory figures.

Imports only the standard library: the kernel launcher (``python -m helpers.runner _launch``)
uses it and must start in milliseconds.

>>> pid_alive(os.getpid()), os.getpid() in process_table()
(True, True)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile

from ..atomic import pid_alive

__all__ = ["pid_alive", "die_with_parent", "private_dir", "sweep_private_dirs", "process_table",
           "rss_mb", "peak_rss_mb"]

_PRIVATE_PREFIX = "spiegel-"
_PRIVATE = re.compile(r"^spiegel-(\d+)-")
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have Linux SIGKILL this process when its parent dies, also when the parent was killed
    with SIGKILL and could not clean up. Linux clears the setting on fork (each process arms
    its own) and fires it when the parent *thread* that started us ends, so children are
    started from long-lived threads (the coordinator's and workers' main threads). If the
    parent died before the signal was armed, we are an orphan already: go now."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os._exit(1)


def private_dir() -> str:
    """A folder for this process's own temporaries (sockets, kernel working directories);
    the pid in its name lets ``sweep_private_dirs`` remove it once this process is gone."""
    sweep_private_dirs()
    return tempfile.mkdtemp(prefix=f"{_PRIVATE_PREFIX}{os.getpid()}-")   # short: IPC paths are limited


def sweep_private_dirs() -> int:
    """Remove the private folders of workers and factories that were killed; returns how many."""
    root = tempfile.gettempdir()
    n = 0
    try:
        names = os.listdir(root)
    except OSError:
        return 0
    for name in names:
        m = _PRIVATE.match(name)
        if m and not pid_alive(int(m.group(1))):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            n += 1
    return n


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process we may see (Linux ``/proc``)."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        table[int(name)] = (ppid, cmd)
    return table


def rss_mb(status_file: str, key: str = "VmHWM") -> float | None:
    """A memory figure (MB) from a ``/proc/<pid>/status`` file: ``VmHWM`` (peak) or
    ``VmRSS`` (now); None when the process is gone."""
    try:
        with open(status_file) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB). ``VmHWM`` rather than ``ru_maxrss``: the
    latter survives ``exec`` and would report the peak of whatever process started us."""
    mb = rss_mb("/proc/self/status", "VmHWM")
    if mb is not None:
        return mb
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
