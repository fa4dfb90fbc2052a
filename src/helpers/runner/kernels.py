"""Kernels: the kernel factory ("zygote") that imports the libraries once and forks one
fresh ipykernel per run, the tiny launcher that stands in for a forked kernel towards
jupyter_client, the kernel managers (forked, or the plain start-up as fallback) and the
started kernel a run takes (``Kernel``).

The chain for one kernel::

    worker ── jupyter_client ── python -m helpers.runner _launch ──(unix socket)── factory
                                 (relays signals; ~20 ms)              │ fork
                                                                       └─ ipykernel of one run

Everything at module level is standard library: the launcher imports this module and must
start in milliseconds (``python -X importtime -m helpers.runner _launch``).

>>> factory = KernelFactory(["pandas"])                               # doctest: +SKIP
>>> factory.wait_ready()                                              # doctest: +SKIP
>>> km_class = factory.kernel_manager_class(pidfile, log, ipc_base)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from ..atomic import remove_quietly
from .processes import die_with_parent, pid_alive, private_dir

__all__ = ["DEFAULT_PRELOAD", "KernelFactory", "Kernel", "plain_kernel_manager_class", "wait_ready",
           "zygote_main", "launcher_main", "handout_timeout"]

#: modules every kernel factory imports up front (missing ones are skipped)
DEFAULT_PRELOAD = (
    "numpy", "pandas", "pyarrow", "pyarrow.parquet", "matplotlib", "matplotlib.pyplot",
    "matplotlib.backends.backend_agg", "seaborn", "scipy.stats", "duckdb", "yaml",
    "IPython", "IPython.display", "ipykernel.kernelapp", "ipykernel.ipkernel",
    "ipykernel.zmqshell", "helpers", "helpers.cube", "helpers.tables", "helpers.plots",
)


def handout_timeout() -> float:
    """``helpers.runner.FACTORY_HANDOUT_TIMEOUT`` as it is now: read from the package at call
    time, so a caller (or a test) that sets it on ``helpers.runner`` is obeyed here."""
    return sys.modules[__package__].FACTORY_HANDOUT_TIMEOUT


# ---------------------------------------------------------------------------------------
# In the factory process, and in the launcher process
# ---------------------------------------------------------------------------------------


def zygote_main(sock_path: str, preload: list[str], parent_pid: int) -> None:
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


def launcher_main(argv: list[str]) -> int:
    """Ask the factory for a kernel, relay signals to it, exit when it exits. Without a
    pid file afterwards, the worker knows the factory did not hand out a kernel."""
    sock_path, connection_file = argv[0], argv[1]
    pidfile, parent, wait, extra = None, None, handout_timeout(), []
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


# ---------------------------------------------------------------------------------------
# In the worker: the factory's handle, the kernel managers, a started kernel
# ---------------------------------------------------------------------------------------


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
        """Block until the factory has imported its modules and listens (RuntimeError if it
        does not within ``timeout`` seconds or dies)."""
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
        """The factory process is there (a stopped one counts as alive: see ``kill``)."""
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
        """A jupyter_client KernelManager class whose kernel is forked from this factory: its
        launcher writes the kernel's pid to ``pidfile`` (no pid file: nothing was handed out),
        the kernel's output goes to ``log_file``, its IPC sockets start with ``ipc_base``."""
        from jupyter_client.kernelspec import KernelSpec

        argv = [sys.executable, "-m", "helpers.runner", "_launch", self.sock, "{connection_file}",
                "--pidfile", pidfile, "--parent", str(os.getpid()), "--wait", str(handout_timeout())]

        class ForkedKernelManager(plain_kernel_manager_class(log_file, ipc_base)):
            """Same transport and logging as the plain manager; the kernel comes from the factory."""

            @property
            def kernel_spec(self):
                if self._kernel_spec is None:
                    self._kernel_spec = KernelSpec(argv=argv, display_name="Python 3 (spiegel)",
                                                   language="python", interrupt_mode="signal")
                return self._kernel_spec

        return ForkedKernelManager

    def close(self) -> None:
        """End a factory this object started (it exits when its stdin closes) and remove its
        folder; an attached factory is left to its owner."""
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


def plain_kernel_manager_class(log_file, ipc_base: str):
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


class Kernel:
    """A started kernel waiting for its run: manager, client (subscribed early, so the
    handshake is one round trip), its own empty working directory and its log file."""

    def __init__(self, km, kc, workdir: str, pidfile: str, log_path: str):
        self.km, self.kc, self.workdir, self.pidfile, self.log_path = km, kc, workdir, pidfile, log_path

    def pid(self) -> int | None:
        """The forked kernel's pid (from the launcher's pid file), None before it is known."""
        try:
            return int(Path(self.pidfile).read_text().strip())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        """The kernel's launcher still runs (a spare kernel may have died while it waited)."""
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
            remove_quietly(f)
        return proc

    def log_text(self) -> str:
        """What the kernel wrote to stdout/stderr (for the run's log)."""
        try:
            return Path(self.log_path).read_text(errors="replace").strip()
        except OSError:
            return ""


async def wait_ready(kernel: Kernel, timeout: float) -> None:
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
