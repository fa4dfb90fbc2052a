"""``spiegel lab``: JupyterLab for researchers, on the warehouse and its latest prepared quarter.

Before the server starts, the warehouse must exist (else one line: run ``make demo`` or
``spiegel ingest`` first, exit status 2) and the cube of its latest complete quarter is
prepared when it is not up to date (``helpers.cube.prepare_quarter``, as ``spiegel build``
does), so every report notebook opens and runs at once with empty parameters
(``helpers.reports.notebook_defaults``: the latest quarter, the first practice, hagro or region).

The server is the environment's own JupyterLab (``python -m jupyterlab``: the project's Python
is the notebooks' ``python3`` kernel) on 127.0.0.1 only, with a random token (handed over in
the environment, never on a command line others can read), serving ``notebooks/``. It runs in
a process group of its own and dies with this process (also when this one is killed); Ctrl-C or
SIGTERM stops it, its kernels and anything else it started, without a traceback.

The notebooks in ``notebooks/`` are the batch's, committed without outputs; a report run in the
lab shows patient rows. So every save (JupyterLab autosaves every two minutes) goes through
``strip_outputs_hook``: the file on disk keeps the code and text, never an output, and no
patient row can reach git or the batch's cache key (the open notebook keeps its outputs on
screen). The server's log is a private file (``tempfile.mkstemp``, mode 0600).

>>> lab_url(8888, "abc")
'http://127.0.0.1:8888/lab?token=abc'
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .config import NOTEBOOKS_DIR, Settings
from .errors import ParameterError, SpiegelError

HOST = "127.0.0.1"
#: seconds to wait for the server to answer before giving up
START_TIMEOUT = 120.0
#: seconds the server gets to shut its kernels down after SIGTERM, before SIGKILL
STOP_GRACE = 10.0


def lab_url(port: int, token: str, path: str = "lab") -> str:
    return f"http://{HOST}:{port}/{path}?token={token}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def latest_quarter(warehouse: Path):
    """The latest complete quarter of the warehouse's newest extraction date; a missing or
    empty warehouse is one ParameterError that says how to make one."""
    import pandas as pd

    from .quarter import Quarter
    from .warehouse import Warehouse
    fix = "run `make demo` (the demo care group) or `spiegel ingest <dataset>` first"
    if not Path(warehouse).is_file():
        raise ParameterError(f"no warehouse at {warehouse}: {fix}")
    dates = pd.to_datetime(Warehouse(warehouse, lock_wait=Settings.from_env().lock_wait)
                           .practices()["extraction_date"]).dropna()
    if dates.empty:
        raise ParameterError(f"the warehouse {warehouse} holds no practices: {fix}")
    return Quarter.latest_complete(dates.max().date())


def ready_cube(warehouse: Path, out=print) -> Path:
    """The cube of the warehouse's latest quarter, prepared first when it is not up to date."""
    from .batch.steps import _fresh_cube
    from .cube import prepare_quarter
    quarter = latest_quarter(warehouse)
    fresh = _fresh_cube(Path(warehouse), str(quarter))
    if fresh is not None:
        return Path(fresh["path"])
    out(f"spiegel lab: preparing quarter {quarter} (the data, rules or code changed since it was) ...")
    t0 = time.perf_counter()
    path = prepare_quarter(warehouse, quarter)
    out(f"spiegel lab: quarter cube {quarter} ready in {time.perf_counter() - t0:.1f} s")
    return path


@dataclass
class Lab:
    """A running JupyterLab server (see :func:`start`)."""
    proc: subprocess.Popen
    port: int
    token: str
    root: Path
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return lab_url(self.port, self.token)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def descendants(self) -> list[int]:
        """Every process the server started (kernels run in sessions of their own)."""
        return _descendants(self.proc.pid)

    def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM to the server's group (the server shuts its kernels down), SIGKILL to whatever
        of it is left after ``grace`` seconds; returns the server's exit status."""
        family = self.descendants()
        if self.alive():
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        family += [p for p in _descendants(self.proc.pid) if p not in family]
        deadline = time.monotonic() + grace
        while any(_alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in family:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return self.proc.returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    from .atomic import pid_alive
    if not pid_alive(pid):
        return False
    try:   # a zombie waits for its parent only: it is gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _descendants(root: int) -> list[int]:
    """Every descendant of ``root`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _arm_parent_death(parent: int):
    def arm():
        from .runner.processes import die_with_parent
        die_with_parent(parent)
    return arm


def strip_outputs_hook(model: dict, **_kwargs) -> None:
    """The contents manager's ``pre_save_hook``: a notebook is saved without outputs,
    execution counts and widget state (in place; other files untouched).

    >>> m = {"type": "notebook", "content": {"metadata": {"widgets": {}}, "cells": [
    ...     {"cell_type": "code", "execution_count": 3, "outputs": [{"output_type": "stream", "text": "x"}]}]}}
    >>> strip_outputs_hook(m); m["content"]
    {'metadata': {}, 'cells': [{'cell_type': 'code', 'execution_count': None, 'outputs': []}]}
    """
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    nb = model["content"]
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None


def server_command(port: int, root: Path) -> list[str]:
    """The JupyterLab command: this environment's Python, localhost only, no browser, and
    every notebook saved without its outputs (``strip_outputs_hook``)."""
    return [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.ip={HOST}",
            "--ContentsManager.pre_save_hook=helpers.lab.strip_outputs_hook",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
            "--ServerApp.open_browser=False", "--ServerApp.allow_remote_access=False",
            # nothing fetched from the internet: no news feed, no update check
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *(["--ServerApp.allow_root=True"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])]


def start(warehouse: Path, port: int | None = None, root: Path = NOTEBOOKS_DIR, token: str | None = None,
          log=None, timeout: float = START_TIMEOUT, log_path: Path | None = None) -> Lab:
    """Start JupyterLab in ``root`` for ``warehouse`` (its cube must be ready, see
    :func:`ready_cube`) and wait until it answers; the kernels it starts find the warehouse in
    ``SPIEGEL_WAREHOUSE`` (absolute, so a notebook run from ``notebooks/`` finds it too)."""
    port = port or free_port()
    token = token or secrets.token_urlsafe(24)
    env = {**os.environ, "JUPYTER_TOKEN": token, "SPIEGEL_WAREHOUSE": str(Path(warehouse).resolve()),
           "PYTHONUNBUFFERED": "1"}
    env.pop("JUPYTER_TOKEN_FILE", None)
    proc = subprocess.Popen(server_command(port, Path(root)), cwd=str(root), env=env, stdin=subprocess.DEVNULL,
                            stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_arm_parent_death(os.getpid()))
    lab = Lab(proc=proc, port=port, token=token, root=Path(root), log_path=log_path)
    try:
        wait_ready(lab, timeout)
    except BaseException:
        lab.stop(grace=2.0)
        raise
    return lab


def wait_ready(lab: Lab, timeout: float = START_TIMEOUT) -> None:
    """Until the server's API answers with the token (or it ended, or ``timeout``)."""
    deadline = time.monotonic() + timeout
    status = lab_url(lab.port, lab.token, "api/status")
    while time.monotonic() < deadline:
        if not lab.alive():
            raise SpiegelError(f"JupyterLab ended at start with status {lab.proc.returncode}: "
                               f"{_last_problem(lab.log_path) or f'port {lab.port} taken? try another --port'}")
        try:
            with urllib.request.urlopen(status, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise SpiegelError(f"JupyterLab did not answer on port {lab.port} within {timeout:.0f} s")


def _last_problem(log_path: Path | None) -> str:
    """The server log's last critical or error line, if any."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines() if log_path else []
    except OSError:
        return ""
    bad = [line for line in lines if line.startswith(("[C ", "[E "))]
    return (bad[-1].split("] ", 1)[-1].strip() + f" (log: {log_path})") if bad else ""


def run(warehouse: Path, port: int | None = None, out=print) -> int:
    """``spiegel lab``: ready the cube, start the server, print its URL, serve until Ctrl-C or
    SIGTERM, then stop the server and everything it started. Returns the exit status."""
    warehouse = Path(warehouse)
    cube = ready_cube(warehouse, out)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    lab = None
    fd, name = tempfile.mkstemp(prefix="spiegel-lab-", suffix=".log")   # private: mode 0600
    log_path = Path(name)
    try:
        with os.fdopen(fd, "ab") as log:
            lab = start(warehouse, port, log=log, log_path=log_path)
        out(f"spiegel lab: JupyterLab in {lab.root} on {warehouse} (quarter cube {cube.name}); its log: {log_path}")
        out(f"spiegel lab: open {lab.url}")
        out("spiegel lab: Ctrl-C stops the server and its kernels")
        while lab.alive():
            time.sleep(0.5)
        out(f"spiegel lab: JupyterLab stopped (status {lab.proc.returncode})")
        return 0 if lab.proc.returncode in (0, -signal.SIGTERM) else 1
    except KeyboardInterrupt:
        out("spiegel lab: stopping JupyterLab ...")
        if lab is not None:
            lab.stop()
        out("spiegel lab: stopped")
        return 130
    finally:
        if lab is not None and lab.alive():
            lab.stop()
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(_signum, _frame):
    raise KeyboardInterrupt
