"""The worker process: what it keeps between runs (``WorkerState``: the kernel factory, the
next run's kernel started ahead, one PDF printer per thread, papermill and nbconvert
imported), and the task functions the executors send it (``execute_run``, ``call_task``,
``worker_memory``), with the worker's set-up (``worker_init``) and its stop flag.

>>> state = WorkerState(["pandas"])                          # doctest: +SKIP
>>> state.run(spec).status                                  # doctest: +SKIP
'done'
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

from ..atomic import clean_stale
from .kernels import Kernel, KernelFactory, handout_timeout, plain_kernel_manager_class
from .processes import die_with_parent, peak_rss_mb, private_dir, rss_mb
from .recipe import run_spec
from .spec import RunResult, RunSpec, first_line

__all__ = ["WorkerState", "worker_init", "execute_run", "call_task", "worker_memory", "DaskStop"]

_STATE = None
_STATE_LOCK = threading.Lock()
#: set by the coordinator when the build stops (local pool): no run starts, none is kept
_STOP = None


class DaskStop:
    """The stop flag of a build on a Dask cluster: a ``distributed.Event`` by name."""

    def __init__(self, name: str):
        self.name = name

    def is_set(self) -> bool:
        """True once the build stopped, or when no scheduler answers (the build is gone)."""
        from distributed import Event
        try:
            return Event(self.name).is_set()
        except Exception:  # noqa: BLE001 - no scheduler to ask: the build is gone
            return True


def block_slow_optional_imports() -> None:
    """jsonschema loads ``rfc3987_syntax`` (a grammar compiled at import, ~1.6 s here) for
    IRI formats that notebook validation never uses; skipping it saves that per worker."""
    sys.modules.setdefault("rfc3987_syntax", None)


class WorkerState:
    """Per worker process: the kernel factory, the next kernel (started while the previous
    report renders), the PDF printer(s) and the imported libraries. ``run(spec)`` runs one
    spec by the recipe of ``helpers.runner.recipe``."""

    def __init__(self, preload=(), factory_sock: str | None = None, factory_pid: int | None = None):
        block_slow_optional_imports()
        self.warm = os.environ.get("SPIEGEL_WARM_KERNELS", "1") != "0"
        self.preload = tuple(preload)
        self.factory = None
        if self.warm:
            self.factory = KernelFactory(preload, sock=factory_sock, pid=factory_pid)
        self.ipc_dir = private_dir()
        self._n = 0
        self._closed = False
        self._spare: Kernel | None = None
        self._kernel: Kernel | None = None      # the kernel of the run in progress
        self._current: tuple | None = None      # (spec, staging, log) of the run in progress
        # the files of the last run handed over to the build: the build may not have committed
        # them yet when this worker is told to go (SIGTERM), so they are not this worker's to remove
        self.handed_over: frozenset[str] = frozenset()
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
        from .. import render
        render.html_exporter()

    def run(self, spec: RunSpec, stop=None) -> RunResult:
        """Run ``spec``; ``stop`` (an object with ``is_set()``, default: the pool's) tells
        that the build is stopping: the run is then discarded."""
        return run_spec(self, spec, stop if stop is not None else _STOP)

    def printer(self):
        """This thread's PDF printer (Playwright objects belong to the thread that made them)."""
        from ..render import PdfPrinter
        p = getattr(self._printers, "printer", None)
        if p is None:
            p = PdfPrinter()
            self._printers.printer = p
            self._printer_list.append(p)
        return p

    def close(self):
        """Discard the spare kernel, close the printers and the factory, remove the folder."""
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
                clean_stale(folder, {os.getpid()}, recursive=False, keep=self.handed_over)
        for k in (self._kernel, self._spare):
            if k is not None:
                k.kill_process()
        shutil.rmtree(self.ipc_dir, ignore_errors=True)

    # -- kernels, lent to the run in progress -------------------------------------------------

    def _launch(self) -> Kernel:
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
                km_class = plain_kernel_manager_class(log_fh, base)
            # the connection file too in the private folder: a killed worker leaves nothing in /tmp
            km = km_class(kernel_name="python3", connection_file=base + ".json")
            try:
                run_sync(km.start_kernel)(cwd=workdir, extra_arguments=["--HistoryManager.hist_file=:memory:"])
            except Exception:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
        kc = km.client()
        kc.start_channels()
        kc.allow_stdin = False
        return Kernel(km, kc, workdir, pidfile, log_path)

    def take_kernel(self) -> Kernel:
        """The kernel for the run in progress: the spare started ahead if it is still alive,
        else a new one."""
        self._dying = [p for p in self._dying if p is not None and p.poll() is None]
        k, self._spare = self._spare, None
        if k is not None and not k.alive():
            self._dying.append(k.discard())
            k = None
        self._kernel = k if k is not None else self._launch()
        return self._kernel

    def release_kernel(self, kernel: Kernel | None, log, start_next: bool = True) -> None:
        """The run is done with ``kernel``: its output goes to the run's log, it is killed
        without waiting, and (``start_next``) the next run's kernel boots while this report
        renders."""
        self._kernel = None
        if kernel is not None:
            chatter = kernel.log_text()
            if chatter:
                log("kernel output:\n" + chatter[-4000:])
            self._dying.append(kernel.discard())
        if start_next:
            self._start_spare(log)

    def _start_spare(self, log) -> None:
        try:
            self._spare = self._launch()
        except Exception as exc:  # noqa: BLE001 - the next run starts one itself (and retries)
            log(f"could not start the next kernel ahead: {type(exc).__name__}: {first_line(exc)}")
            self._spare = None

    def replace_factory(self, log, why: str | None = None) -> None:
        """A factory that took a request and handed out no kernel is stuck (or stopped), or
        one whose kernel did not answer is suspect: kill it; the next launch starts a new one
        (the pool's shared one included)."""
        why = why or f"did not hand out a kernel within {handout_timeout():.0f}s"
        log(f"the kernel factory (pid {self.factory.pid}) {why}: killed, a new one starts")
        self.factory.kill()
        if self._spare is not None:   # asked of the same factory
            self._dying.append(self._spare.discard())
            self._spare = None

    def renew_factory(self, log, why: str) -> None:
        """A kernel the factory handed out did not answer: the factory is suspect. This
        worker's own factory is killed and replaced; the pool's shared one is left alone (the
        other workers' kernels, forked from it, would die with it) and this worker starts a
        factory of its own."""
        if self.factory.proc is not None:
            self.replace_factory(log, why)
            return
        log(f"the shared kernel factory (pid {self.factory.pid}) {why}: this worker starts its own")
        self.factory = KernelFactory(self.preload)
        if self._spare is not None:   # asked of the shared factory
            self._dying.append(self._spare.discard())
            self._spare = None


# ---------------------------------------------------------------------------------------
# The tasks an executor sends to a worker process
# ---------------------------------------------------------------------------------------


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
    return _STATE.run(spec, DaskStop(stop) if stop else None)


def call_task(fn_path: str, *args, **kwargs):
    """Run ``module:function`` in a worker (ingest, prepare: patient tables stay out of
    the coordinator)."""
    import importlib
    module, name = fn_path.split(":")
    block_slow_optional_imports()
    return getattr(importlib.import_module(module), name)(*args, **kwargs)


def worker_memory() -> dict:
    """Peak memory of this worker and the resident memory of its own factory (MB)."""
    out = {"worker_peak": peak_rss_mb(), "pid": os.getpid(), "worker": f"{socket.gethostname()}:{os.getpid()}"}
    if _STATE is not None and _STATE.factory is not None and _STATE.factory.proc is not None:
        out["factory_rss"] = rss_mb(f"/proc/{_STATE.factory.proc.pid}/status", "VmRSS")
    return out
