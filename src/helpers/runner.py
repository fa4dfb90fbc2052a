"""Executors: run a batch's named runs on warm workers, each run in a fresh kernel.

How a run executes
------------------
A *worker* (a process of the local pool, or a Dask worker) runs papermill and nbconvert
in-process and keeps them imported across runs. Kernels come from a *kernel factory* (a
"zygote" process, one per local pool, one per Dask worker): it imports pandas, seaborn,
matplotlib, scipy, IPython, ipykernel and the modules the batch's notebooks import ONCE,
then forks one fresh process per run and turns it into an ipykernel. Every run therefore
gets its own kernel process and its own empty working directory, yet pays neither the
interpreter start nor the imports. The worker starts the next run's kernel while the
current report renders, so a run usually finds its kernel ready.

Why fork from a pre-imported parent rather than reuse one kernel and reset its namespace
(measured on the 2-core development machine; pandas + seaborn + one plot unless noted):

==================================================  =========
per run                                             seconds
==================================================  =========
``papermill`` command (HIS-analyse)                 8.7
fresh kernel + imports, nbclient in-process         3.0
kernel forked from the factory, started on demand   0.50 to ready (+0.11 kill/poll)
kernel forked from the factory, started ahead       0.01 to ready (kill: no wait)
reused kernel, ``%reset -f``                        ~0.05 (estimate)
==================================================  =========

Started ahead, a forked kernel costs no more than a reused one. And *nothing* of one
practice can reach the next practice's report: a reset namespace would still share
``sys.modules`` (module-level caches, ``pd.options``, matplotlib ``rcParams``, open
figures, whatever a helper memoised), the working directory and the environment, and a
crash or a stuck cell would take the shared kernel down for every later run. A fork
inherits only what the factory imported, and the factory never runs notebook code.
``tests/e2e/test_isolation.py`` proves it. ``SPIEGEL_WARM_KERNELS=0`` falls back to
ordinary kernel start-up.

The factory is single-threaded when it forks (one BLAS thread, no jemalloc background
thread). Kernels listen on IPC sockets in a private temporary folder (no TCP ports, so
no port races); a kernel that still fails to start is retried (3 attempts), and a factory
that does not hand out a kernel within ``FACTORY_HANDOUT_TIMEOUT`` is killed and replaced.
A tiny launcher process (``python -m helpers.runner _launch``, ~20 ms, no imports) stands
in for the forked kernel towards jupyter_client and relays its signals.

The time limit covers the whole run: kernel start, execution (a timer kills the kernel;
the cell that was running is named), HTML, PDF (Playwright gets the remaining time and a
watchdog kills the browser at the deadline) and the extras.

Lifetimes: every process dies with the one that started it, also when that one is killed
with SIGKILL: pool workers, kernel factories and launchers arm a parent-death signal
(``die_with_parent``); a forked kernel exits when its launcher's socket closes (a death
signal on the factory would take every running kernel down with a killed factory); the
Playwright driver exits when its worker's pipe closes and kills its Chromium. Each worker
keeps its temporary folders in one ``spiegel-<pid>-*`` folder, removed by the next worker
once that pid is gone.

Files: every output is written under a temporary name (``helpers.atomic.temp_path``, the
one scheme: ``.<stem>.tmp-<pid>-<random><suffix>``) and renamed into place only when the run has finished
and the build is not stopping, so an interrupted build never replaces a file without its
manifest entry. A write error (disk full, read-only, I/O error), the run's log included,
is that run's failure, named with its path; its temporaries go.

Executors
---------
``LocalExecutor``: a ``ProcessPoolExecutor`` (spawn) with ``workers`` processes (default:
the machine's cores) sharing one factory; a worker that dies is replaced and its run is
tried once more. ``DaskExecutor``: the same ``execute_run`` on an existing ``distributed``
cluster whose workers share the project and data paths; each Dask worker process keeps
its own factory and browser. Ingest and prepare also run on a worker (``call``), so the
coordinating process never holds patient tables.

Privacy: the run log holds stage timings, papermill's messages, kernel chatter, the
failing cell's first line, the error's first line and the traceback's code frames; never
notebook outputs.

>>> with LocalExecutor(workers=2) as ex:                     # doctest: +SKIP
...     for result in ex.run_all(specs): print(result.name, result.status)
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .atomic import temp_path, temporary_pid, write_atomic  # noqa: F401 - write_atomic: batch imports it from here

#: seconds a launcher waits for the factory to hand out a kernel (a fork takes milliseconds;
#: a factory that is alive but stuck is then replaced)
FACTORY_HANDOUT_TIMEOUT = 10.0

#: modules every kernel factory imports up front (missing ones are skipped)
DEFAULT_PRELOAD = (
    "numpy", "pandas", "pyarrow", "pyarrow.parquet", "matplotlib", "matplotlib.pyplot",
    "matplotlib.backends.backend_agg", "seaborn", "scipy.stats", "duckdb", "yaml",
    "IPython", "IPython.display", "ipykernel.kernelapp", "ipykernel.ipkernel",
    "ipykernel.zmqshell", "helpers", "helpers.cube", "helpers.tables", "helpers.plots",
)

# ---------------------------------------------------------------------------------------
# Runs and results (plain data, pickled between coordinator and workers)
# ---------------------------------------------------------------------------------------


@dataclass
class RunSpec:
    """One named run: a notebook with its parameters and where every output goes."""

    name: str                    # e.g. "12345678-his_analyse"
    quarter: str
    report: str
    scope: str                   # "practice" or "region"
    key: str                     # practice AGB or region name
    label: str                   # practice name / "Regio <name>"
    notebook: str
    params: dict
    formats: list[str]           # subset of html, pdf (the .ipynb is always written)
    outdir: str
    files: dict                  # fmt -> final path ("ipynb", "html", "pdf")
    partial_path: str            # where a failed run's partial notebook goes
    log_path: str
    cube_path: str
    cache_key: str
    timeout: float
    title: str
    provenance: dict = field(default_factory=dict)
    subtitle: str = ""
    pre_failed: dict | None = None   # set by the batch when the run cannot start (e.g. refused extraction)
    # the notebook was executed before (``files["ipynb"]``, same cache key) and only a format
    # failed (e.g. no browser): render HTML, extras and PDF from it without executing again
    render_only: bool = False


@dataclass
class RunResult:
    name: str
    status: str = "failed"       # "done" or "failed"
    timings: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)     # fmt -> {"path", "sha256", "bytes"}
    extras: list = field(default_factory=list)      # [{"path", "sha256", "bytes"}]
    figures: dict = field(default_factory=dict)
    error: dict | None = None
    partial_notebook: str | None = None
    attempts: int = 1            # kernel starts and resubmissions after a worker crash
    # per requested format (ipynb, html and ``spec.formats``): written or not; a run whose
    # notebook and HTML were written but whose PDF failed has status "failed", error stage
    # "pdf" and {"ipynb": True, "html": True, "pdf": False}
    outputs_done: dict = field(default_factory=dict)
    worker: str = ""
    memory_mb: dict = field(default_factory=dict)
    finished_at: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class RunFailure(Exception):
    """A run failed in one stage; ``info`` is what the summary and manifest show."""

    def __init__(self, stage: str, message: str, **info):
        # the message goes to the manifest, portal and batch logs: no data values in it
        from .suppression import scrub_message
        message = scrub_message(message)
        super().__init__(message)
        self.info = {"stage": stage, "message": message, **info}


# ---------------------------------------------------------------------------------------
# Small file helpers
# ---------------------------------------------------------------------------------------


#: what an OSError while writing means to the person who runs the build
WRITE_ERRORS = {
    errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
    errno.EIO: "input/output error", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
}
def _write_new(path: Path, data: str | bytes, shown: Path) -> None:
    """Write ``path``; on a write error remove what was written and raise the error with
    ``shown`` (the final name, not the temporary) as its file name."""
    try:
        with open(path, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as exc:
        _unlink(path)
        raise OSError(exc.errno, exc.strerror, str(shown)) from None


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def is_write_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRORS


def write_failure(exc: OSError, fallback_path: object = "") -> "RunFailure":
    """A run's failure for a write error: ``disk full at <path>`` and what to do."""
    path = exc.filename or fallback_path
    what = WRITE_ERRORS.get(exc.errno, exc.strerror or "write error")
    fix = ("free space on that disk and run the build again" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
           else "make that folder writable and run the build again")
    return RunFailure("write", f"{what} at {path}: {fix}", path=str(path))


def pid_alive(pid: int | None) -> bool:
    """The process exists and is not a zombie (a zombie's parent has not reaped it yet)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def remove_temporaries(folder: Path, pids: set[int] | None = None) -> int:
    """Remove the temporaries (files and staging folders) in ``folder`` left by the processes
    ``pids``, or by processes that are gone when ``pids`` is None."""
    n = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        pid = temporary_pid(entry.name)
        if pid is None:
            continue
        if (pid in pids) if pids is not None else not pid_alive(pid):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                _unlink(entry.path)
            n += 1
    return n


_PRIVATE_PREFIX = "spiegel-"
_PRIVATE = re.compile(r"^spiegel-(\d+)-")


def private_dir() -> str:
    """A folder for this process's own temporaries (sockets, kernel working directories);
    the pid in its name lets ``sweep_private_dirs`` remove it once this process is gone."""
    sweep_private_dirs()
    return tempfile.mkdtemp(prefix=f"{_PRIVATE_PREFIX}{os.getpid()}-")   # short: IPC paths are limited


def sweep_private_dirs() -> int:
    """Remove the private folders of workers and factories that were killed."""
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


def file_record(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"path": str(path), "sha256": h.hexdigest(), "bytes": Path(path).stat().st_size}


def _first_line(text: object, limit: int = 200) -> str:
    lines = [s for s in str(text).strip().splitlines() if s.strip()]
    line = lines[0].strip() if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _now_iso() -> str:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _rss_mb(status_file: str, key: str = "VmHWM") -> float | None:
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
    mb = _rss_mb("/proc/self/status", "VmHWM")
    if mb is not None:
        return mb
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ---------------------------------------------------------------------------------------
# The kernel factory ("zygote") and the launcher that stands in for a forked kernel
# ---------------------------------------------------------------------------------------


def _zygote_main(sock_path: str, preload: list[str], parent_pid: int) -> None:
    """Import ``preload`` once, then fork a fresh kernel process per launch request."""
    die_with_parent(parent_pid)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # Fork only a single-threaded process: one BLAS thread per kernel (the pool already uses
    # every core) and no jemalloc background thread in pyarrow.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")
    import importlib
    t0 = time.perf_counter()
    failed = []
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a missing optional module only costs time later
            failed.append(name)
    _warm_matplotlib()
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    if threads > 1:
        sys.stderr.write(f"kernel factory: warning: {threads} threads before forking\n")
    sys.stderr.write(f"kernel factory: {len(preload) - len(failed)} modules imported in "
                     f"{time.perf_counter() - t0:.2f}s" + (f"; skipped {', '.join(failed)}" if failed else "") + "\n")
    sys.stderr.flush()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # forked kernels are reaped automatically
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C goes to the coordinator; we follow stdin
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    stdin = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([srv, stdin], [], [])
        if stdin in ready and not os.read(stdin, 4096):
            os._exit(0)   # the worker is gone: so are we
        if srv not in ready:
            continue
        conn, _ = srv.accept()
        try:
            msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            request = json.loads(msg.decode())
        except Exception:  # noqa: BLE001 - a broken request must not stop the factory
            conn.close()
            continue
        pid = os.fork()
        if pid == 0:
            srv.close()
            _kernel_child(conn, fds, request)   # never returns
        conn.close()
        for fd in fds:
            os.close(fd)


def _warm_matplotlib() -> None:
    """Draw one throw-away figure off-screen so fonts and Agg are loaded before forking,
    without fixing pyplot's backend (the kernel selects the inline backend itself)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        fig = Figure(figsize=(2, 1))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1])
        ax.set_title("warm-up")
        import io
        fig.savefig(io.BytesIO(), format="png")
    except Exception:  # noqa: BLE001
        pass


def _kernel_child(conn: socket.socket, fds: list[int], request: dict) -> None:
    """In the forked child: become an ipykernel for one run, then exit."""
    try:
        factory_pid = os.getppid()
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import random
        random.seed()
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()
        conn.sendall(f"{os.getpid()}\n".encode())

        def watch_launcher():
            # the launcher holds the other end: when it dies (killed by jupyter_client), we go
            while True:
                try:
                    data = conn.recv(64)
                except OSError:
                    data = b""
                if not data:
                    os._exit(0)

        threading.Thread(target=watch_launcher, daemon=True).start()
        from ipykernel.kernelapp import IPKernelApp
        app = IPKernelApp.instance()
        app.initialize(["-f", request["connection_file"], f"--IPKernelApp.parent_handle={factory_pid}",
                        *request.get("args", [])])
        app.start()
    except BaseException as exc:  # noqa: BLE001
        try:
            sys.stderr.write(f"forked kernel failed: {type(exc).__name__}: {exc}\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        os._exit(1)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(0)


def _launcher_main(argv: list[str]) -> int:
    """Ask the factory for a kernel, relay signals to it, exit when it exits. Without a
    pid file afterwards, the worker knows the factory did not hand out a kernel."""
    sock_path, connection_file = argv[0], argv[1]
    pidfile, parent, wait, extra = None, None, FACTORY_HANDOUT_TIMEOUT, []
    rest = argv[2:]
    while rest:
        opt = rest.pop(0)
        if opt == "--pidfile":
            pidfile = rest.pop(0)
        elif opt == "--parent":
            parent = int(rest.pop(0))
        elif opt == "--wait":
            wait = float(rest.pop(0))
        else:
            extra.append(opt)
    if parent is not None:
        die_with_parent(parent)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(wait)
    for attempt in range(50):
        try:
            conn.connect(sock_path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            time.sleep(0.1)
        except OSError:
            break
    else:
        sys.stderr.write(f"launcher: kernel factory at {sock_path} not reachable\n")
        return 3
    request = {"connection_file": connection_file, "cwd": os.getcwd(), "env": dict(os.environ), "args": extra}
    buf = b""
    try:
        socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
        while b"\n" not in buf:
            data = conn.recv(64)
            if not data:
                sys.stderr.write("launcher: the kernel factory did not start a kernel\n")
                return 3
            buf += data
    except OSError as exc:   # a timeout included: the factory is alive but not answering
        sys.stderr.write(f"launcher: the kernel factory did not hand out a kernel within "
                         f"{wait:.0f}s ({type(exc).__name__})\n")
        return 3
    conn.settimeout(None)
    pid = int(buf.split(b"\n", 1)[0])
    if pidfile:
        Path(pidfile).write_text(str(pid))

    def relay(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
        if signum in (signal.SIGTERM, signal.SIGHUP):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os._exit(0)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, relay)
    while True:
        try:
            data = conn.recv(64)
        except InterruptedError:
            continue
        except OSError:
            data = b""
        if not data:
            return 0


class KernelFactory:
    """A zygote process: ``kernel_manager_class(...)`` gives jupyter_client a KernelManager
    whose kernels are forked from it. ``KernelFactory(sock=...)`` attaches to one another
    process started (the local pool shares one factory between its workers)."""

    def __init__(self, preload: list[str] | tuple[str, ...] = DEFAULT_PRELOAD, sock: str | None = None,
                 pid: int | None = None):
        self.preload = list(dict.fromkeys([*DEFAULT_PRELOAD, *preload]))
        self.proc = None
        self._ready = False
        if sock is not None:
            self.dir, self.sock, self.log_path, self._log, self.pid = None, sock, None, None, pid
            return
        import subprocess
        self.dir = private_dir()
        self.sock = os.path.join(self.dir, "factory.sock")
        self.log_path = os.path.join(self.dir, "factory.log")
        self._log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "helpers.runner", "_zygote", self.sock, json.dumps(self.preload), str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True, env=env)
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 180) -> None:
        if self._ready:
            return
        if self.proc is None:   # attached: the socket appears once the factory has imported
            deadline = time.time() + timeout
            while not os.path.exists(self.sock):
                if time.time() > deadline or not self.alive():
                    raise RuntimeError(f"the shared kernel factory ({self.sock}) did not start")
                time.sleep(0.02)
            self._ready = True
            return
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            raise RuntimeError(f"kernel factory did not start (see {self.log_path})")
        self._ready = True

    def alive(self) -> bool:
        if self.proc is None:   # attached: the process exists and is no zombie
            return pid_alive(self.pid)
        return self.proc.poll() is None

    def kill(self) -> None:
        """End a factory that is alive but does not hand out kernels (stopped, stuck)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, TypeError):
            pass
        if self.proc is not None:
            self.proc.wait()
            self.close()
            return
        deadline = time.monotonic() + 2
        while pid_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.01)

    def kernel_manager_class(self, pidfile: str, log_file, ipc_base: str):
        from jupyter_client.kernelspec import KernelSpec

        argv = [sys.executable, "-m", "helpers.runner", "_launch", self.sock, "{connection_file}",
                "--pidfile", pidfile, "--parent", str(os.getpid()), "--wait", str(FACTORY_HANDOUT_TIMEOUT)]

        class ForkedKernelManager(_plain_kernel_manager_class(log_file, ipc_base)):
            """Same transport and logging as the plain manager; the kernel comes from the factory."""

            @property
            def kernel_spec(self):
                if self._kernel_spec is None:
                    self._kernel_spec = KernelSpec(argv=argv, display_name="Python 3 (spiegel)",
                                                   language="python", interrupt_mode="signal")
                return self._kernel_spec

        return ForkedKernelManager

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001
            self.proc.kill()
        if self._log:
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _plain_kernel_manager_class(log_file, ipc_base: str):
    """Ordinary kernel start (no factory): fallback and benchmark baseline."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class PlainKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self):
            return "ipc"

        @default("ip")
        def _ip_default(self):
            return ipc_base

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            kw["stdout"] = log_file
            kw["stderr"] = log_file
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    return PlainKernelManager


class _Kernel:
    """A started kernel waiting for its run: manager, client (subscribed early, so the
    handshake is one round trip), its own empty working directory and its log file."""

    def __init__(self, km, kc, workdir: str, pidfile: str, log_path: str):
        self.km, self.kc, self.workdir, self.pidfile, self.log_path = km, kc, workdir, pidfile, log_path

    def pid(self) -> int | None:
        try:
            return int(Path(self.pidfile).read_text().strip())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        proc = getattr(self.km.provisioner, "process", None) if self.km.provisioner else None
        return proc is not None and proc.poll() is None

    def kill_process(self) -> None:
        """SIGKILL the kernel (time limit): nbclient then sees a dead kernel."""
        pid = self.pid()
        for target in (pid, getattr(getattr(self.km.provisioner, "process", None), "pid", None)):
            if target:
                try:
                    os.kill(target, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def discard(self) -> "object | None":
        """Kill without waiting for it (the next run does not wait on this one's exit)."""
        try:
            self.kc.stop_channels()
        except Exception:  # noqa: BLE001
            pass
        proc = getattr(self.km.provisioner, "process", None) if self.km.provisioner else None
        self.kill_process()
        # the synchronous part of jupyter_client's cleanup_resources: no event loop needed,
        # so this also works while the interpreter shuts down
        for step in (self.km.cleanup_connection_file, self.km.cleanup_ipc_files, self.km._close_control_socket):
            try:
                step()
            except Exception:  # noqa: BLE001
                pass
        try:
            if self.km._created_context and not self.km.context.closed:
                self.km.context.destroy(linger=0)
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)
        for f in (self.pidfile, self.log_path):
            try:
                os.unlink(f)
            except OSError:
                pass
        return proc

    def log_text(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace").strip()
        except OSError:
            return ""


async def _wait_ready(kernel: _Kernel, timeout: float) -> None:
    """jupyter_client's ``wait_for_ready`` without its final 0.2 s wait for silence on IOPub:
    a kernel_info round trip, then one IOPub message to prove the subscription is live (a
    kernel started ahead has them queued), then a drain that does not wait."""
    from queue import Empty
    kc, km = kernel.kc, kernel.km
    deadline = time.monotonic() + timeout
    while True:
        msg_id = kc.kernel_info()
        try:
            reply = await kc.shell_channel.get_msg(timeout=1)
        except Empty:
            reply = None
        if reply is not None and reply["msg_type"] == "kernel_info_reply" \
                and reply.get("parent_header", {}).get("msg_id") == msg_id:
            try:
                await kc.iopub_channel.get_msg(timeout=0.2)
            except Empty:
                pass
            else:
                kc._handle_kernel_info_reply(reply)
                break
        if not await km.is_alive():
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
    while True:
        try:
            await kc.iopub_channel.get_msg(timeout=0)
        except Empty:
            break


# ---------------------------------------------------------------------------------------
# The worker: executes runs (papermill + nbconvert in-process), keeps factory and browser
# ---------------------------------------------------------------------------------------

_STATE = None
_STATE_LOCK = threading.Lock()
_RENDER_LOCK = threading.Lock()
#: set by the coordinator when the build stops (local pool): no run starts, none is kept
_STOP = None


class _DaskStop:
    """The stop flag of a build on a Dask cluster: a ``distributed.Event`` by name."""

    def __init__(self, name: str):
        self.name = name

    def is_set(self) -> bool:
        from distributed import Event
        try:
            return Event(self.name).is_set()
        except Exception:  # noqa: BLE001 - no scheduler to ask: the build is gone
            return True


def _block_slow_optional_imports() -> None:
    """jsonschema loads ``rfc3987_syntax`` (a grammar compiled at import, ~1.6 s here) for
    IRI formats that notebook validation never uses; skipping it saves that per worker."""
    sys.modules.setdefault("rfc3987_syntax", None)


class _Stopped(Exception):
    """The build is stopping: this run is discarded."""


class _RunLog:
    """A run's own log, under a temporary name until the run ends. A write error here is
    the run's failure too: the first one is kept (``error``) and writing stops, so the
    run's error handling never trips over its own log."""

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
        _unlink(self.tmp)

    def write(self, text: str) -> None:   # a stream for logging.StreamHandler
        if self._f is not None:
            try:
                self._f.write(text)
            except OSError as exc:
                self._fail(exc)

    def flush(self) -> None:
        pass

    def __call__(self, msg: str) -> None:
        self.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

    def close(self) -> None:
        if self._f is None:
            return
        try:
            self._f.close()
            self._f = None
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self._fail(exc)

    def discard(self) -> None:
        self._f = None
        _unlink(self.tmp)


class _Staging:
    """A run's files under temporary names, renamed into place together once the run is
    complete (``commit``); whatever is not committed is removed (``discard``)."""

    def __init__(self):
        self.items: list[tuple[str, Path, Path, dict]] = []   # (format or "extra", tmp, final, record)
        self.dirs: list[Path] = []

    def write(self, kind: str, final: Path, data: str | bytes) -> Path:
        final = Path(final)
        tmp = temp_path(final)
        _write_new(tmp, data, final)
        self.add(kind, tmp, final)
        return tmp

    def add(self, kind: str, tmp: Path, final: Path, **extra) -> None:
        record = {**file_record(tmp), "path": str(final), **extra}
        self.items.append((kind, Path(tmp), Path(final), record))

    def commit(self, result: RunResult) -> None:
        while self.items:
            kind, tmp, final, record = self.items[0]
            try:
                os.replace(tmp, final)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(final)) from None
            self.items.pop(0)
            if kind == "extra":
                result.extras.append(record)
            else:
                result.outputs[kind] = record

    def discard(self) -> None:
        for _kind, tmp, _final, _record in self.items:
            _unlink(tmp)
        self.items = []
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.dirs = []


class WorkerState:
    """Per worker process: the kernel factory, the next kernel (started while the previous
    report renders), the PDF printer(s) and the imported libraries."""

    def __init__(self, preload=(), factory_sock: str | None = None, factory_pid: int | None = None):
        _block_slow_optional_imports()
        self.warm = os.environ.get("SPIEGEL_WARM_KERNELS", "1") != "0"
        self.preload = tuple(preload)
        self.factory = None
        if self.warm:
            self.factory = KernelFactory(preload, sock=factory_sock, pid=factory_pid)
        self.ipc_dir = private_dir()
        self._n = 0
        self._closed = False
        self._spare: _Kernel | None = None
        self._kernel: _Kernel | None = None     # the kernel of the run in progress
        self._current: tuple | None = None      # (spec, staging, log) of the run in progress
        self._dying: list = []
        self._printers = threading.local()
        self._printer_list = []
        # Imported here, in the worker's main thread, before any task arrives. (An import
        # thread beside the task's own imports raced on module locks: CPython then hands
        # one thread a partially initialised module, seen as "partially initialized module
        # 'typing'" in a worker.) Once per worker, so the cost is paid once per batch.
        self._import_libraries()

    @staticmethod
    def _import_libraries():
        import papermill.clientwrap  # noqa: F401
        import papermill.execute  # noqa: F401
        from . import render  # noqa: F401
        render.html_exporter()

    def printer(self):
        from .render import PdfPrinter
        p = getattr(self._printers, "printer", None)
        if p is None:
            p = PdfPrinter()
            self._printers.printer = p
            self._printer_list.append(p)
        return p

    def close(self):
        if self._closed:
            return
        self._closed = True
        if self._spare is not None:
            self._spare.discard()
            self._spare = None
        for p in self._printer_list:
            try:
                p.close()
            except Exception:  # noqa: BLE001
                pass
        if self.factory:
            self.factory.close()
        shutil.rmtree(self.ipc_dir, ignore_errors=True)

    def abandon(self):
        """On SIGTERM (a pool that is shut down ends a worker still busy after its grace):
        remove this run's temporaries and kill its kernels, without waiting on any library;
        launchers, the Playwright driver and its Chromium die with this process."""
        if self._current is not None:
            spec, staging, log = self._current
            staging.discard()
            log.discard()
            for folder in (Path(spec.outdir), Path(spec.log_path).parent):
                remove_temporaries(folder, {os.getpid()})
        for k in (self._kernel, self._spare):
            if k is not None:
                k.kill_process()
        shutil.rmtree(self.ipc_dir, ignore_errors=True)

    # -- kernels -----------------------------------------------------------------------

    def _launch(self) -> _Kernel:
        """Start a kernel (forked from the factory) in a fresh working directory."""
        from nbclient.util import run_sync
        self._n += 1
        base = os.path.join(self.ipc_dir, f"k{self._n}")
        workdir = tempfile.mkdtemp(prefix=f"run{self._n}-", dir=self.ipc_dir)
        pidfile, log_path = base + ".pid", base + ".log"
        with open(log_path, "ab") as log_fh:
            if self.factory is not None:
                if not self.factory.alive():
                    if self.factory.proc is None:   # the shared factory is gone: start our own
                        self.factory = KernelFactory(self.preload)
                    else:
                        self.factory.close()
                        self.factory = KernelFactory(self.factory.preload)
                self.factory.wait_ready()
                km_class = self.factory.kernel_manager_class(pidfile, log_fh, base)
            else:
                km_class = _plain_kernel_manager_class(log_fh, base)
            # the connection file too in the private folder: a killed worker leaves nothing in /tmp
            km = km_class(kernel_name="python3", connection_file=base + ".json")
            try:
                run_sync(km.start_kernel)(cwd=workdir,
                                                 extra_arguments=["--HistoryManager.hist_file=:memory:"])
            except Exception:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
        kc = km.client()
        kc.start_channels()
        kc.allow_stdin = False
        return _Kernel(km, kc, workdir, pidfile, log_path)

    def _take_kernel(self) -> _Kernel:
        self._dying = [p for p in self._dying if p is not None and p.poll() is None]
        k, self._spare = self._spare, None
        if k is not None and not k.alive():
            self._dying.append(k.discard())
            k = None
        return k if k is not None else self._launch()

    def _start_spare(self, log) -> None:
        try:
            self._spare = self._launch()
        except Exception as exc:  # noqa: BLE001 - the next run starts one itself (and retries)
            log(f"could not start the next kernel ahead: {type(exc).__name__}: {_first_line(exc)}")
            self._spare = None

    def _replace_factory(self, log) -> None:
        """A factory that took a request and handed out no kernel is stuck (or stopped):
        kill it; the next launch starts a new one (the pool's shared one included)."""
        log(f"the kernel factory (pid {self.factory.pid}) did not hand out a kernel within "
            f"{FACTORY_HANDOUT_TIMEOUT:.0f}s: killed, a new one starts")
        self.factory.kill()
        if self._spare is not None:   # asked of the same factory
            self._dying.append(self._spare.discard())
            self._spare = None

    # -- one run ----------------------------------------------------------------------

    def run(self, spec: RunSpec, stop=None) -> RunResult:
        """Run ``spec``; ``stop`` (an object with ``is_set()``, default: the pool's) tells
        that the build is stopping: the run is then discarded."""
        stop = stop if stop is not None else _STOP
        started = time.perf_counter()
        deadline = time.monotonic() + spec.timeout
        result = RunResult(name=spec.name, worker=f"{socket.gethostname()}:{os.getpid()}")
        log = _RunLog(spec.log_path)
        staging = _Staging()
        self._current = (spec, staging, log)
        log(f"run {spec.name}: report {spec.report}, {spec.scope} {spec.key}, quarter {spec.quarter}")
        log(f"cache key {spec.cache_key[:16]}, worker {result.worker}, time limit {spec.timeout:.0f}s")
        try:
            if spec.pre_failed:
                raise RunFailure(**spec.pre_failed)
            _check_stop(stop)
            try:
                Path(spec.outdir).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, spec.outdir) from None
            nb = self._executed_notebook(spec, result, log) if spec.render_only else None
            if nb is None:
                nb = self._execute(spec, result, log, deadline, staging, stop)
            html_tmp = self._render(spec, nb, result, log, deadline, staging)
            self._extras(spec, result, log, deadline, staging)
            pdf_failure = None
            if "pdf" in spec.formats:
                try:
                    self._print(spec, html_tmp, result, log, deadline, staging)
                except RunFailure as failure:   # the HTML and extras stay: only the PDF failed
                    pdf_failure = failure
            if log.error is not None:
                raise log.error
            _check_stop(stop)
            staging.commit(result)
            if pdf_failure is not None:
                raise pdf_failure
            result.status = "done"
            stale = Path(spec.partial_path)
            if stale.exists():
                stale.unlink()
        except _Stopped:
            result.error = {"stage": "interrupted", "message": "the build stopped before this run was kept"}
            log("discarded: the build is stopping")
        except RunFailure as failure:
            result.error = failure.info
            log(f"FAILED in stage {failure.info.get('stage')}: {failure.info.get('message')}")
        except Exception as exc:  # noqa: BLE001 - one run's bug must not stop the batch
            if is_write_error(exc):
                result.error = write_failure(exc, spec.outdir).info
                log(f"FAILED in stage write: {result.error['message']}")
            else:
                result.error = {"stage": "runner", "message": f"{type(exc).__name__}: {_first_line(exc)}"}
                import traceback
                log("FAILED (internal error):\n" + "".join(traceback.format_exception(exc)))
        finally:
            staging.discard()
            result.outputs_done = {fmt: fmt in result.outputs for fmt in dict.fromkeys(["ipynb", "html", *spec.formats])}
            result.timings["total"] = round(time.perf_counter() - started, 3)
            result.memory_mb["worker_peak"] = peak_rss_mb()
            result.finished_at = _now_iso()
            log(f"{result.status} in {result.timings['total']:.2f}s; timings {json.dumps(result.timings)}")
            log.close()
            self._current = None
        if log.error is not None and result.status == "done":   # the log's last lines or its rename
            result.status = "failed"
            result.error = write_failure(log.error).info
        return result

    def _executed_notebook(self, spec: RunSpec, result: RunResult, log):
        """``render_only``: the notebook a previous run executed, or None to execute again."""
        import nbformat
        final = Path(spec.files["ipynb"])
        try:
            nb = nbformat.read(final, as_version=4)
            nbformat.validate(nb)
        except Exception as exc:  # noqa: BLE001 - missing or damaged: execute as usual
            log(f"no usable executed notebook at {final} ({type(exc).__name__}): executing")
            return None
        result.outputs["ipynb"] = file_record(final)
        result.attempts = 0
        log(f"rendering from the executed notebook {final.name} (not executed again)")
        return nb

    def _execute(self, spec: RunSpec, result: RunResult, log, deadline: float, staging: _Staging, stop=None):
        import logging

        import nbformat
        from nbclient.util import run_sync
        from papermill.exceptions import PapermillExecutionError

        final = Path(spec.files["ipynb"])
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s papermill %(levelname)s %(message)s", "%H:%M:%S"))
        pm_log = logging.getLogger("papermill")
        pm_log.addHandler(handler)
        pm_log.propagate = False
        pm_log.setLevel(logging.INFO)
        t0 = time.perf_counter()
        attempts, max_attempts = 0, 3
        try:
            while True:
                attempts += 1
                kernel_started = False
                kernel = None
                timer = None
                kernel_peak = {}
                run = {}   # the notebook being executed, for the partial notebook
                t_attempt = time.perf_counter()
                try:
                    kernel = self._kernel = self._take_kernel()
                    run_sync(_wait_ready)(kernel, max(1.0, min(60.0, deadline - time.monotonic())))
                    kernel_started = True
                    result.timings["kernel_start"] = round(time.perf_counter() - t_attempt, 3)
                    timer = threading.Timer(max(deadline - time.monotonic(), 0.1), kernel.kill_process)
                    timer.daemon = True
                    timer.start()
                    nb = self._run_notebook(spec, kernel, kernel_peak, run, deadline)
                    break
                except Exception as exc:  # kernel start, dead kernel, time limit
                    if is_write_error(exc):
                        raise
                    over_time = time.monotonic() >= deadline - 0.5
                    msg = f"{type(exc).__name__}: {_first_line(exc)}"
                    handout_failed = (not kernel_started and kernel is not None and self.factory is not None
                                      and kernel.pid() is None)
                    if handout_failed:
                        msg = (f"the kernel factory did not hand out a kernel within "
                               f"{FACTORY_HANDOUT_TIMEOUT:.0f}s (it was replaced)")
                    cell = _stopped_cell(run.get("nb"), run.get("cell"))
                    if over_time:
                        where = f" in cell {cell['cell_index']} (`{cell['cell_source']}`)" if cell else ""
                        msg = f"time limit of {spec.timeout:.0f}s reached{where} ({type(exc).__name__})"
                    log(f"attempt {attempts}: {msg}")
                    if handout_failed:
                        self._replace_factory(log)
                    if not kernel_started and not over_time and attempts < max_attempts:
                        log("kernel did not start; trying again")
                        time.sleep(0.2 * attempts)
                        continue
                    partial = self._keep_partial(spec, run.get("nb"), log)
                    raise RunFailure("execute", msg, partial_notebook=partial,
                                     kernel_started=kernel_started, **cell) from None
                finally:
                    self._kernel = None
                    if timer is not None:
                        timer.cancel()
                    if kernel is not None:
                        chatter = kernel.log_text()
                        if chatter:
                            log("kernel output:\n" + chatter[-4000:])
                        self._dying.append(kernel.discard())
                        if kernel_peak:
                            result.memory_mb["kernel_peak"] = kernel_peak["mb"]
                    # the next run's kernel boots while this report renders
                    if not (stop is not None and stop.is_set()):
                        self._start_spare(log)
            result.attempts = attempts
            try:
                _raise_for_cell_errors(nb, self.ipc_dir)
            except PapermillExecutionError as err:
                raise self._cell_failure(spec, err, log) from None
            _drop_timestamps(nb, spec)
            staging.write("ipynb", final, nbformat.writes(nb))
            result.timings["execute"] = round(time.perf_counter() - t0, 3)
            log(f"executed in {result.timings['execute']:.2f}s (kernel ready after "
                f"{result.timings.get('kernel_start', 0):.2f}s, attempts {attempts})")
            return nb
        finally:
            pm_log.removeHandler(handler)

    @staticmethod
    def _run_notebook(spec: RunSpec, kernel: _Kernel, kernel_peak: dict, run: dict, deadline: float):
        """papermill's ``execute_notebook`` recipe (load, parameterise, execute) on a kernel we
        started ourselves, so it can be started ahead. The notebook stays in memory (papermill
        would rewrite the file after every cell): the run writes it once, complete."""
        import logging
        import math

        from papermill.clientwrap import PapermillNotebookClient
        from papermill.engines import NotebookExecutionManager
        from papermill.execute import prepare_notebook_metadata, remove_error_markers
        from papermill.iorw import load_notebook_node
        from papermill.parameterize import parameterize_notebook

        with open(spec.notebook, encoding="utf-8") as f:
            source_ids = [c.get("id") for c in json.load(f).get("cells", [])]
        nb = load_notebook_node(spec.notebook)
        nb = parameterize_notebook(nb, spec.params, kernel_name="python3", language="python")
        nb = prepare_notebook_metadata(nb, spec.notebook, spec.files["ipynb"])
        nb = remove_error_markers(nb)
        _fix_cell_ids(nb, source_ids)
        nb_man = NotebookExecutionManager(nb, output_path=None, progress_bar=False, log_output=False)
        run["nb"] = nb_man.nb

        def on_cell_complete(**_kw):   # nbclient calls it once the cell is sent
            pid = kernel.pid()
            mb = _rss_mb(f"/proc/{pid}/status") if pid else None
            if mb is not None:
                kernel_peak["mb"] = max(mb, kernel_peak.get("mb", 0))

        # the cell in progress: papermill marks a cell stopped by the time limit as completed
        def on_cell_start(cell, cell_index, **_kw):
            if cell.cell_type == "code" and cell.source.strip():
                run["cell"] = cell_index

        def on_cell_executed(**_kw):
            run["cell"] = None

        # not papermill's notebook_complete: it marks cells that never ran as completed
        nb_man.notebook_start()
        client = PapermillNotebookClient(
            nb_man, km=kernel.km, kernel_name="python3",
            timeout=max(1, math.ceil(deadline - time.monotonic())), startup_timeout=60,
            log=logging.getLogger("papermill"), log_output=False, record_timing=False,
            resources={"metadata": {"path": kernel.workdir}}, on_cell_complete=on_cell_complete,
            on_cell_start=on_cell_start, on_cell_executed=on_cell_executed)
        client.kc = kernel.kc
        client.execute()
        return nb_man.nb

    def _keep_partial(self, spec: RunSpec, nb, log) -> str | None:
        """The partial notebook of a failed run, written whole or not at all."""
        if nb is None:
            return None
        import nbformat
        _drop_timestamps(nb, spec)
        try:
            write_atomic(Path(spec.partial_path), nbformat.writes(nb))
        except OSError as exc:
            log(f"partial notebook not kept: {write_failure(exc).info['message']}")
            return None
        return spec.partial_path

    def _cell_failure(self, spec: RunSpec, err, log) -> RunFailure:
        import nbformat
        bannered = Path(self.ipc_dir) / "failed.ipynb"   # papermill's copy with the error banner
        try:
            partial = self._keep_partial(spec, nbformat.read(bannered, as_version=4), log)
        finally:
            _unlink(bannered)
        cell_index = self._source_cell_index(spec, err.cell_index, partial)
        source = _first_line(err.source, 120)
        from .suppression import scrub_message
        message = f"{err.ename}: {scrub_message(_first_line(err.evalue))}"
        log(f"cell {cell_index} (`{source}`) raised {message}")
        # the traceback's frames (code, not data) help the analyst; values stay out
        ansi = re.compile(r"\x1b\[[0-9;]*m")
        frames = [ansi.sub("", ln) for ln in "\n".join(err.traceback or []).splitlines()]
        frames = [ln for ln in frames if ln.strip().startswith(("File ", "Cell In", "---->"))]
        for ln in frames[:20]:
            log("  " + ln[:200])
        return RunFailure("execute", message, cell_index=cell_index, cell_source=source,
                          ename=err.ename, partial_notebook=partial)

    @staticmethod
    def _source_cell_index(spec: RunSpec, executed_index: int, partial: str | None) -> int:
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

    def _render(self, spec: RunSpec, nb, result: RunResult, log, deadline: float, staging: _Staging) -> Path:
        from . import render
        t0 = time.perf_counter()
        try:
            with _RENDER_LOCK:   # one exporter per process; Dask may run tasks in threads
                page = render.render_html(nb, title=spec.title, subtitle=spec.subtitle,
                                          provenance=spec.provenance)
        except Exception as exc:  # noqa: BLE001
            raise RunFailure("html", f"{type(exc).__name__}: {_first_line(exc)}") from None
        tmp = staging.write("html", Path(spec.files["html"]), page)
        result.timings["html"] = round(time.perf_counter() - t0, 3)
        _check_deadline(spec, deadline, "html", "while rendering the HTML")
        log(f"html rendered in {result.timings['html']:.2f}s ({len(page)} characters)")
        return tmp

    def _print(self, spec: RunSpec, html_tmp: Path, result: RunResult, log, deadline: float,
               staging: _Staging) -> None:
        """Print the PDF within the run's remaining time: Playwright gets it as its timeout,
        and a watchdog kills the browser at the deadline (a page can stall Chromium where
        no Playwright timeout reaches, e.g. while printing)."""
        t0 = time.perf_counter()
        final = Path(spec.files["pdf"])
        tmp = temp_path(final)
        _check_deadline(spec, deadline, "pdf", "before printing the PDF")
        printer = self.printer()
        watchdog = threading.Timer(max(deadline - time.monotonic(), 0.1), self._kill_browsers)
        watchdog.daemon = True
        try:
            printer._ensure()
            remaining_ms = max(deadline - time.monotonic(), 0.1) * 1000
            printer._context.set_default_timeout(remaining_ms)
            printer._context.set_default_navigation_timeout(remaining_ms)
            watchdog.start()
            pages = printer.print_pdf(html_tmp, tmp, footer_left=f"{spec.label} · {spec.quarter}")
        except Exception as exc:  # noqa: BLE001 - HTML stays; the run is marked failed
            _unlink(tmp)
            if is_write_error(exc):
                raise write_failure(exc, final) from None
            if time.monotonic() >= deadline - 0.5:
                raise RunFailure("pdf", f"time limit of {spec.timeout:.0f}s reached while printing the PDF "
                                        f"({type(exc).__name__})") from None
            raise RunFailure("pdf", _first_line(exc, 400)) from None
        finally:
            watchdog.cancel()
        staging.add("pdf", tmp, final, pages=pages)
        result.timings["pdf"] = round(time.perf_counter() - t0, 3)
        log(f"pdf printed in {result.timings['pdf']:.2f}s ({pages} pages)")

    @staticmethod
    def _kill_browsers() -> None:
        """Kill the Chromium of this process's Playwright drivers (its own process group);
        the printer launches a new one for the next report."""
        me = os.getpid()
        procs = _process_table()
        drivers = [pid for pid, (ppid, cmd) in procs.items() if ppid == me and "run-driver" in cmd]
        for pid, (ppid, _cmd) in procs.items():
            if ppid in drivers:
                for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                    try:
                        kill()
                    except (ProcessLookupError, PermissionError):
                        pass

    def _extras(self, spec: RunSpec, result: RunResult, log, deadline: float, staging: _Staging) -> None:
        from .reports import REPORTS
        t0 = time.perf_counter()
        report = REPORTS.get(spec.report)
        if report is not None and report.extras is not None and Path(spec.notebook).resolve() == Path(report.notebook).resolve():
            folder = temp_path(Path(spec.outdir) / "extras")
            shutil.rmtree(folder, ignore_errors=True)
            try:
                folder.mkdir(parents=True)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, spec.outdir) from None
            staging.dirs.append(folder)
            try:
                written = report.extras(Path(spec.cube_path), spec.key, folder)
            except OSError as exc:
                if is_write_error(exc):
                    raise OSError(exc.errno, exc.strerror, spec.outdir) from None
                raise RunFailure("extras", f"{type(exc).__name__}: {_first_line(exc)}") from None
            except Exception as exc:  # noqa: BLE001
                raise RunFailure("extras", f"{type(exc).__name__}: {_first_line(exc)}") from None
            for path in written:
                staging.add("extra", Path(path), Path(spec.outdir) / Path(path).name)
            log(f"{len(written)} extra file(s) written")
        try:
            from .render.portal import key_figures
            result.figures = key_figures(spec.report, Path(spec.cube_path), spec.key)
        except Exception as exc:  # noqa: BLE001 - figures are a nicety for the portal
            log(f"key figures unavailable: {type(exc).__name__}")
        result.timings["extras"] = round(time.perf_counter() - t0, 3)
        _check_deadline(spec, deadline, "extras", "while writing the extra files")


def _check_stop(stop) -> None:
    if stop is not None and stop.is_set():
        raise _Stopped()


def _check_deadline(spec: RunSpec, deadline: float, stage: str, where: str) -> None:
    if time.monotonic() >= deadline:
        raise RunFailure(stage, f"time limit of {spec.timeout:.0f}s reached {where}")


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process we may see."""
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


def _fix_cell_ids(nb, source_ids: list) -> None:
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


def _drop_timestamps(nb, spec: RunSpec) -> None:
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


def _stopped_cell(nb, executed_index: int | None) -> dict:
    """The cell that was running when the run was stopped, marked failed (the cells after it
    stay pending), and its index as the author counts cells (without the injected cell)."""
    if nb is None or executed_index is None:
        return {}
    cell = nb.cells[executed_index]
    cell.setdefault("metadata", {}).setdefault("papermill", {})["status"] = "failed"
    injected = sum("injected-parameters" in c.get("metadata", {}).get("tags", [])
                   for c in nb.cells[:executed_index])
    return {"cell_index": executed_index - injected, "cell_source": _first_line(cell.get("source", ""), 120)}


def _raise_for_cell_errors(nb, scratch: str) -> None:
    """papermill's check for a cell error; it writes the notebook with its error banner,
    here to the worker's private folder (``failed.ipynb``), from where the run keeps it."""
    from papermill.execute import raise_for_execution_errors
    import copy
    raise_for_execution_errors(copy.deepcopy(nb), os.path.join(scratch, "failed.ipynb"))


def worker_init(preload=(), factory_sock: str | None = None, factory_pid: int | None = None,
                parent_pid: int | None = None, stop=None) -> None:
    """Set up this process's worker state: kernel factory (own, or the pool's shared one)
    and the library imports (pool initializer / Dask warm-up). A process of the local pool
    (``parent_pid``) dies with the coordinator, leaves Ctrl-C to it (the coordinator stops
    the pool: ``stop``), and on SIGTERM removes its temporaries before it goes."""
    global _STATE, _STOP
    if parent_pid is not None:
        die_with_parent(parent_pid)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _on_sigterm)
        _STOP = stop
    with _STATE_LOCK:
        if _STATE is None:
            _STATE = WorkerState(preload, factory_sock, factory_pid)
            # close (spare kernel, browser, factory) while the process is still whole: a
            # multiprocessing child runs its finalizers before interpreter shutdown; atexit
            # is the fallback for other hosts
            from multiprocessing import util
            util.Finalize(_STATE, _STATE.close, exitpriority=100)
            import atexit
            atexit.register(_STATE.close)


def _on_sigterm(signum, _frame) -> None:
    if _STATE is not None:
        _STATE.abandon()
    os._exit(128 + signum)


def execute_run(spec: RunSpec, preload=(), stop: str | None = None) -> RunResult:
    """Run one named run in this worker process (local pool or Dask task; ``stop`` names
    the Dask build's stop event)."""
    worker_init(preload)
    return _STATE.run(spec, _DaskStop(stop) if stop else None)


def call_task(fn_path: str, *args, **kwargs):
    """Run ``module:function`` in a worker (ingest, prepare: patient tables stay out of
    the coordinator)."""
    import importlib
    module, name = fn_path.split(":")
    _block_slow_optional_imports()
    return getattr(importlib.import_module(module), name)(*args, **kwargs)


def worker_memory() -> dict:
    """Peak memory of this worker and the resident memory of its own factory (MB)."""
    out = {"worker_peak": peak_rss_mb(), "pid": os.getpid(), "worker": f"{socket.gethostname()}:{os.getpid()}"}
    if _STATE is not None and _STATE.factory is not None and _STATE.factory.proc is not None:
        out["factory_rss"] = _rss_mb(f"/proc/{_STATE.factory.proc.pid}/status", "VmRSS")
    return out


# ---------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------


class LocalExecutor:
    """A pool of warm worker processes on this machine."""

    name = "local"

    def __init__(self, workers: int | None = None, preload=()):
        self.workers = workers or os.cpu_count() or 1
        self.preload = tuple(preload)
        self._pool = None
        self._stop = None
        # one factory for all local workers: imports paid once, pages shared by every kernel
        warm = os.environ.get("SPIEGEL_WARM_KERNELS", "1") != "0"
        self.factory = KernelFactory(self.preload) if warm else None

    def _ensure_pool(self):
        """The pool; its processes are started from this (the calling) thread and die with
        it, so use the executor from the coordinator's main thread."""
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            ctx = multiprocessing.get_context("spawn")
            if self._stop is None:
                self._stop = ctx.Event()
            sock = self.factory.sock if self.factory is not None else None
            pid = self.factory.pid if self.factory is not None else None
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=worker_init,
                                             initargs=(self.preload, sock, pid, os.getpid(), self._stop))
        return self._pool

    def call(self, fn_path: str, *args, **kwargs):
        return self._ensure_pool().submit(call_task, fn_path, *args, **kwargs).result()

    def run_all(self, specs: list[RunSpec]):
        """Yield a RunResult per spec as they complete (in completion order).

        Only as many runs as there are workers are handed to the pool at a time, so when
        the consumer stops (Ctrl-C) no queued run starts; ``close`` stops the running ones."""
        from collections import deque
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool
        pending = deque(specs)
        crashes: dict[str, int] = {}
        while pending:
            pool = self._ensure_pool()
            futures = {}
            broken = False

            def hand_out():
                while pending and len(futures) < self.workers and not broken:
                    spec = pending.popleft()
                    futures[pool.submit(execute_run, spec, self.preload)] = spec

            hand_out()
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                finished = []
                for fut in done:
                    spec = futures.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        crashes[spec.name] = crashes.get(spec.name, 0) + 1
                        _clean_after_crash(spec)
                        if crashes[spec.name] >= 2:
                            finished.append(RunResult(name=spec.name, attempts=crashes[spec.name], error={
                                "stage": "worker", "message": "the worker process died twice running it "
                                "(out of memory or a crash in a C library?)"}))
                        else:
                            pending.appendleft(spec)
                        continue
                    result.attempts += crashes.get(spec.name, 0)
                    finished.append(result)
                hand_out()   # before yielding: the workers go on while the batch records
                yield from finished
            if broken:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def memory(self) -> list[dict]:
        if self._pool is None:
            return []
        futs = [self._pool.submit(worker_memory) for _ in range(self.workers)]
        out = list({m["pid"]: m for m in (f.result() for f in futs)}.values())
        if self.factory is not None and self.factory.proc is not None:
            out.append({"factory_rss": _rss_mb(f"/proc/{self.factory.proc.pid}/status", "VmRSS"), "shared": True})
        return out

    def close(self, grace: float = 20):
        """Stop: no run starts any more and none that finishes from now on is kept (its
        files are not renamed into place); wait ``grace`` seconds, then end the workers."""
        if self._stop is not None:
            self._stop.set()
        if self._pool is not None:
            # a worker that hangs on its way out must not hang the build: wait, then end it
            procs = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            deadline = time.time() + grace
            for proc in procs:
                proc.join(timeout=max(0.1, deadline - time.time()))
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=3)
                if proc.is_alive():
                    proc.kill()
            self._pool = None
        self._stop = None   # a pool started after this gets a fresh one
        if self.factory is not None:
            self.factory.close()
            self.factory = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DaskExecutor:
    """The same runs on an existing Dask distributed cluster (shared project/data paths)."""

    name = "dask"

    def __init__(self, scheduler: str, preload=()):
        from distributed import Client
        self.client = Client(scheduler, timeout="30s")
        self.preload = tuple(preload)
        self._stop = f"spiegel-stop-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            self.client.run(worker_init, self.preload)   # start factories while we prepare
        except Exception:  # noqa: BLE001 - warm-up is best effort
            pass

    def call(self, fn_path: str, *args, **kwargs):
        return self.client.submit(call_task, fn_path, *args, pure=False, **kwargs).result()

    def run_all(self, specs: list[RunSpec]):
        from distributed import as_completed
        futures = {}
        for s in specs:
            fut = self.client.submit(execute_run, s, self.preload, self._stop, pure=False,
                                     key=f"spiegel-{s.name}-{os.urandom(4).hex()}", retries=1)
            futures[fut.key] = (fut, s)
        for fut in as_completed([f for f, _ in futures.values()]):
            spec = futures[fut.key][1]
            try:
                yield fut.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker
                yield RunResult(name=spec.name, error={"stage": "worker",
                                                       "message": f"{type(exc).__name__}: {_first_line(exc)}"})

    def memory(self) -> list[dict]:
        try:
            return list(self.client.run(worker_memory).values())
        except Exception:  # noqa: BLE001
            return []

    def close(self, grace: float = 20):
        """Runs still going on the cluster finish, but none of them is kept."""
        from distributed import Event
        try:
            Event(self._stop, client=self.client).set()
        except Exception:  # noqa: BLE001 - the scheduler is gone: so are the runs
            pass
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _clean_after_crash(spec: RunSpec) -> None:
    """A worker died running ``spec``: remove what it was writing and its private folder."""
    for folder in (Path(spec.outdir), Path(spec.log_path).parent):
        remove_temporaries(folder)
    sweep_private_dirs()


def make_executor(kind: str, workers: int | None = None, scheduler: str | None = None, preload=()):
    if kind == "dask":
        return DaskExecutor(scheduler, preload)
    return LocalExecutor(workers, preload)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_zygote":
        _zygote_main(sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_launch":
        sys.exit(_launcher_main(sys.argv[2:]))
    else:
        sys.exit("usage: python -m helpers.runner _zygote|_launch ... (internal)")
