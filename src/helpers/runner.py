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
no port races); a kernel that still fails to start is retried (3 attempts). A tiny
launcher process (``python -m helpers.runner _launch``, ~20 ms, no imports) stands in for
the forked kernel towards jupyter_client and relays its signals. The time limit per run
is a timer in the worker that kills the kernel; nbclient then reports a dead kernel.

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

import hashlib
import json
import os
import select
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
    attempts: int = 1
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


def temp_path(final: Path) -> Path:
    """A temporary name beside ``final`` that keeps its suffix (papermill checks it)."""
    final = Path(final)
    return final.with_name(f".{final.stem}.tmp-{os.getpid()}-{threading.get_ident() % 10000}{final.suffix}")


def write_atomic(path: Path, data: str | bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


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


def _zygote_main(sock_path: str, preload: list[str]) -> None:
    """Import ``preload`` once, then fork a fresh kernel process per launch request."""
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
    """Ask the factory for a kernel, relay signals to it, exit when it exits."""
    sock_path, connection_file = argv[0], argv[1]
    pidfile, extra = None, []
    rest = argv[2:]
    while rest:
        opt = rest.pop(0)
        if opt == "--pidfile":
            pidfile = rest.pop(0)
        else:
            extra.append(opt)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    for attempt in range(50):
        try:
            conn.connect(sock_path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            time.sleep(0.1)
    else:
        sys.stderr.write(f"launcher: kernel factory at {sock_path} not reachable\n")
        return 3
    request = {"connection_file": connection_file, "cwd": os.getcwd(), "env": dict(os.environ), "args": extra}
    socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
    buf = b""
    while b"\n" not in buf:
        data = conn.recv(64)
        if not data:
            sys.stderr.write("launcher: the kernel factory did not start a kernel\n")
            return 3
        buf += data
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
        self.dir = tempfile.mkdtemp(prefix="spg-")   # short: IPC socket paths are limited to ~100 bytes
        self.sock = os.path.join(self.dir, "factory.sock")
        self.log_path = os.path.join(self.dir, "factory.log")
        self._log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "helpers.runner", "_zygote", self.sock, json.dumps(self.preload)],
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
            try:
                with open(f"/proc/{self.pid}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
            except (OSError, IndexError, TypeError):
                return False
        return self.proc.poll() is None

    def kernel_manager_class(self, pidfile: str, log_file, ipc_base: str):
        from jupyter_client.kernelspec import KernelSpec

        argv = [sys.executable, "-m", "helpers.runner", "_launch", self.sock, "{connection_file}",
                "--pidfile", pidfile]

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
        import shutil
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
        import shutil
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


def _block_slow_optional_imports() -> None:
    """jsonschema loads ``rfc3987_syntax`` (a grammar compiled at import, ~1.6 s here) for
    IRI formats that notebook validation never uses; skipping it saves that per worker."""
    sys.modules.setdefault("rfc3987_syntax", None)


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
        self.ipc_dir = tempfile.mkdtemp(prefix="spg-w")
        self._n = 0
        self._closed = False
        self._spare: _Kernel | None = None
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
        import shutil
        shutil.rmtree(self.ipc_dir, ignore_errors=True)

    # -- kernels -----------------------------------------------------------------------

    def _launch(self) -> _Kernel:
        """Start a kernel (forked from the factory) in a fresh working directory."""
        from nbclient.util import run_sync
        self._n += 1
        base = os.path.join(self.ipc_dir, f"k{self._n}")
        workdir = tempfile.mkdtemp(prefix="spiegel-run-")
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
            km = km_class(kernel_name="python3")
            try:
                run_sync(km.start_kernel)(cwd=workdir,
                                                 extra_arguments=["--HistoryManager.hist_file=:memory:"])
            except Exception:
                import shutil
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

    # -- one run ----------------------------------------------------------------------

    def run(self, spec: RunSpec) -> RunResult:
        started = time.perf_counter()
        result = RunResult(name=spec.name, worker=f"{socket.gethostname()}:{os.getpid()}")
        outdir = Path(spec.outdir)
        log_path = Path(spec.log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        outdir.mkdir(parents=True, exist_ok=True)
        log_tmp = temp_path(log_path)
        log_file = open(log_tmp, "w", buffering=1, encoding="utf-8")

        def log(msg: str) -> None:
            log_file.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

        log(f"run {spec.name}: report {spec.report}, {spec.scope} {spec.key}, quarter {spec.quarter}")
        log(f"cache key {spec.cache_key[:16]}, worker {result.worker}, time limit {spec.timeout:.0f}s")
        try:
            if spec.pre_failed:
                raise RunFailure(**spec.pre_failed)
            nb = self._execute(spec, result, log, log_file)
            self._render(spec, nb, result, log)
            self._extras(spec, result, log)
            result.status = "done"
            stale = Path(spec.partial_path)
            if stale.exists():
                stale.unlink()
        except RunFailure as failure:
            result.error = failure.info
            log(f"FAILED in stage {failure.info.get('stage')}: {failure.info.get('message')}")
        except Exception as exc:  # noqa: BLE001 - one run's bug must not stop the batch
            result.error = {"stage": "runner", "message": f"{type(exc).__name__}: {_first_line(exc)}"}
            import traceback
            log("FAILED (internal error):\n" + "".join(traceback.format_exception(exc)))
        finally:
            result.timings["total"] = round(time.perf_counter() - started, 3)
            result.memory_mb["worker_peak"] = peak_rss_mb()
            result.finished_at = _now_iso()
            log(f"{result.status} in {result.timings['total']:.2f}s; timings {json.dumps(result.timings)}")
            log_file.close()
            os.replace(log_tmp, log_path)
        return result

    def _execute(self, spec: RunSpec, result: RunResult, log, log_file):
        import logging

        from nbclient.util import run_sync
        from papermill.exceptions import PapermillExecutionError

        final = Path(spec.files["ipynb"])
        tmp = temp_path(final)
        handler = logging.StreamHandler(log_file)
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
                t_attempt = time.perf_counter()
                try:
                    kernel = self._take_kernel()
                    run_sync(_wait_ready)(kernel, 60)
                    kernel_started = True
                    result.timings["kernel_start"] = round(time.perf_counter() - t_attempt, 3)
                    remaining = spec.timeout - (time.perf_counter() - t0)
                    timer = threading.Timer(max(remaining, 0.1), kernel.kill_process)
                    timer.daemon = True
                    timer.start()
                    nb = self._run_notebook(spec, kernel, tmp, kernel_peak)
                    break
                except PapermillExecutionError as err:
                    raise self._cell_failure(spec, err, tmp, final, log) from None
                except Exception as exc:  # kernel start, dead kernel, time limit
                    over_time = time.perf_counter() - t0 >= spec.timeout - 0.5
                    msg = f"{type(exc).__name__}: {_first_line(exc)}"
                    if over_time:
                        msg = f"time limit of {spec.timeout:.0f}s reached ({msg})"
                    log(f"attempt {attempts}: {msg}")
                    if not kernel_started and not over_time and attempts < max_attempts:
                        log("kernel did not start; trying again")
                        time.sleep(0.2 * attempts)
                        continue
                    partial = self._keep_partial(tmp, spec)
                    raise RunFailure("execute", msg, partial_notebook=partial,
                                     kernel_started=kernel_started) from None
                finally:
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
                    self._start_spare(log)
            os.replace(tmp, final)
            result.outputs["ipynb"] = file_record(final)
            result.attempts = attempts
            result.timings["execute"] = round(time.perf_counter() - t0, 3)
            log(f"executed in {result.timings['execute']:.2f}s (kernel ready after "
                f"{result.timings.get('kernel_start', 0):.2f}s, attempts {attempts})")
            return nb
        finally:
            pm_log.removeHandler(handler)
            if tmp.exists():
                tmp.unlink()

    @staticmethod
    def _run_notebook(spec: RunSpec, kernel: _Kernel, tmp: Path, kernel_peak: dict):
        """papermill's ``execute_notebook`` recipe (load, parameterise, execute, raise for
        errors, write) on a kernel we started ourselves, so it can be started ahead."""
        import logging

        from papermill.clientwrap import PapermillNotebookClient
        from papermill.engines import NotebookExecutionManager
        from papermill.execute import prepare_notebook_metadata, raise_for_execution_errors, remove_error_markers
        from papermill.iorw import load_notebook_node, write_ipynb
        from papermill.parameterize import parameterize_notebook

        nb = load_notebook_node(spec.notebook)
        nb = parameterize_notebook(nb, spec.params, kernel_name="python3", language="python")
        nb = prepare_notebook_metadata(nb, spec.notebook, str(tmp))
        nb = remove_error_markers(nb)
        nb_man = NotebookExecutionManager(nb, output_path=str(tmp), progress_bar=False, log_output=False)

        def on_cell_complete(**_kw):
            pid = kernel.pid()
            mb = _rss_mb(f"/proc/{pid}/status") if pid else None
            if mb is not None:
                kernel_peak["mb"] = max(mb, kernel_peak.get("mb", 0))

        nb_man.notebook_start()
        try:
            client = PapermillNotebookClient(
                nb_man, km=kernel.km, kernel_name="python3", timeout=spec.timeout, startup_timeout=60,
                log=logging.getLogger("papermill"), log_output=False,
                resources={"metadata": {"path": kernel.workdir}}, on_cell_complete=on_cell_complete)
            client.kc = kernel.kc
            client.execute()
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        raise_for_execution_errors(nb_man.nb, str(tmp))
        write_ipynb(nb_man.nb, str(tmp))
        return nb_man.nb

    def _keep_partial(self, tmp: Path, spec: RunSpec) -> str | None:
        if tmp.exists():
            os.replace(tmp, spec.partial_path)
            return spec.partial_path
        return None

    def _cell_failure(self, spec: RunSpec, err, tmp: Path, final: Path, log) -> RunFailure:
        partial = self._keep_partial(tmp, spec)
        cell_index = self._source_cell_index(spec, err.cell_index, partial)
        source = _first_line(err.source, 120)
        from .suppression import scrub_message
        message = f"{err.ename}: {scrub_message(_first_line(err.evalue))}"
        log(f"cell {cell_index} (`{source}`) raised {message}")
        # the traceback's frames (code, not data) help the analyst; values stay out
        import re
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

    def _render(self, spec: RunSpec, nb, result: RunResult, log) -> None:
        from . import render
        t0 = time.perf_counter()
        try:
            with _RENDER_LOCK:   # one exporter per process; Dask may run tasks in threads
                page = render.render_html(nb, title=spec.title, subtitle=spec.subtitle,
                                          provenance=spec.provenance)
            html_path = Path(spec.files["html"])
            write_atomic(html_path, page)
        except Exception as exc:  # noqa: BLE001
            raise RunFailure("html", f"{type(exc).__name__}: {_first_line(exc)}") from None
        result.outputs["html"] = file_record(html_path)
        result.timings["html"] = round(time.perf_counter() - t0, 3)
        log(f"html written in {result.timings['html']:.2f}s ({result.outputs['html']['bytes']} bytes)")
        if "pdf" in spec.formats:
            t0 = time.perf_counter()
            try:
                pages = self.printer().print_pdf(html_path, Path(spec.files["pdf"]),
                                                 footer_left=f"{spec.label} · {spec.quarter}")
            except Exception as exc:  # noqa: BLE001 - HTML stays; the run is marked failed
                raise RunFailure("pdf", _first_line(exc, 400)) from None
            result.outputs["pdf"] = file_record(Path(spec.files["pdf"]))
            result.outputs["pdf"]["pages"] = pages
            result.timings["pdf"] = round(time.perf_counter() - t0, 3)
            log(f"pdf written in {result.timings['pdf']:.2f}s ({pages} pages)")

    def _extras(self, spec: RunSpec, result: RunResult, log) -> None:
        from .reports import REPORTS
        t0 = time.perf_counter()
        report = REPORTS.get(spec.report)
        if report is not None and report.extras is not None and Path(spec.notebook).resolve() == Path(report.notebook).resolve():
            staging = Path(spec.outdir) / f".extras-tmp-{os.getpid()}-{threading.get_ident() % 10000}"
            import shutil
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            try:
                written = report.extras(Path(spec.cube_path), spec.key, staging)
                for path in written:
                    final = Path(spec.outdir) / Path(path).name
                    os.replace(path, final)
                    result.extras.append(file_record(final))
            except Exception as exc:  # noqa: BLE001
                raise RunFailure("extras", f"{type(exc).__name__}: {_first_line(exc)}") from None
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            log(f"{len(result.extras)} extra file(s) written")
        try:
            from .portal import key_figures
            result.figures = key_figures(spec.report, Path(spec.cube_path), spec.key)
        except Exception as exc:  # noqa: BLE001 - figures are a nicety for the portal
            log(f"key figures unavailable: {type(exc).__name__}")
        result.timings["extras"] = round(time.perf_counter() - t0, 3)


def worker_init(preload=(), factory_sock: str | None = None, factory_pid: int | None = None) -> None:
    """Set up this process's worker state: kernel factory (own, or the pool's shared one)
    and the library imports in the background (pool initializer / Dask warm-up)."""
    global _STATE
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


def execute_run(spec: RunSpec, preload=()) -> RunResult:
    """Run one named run in this worker process (local pool or Dask task)."""
    worker_init(preload)
    return _STATE.run(spec)


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
        # one factory for all local workers: imports paid once, pages shared by every kernel
        warm = os.environ.get("SPIEGEL_WARM_KERNELS", "1") != "0"
        self.factory = KernelFactory(self.preload) if warm else None

    def _ensure_pool(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            sock = self.factory.sock if self.factory is not None else None
            pid = self.factory.pid if self.factory is not None else None
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=worker_init, initargs=(self.preload, sock, pid))
        return self._pool

    def call(self, fn_path: str, *args, **kwargs):
        return self._ensure_pool().submit(call_task, fn_path, *args, **kwargs).result()

    def run_all(self, specs: list[RunSpec]):
        """Yield a RunResult per spec as they complete (in completion order)."""
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool
        pending = list(specs)
        crashes: dict[str, int] = {}
        while pending:
            pool = self._ensure_pool()
            futures = {pool.submit(execute_run, s, self.preload): s for s in pending}
            pending = []
            broken = False
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    spec = futures.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken = True
                        crashes[spec.name] = crashes.get(spec.name, 0) + 1
                        if crashes[spec.name] >= 2:
                            yield RunResult(name=spec.name, error={
                                "stage": "worker", "message": "the worker process died twice running it "
                                "(out of memory or a crash in a C library?)"})
                        else:
                            pending.append(spec)
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
            fut = self.client.submit(execute_run, s, self.preload, pure=False,
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
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_executor(kind: str, workers: int | None = None, scheduler: str | None = None, preload=()):
    if kind == "dask":
        return DaskExecutor(scheduler, preload)
    return LocalExecutor(workers, preload)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_zygote":
        _zygote_main(sys.argv[2], json.loads(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_launch":
        sys.exit(_launcher_main(sys.argv[2:]))
    else:
        sys.exit("usage: python -m helpers.runner _zygote|_launch ... (internal)")
