"""Executors: where a batch's runs execute. Each is a small class with the same five calls
(``call`` a task in a worker, ``call_many`` several at once, ``run_all`` the specs yielding
results as they complete, ``memory``, ``close``), registered in ``EXECUTORS`` by the name a batch file or
``--executor`` uses; ``make_executor`` looks the name up.

``LocalExecutor``: a ``ProcessPoolExecutor`` (spawn) with ``workers`` processes (default:
the machine's cores) sharing one kernel factory; a worker that dies is replaced and its run
is tried once more. ``DaskExecutor``: the same ``execute_run`` on an existing ``distributed``
cluster whose workers share the project and data paths; each Dask worker process keeps its
own factory and browser. Ingest and prepare also run on a worker (``call``; the quarters of
a batch are prepared at the same time with ``call_many``), so the
coordinating process never holds patient tables.

>>> with make_executor("local", workers=2) as ex:                     # doctest: +SKIP
...     for result in ex.run_all(specs): print(result.name, result.status)
>>> make_executor("slurm")
Traceback (most recent call last):
...
helpers.errors.ParameterError: unknown executor 'slurm': choose one of local, dask
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..atomic import clean_stale
from .kernels import KernelFactory
from .processes import rss_mb, sweep_private_dirs
from .spec import RunResult, RunSpec, first_line
from .worker import call_task, execute_run, worker_init, worker_memory

__all__ = ["LocalExecutor", "DaskExecutor", "EXECUTORS", "make_executor"]


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
        """Run ``module:function`` in a worker and return its result (ingest, prepare)."""
        result = self.call_many(fn_path, [args], kwargs)[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def call_many(self, fn_path: str, arglists: list[tuple], kwargs: dict | None = None) -> list:
        """Run ``module:function`` once per argument tuple, at the same time in the workers
        (the quarters' prepares); the results in order, an exception in place of one that
        raised. A worker that died (out of memory) breaks the pool: the next call gets a new one."""
        from concurrent.futures.process import BrokenProcessPool
        pool = self._ensure_pool()
        results = _results([pool.submit(call_task, fn_path, *args, **(kwargs or {})) for args in arglists])
        if any(isinstance(r, BrokenProcessPool) for r in results) and self._pool is pool:
            pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return results

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
                finished, crashed = [], []
                for fut in done:
                    spec = futures.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        crashes[spec.uid] = crashes.get(spec.uid, 0) + 1
                        crashed.append(spec)
                        if crashes[spec.uid] >= 2:
                            finished.append(RunResult(name=spec.name, uid=spec.uid, attempts=crashes[spec.uid], error={
                                "stage": "worker", "message": "the worker process died twice running it "
                                "(out of memory or a crash in a C library?)"}))
                        else:
                            pending.appendleft(spec)
                        continue
                    result.attempts += crashes.get(spec.uid, 0)
                    finished.append(result)
                hand_out()   # before yielding: the workers go on while the batch records
                # the finished runs first: a dead worker's temporaries in the same folder may be
                # files it handed over with a result the build has yet to commit
                yield from finished
                for spec in crashed:
                    _clean_after_crash(spec)
            if broken:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def memory(self) -> list[dict]:
        """Peak memory of every worker and the shared factory's resident memory (MB)."""
        if self._pool is None:
            return []
        futs = [self._pool.submit(worker_memory) for _ in range(self.workers)]
        out = list({m["pid"]: m for m in (f.result() for f in futs)}.values())
        if self.factory is not None and self.factory.proc is not None:
            out.append({"factory_rss": rss_mb(f"/proc/{self.factory.proc.pid}/status", "VmRSS"), "shared": True})
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
        """Run ``module:function`` on a Dask worker and return its result (ingest, prepare)."""
        return self.client.submit(call_task, fn_path, *args, pure=False, **kwargs).result()

    def call_many(self, fn_path: str, arglists: list[tuple]) -> list:
        """Run ``module:function`` once per argument tuple on the Dask workers at the same
        time; the results in order, an exception in place of one that raised."""
        return _results([self.client.submit(call_task, fn_path, *args, pure=False) for args in arglists])

    def run_all(self, specs: list[RunSpec]):
        """Yield a RunResult per spec as they complete; a lost worker's run is retried once by
        Dask, then reported as failed in stage ``worker``."""
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
                yield RunResult(name=spec.name, uid=spec.uid, error={"stage": "worker",
                                                       "message": f"{type(exc).__name__}: {first_line(exc)}"})

    def memory(self) -> list[dict]:
        """Memory figures of every Dask worker (empty when the cluster does not answer)."""
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


def _results(futures) -> list:
    """Each future's result, or the exception it raised, in order."""
    out = []
    for fut in futures:
        try:
            out.append(fut.result())
        except Exception as exc:  # noqa: BLE001 - the caller decides per item
            out.append(exc)
    return out


def _clean_after_crash(spec: RunSpec) -> None:
    """A worker died running ``spec``: remove what it was writing and its private folder."""
    for folder in (Path(spec.outdir), Path(spec.log_path).parent):
        clean_stale(folder, recursive=False)
    sweep_private_dirs()


#: executor name (batch file ``executor:``, ``--executor``) -> class
EXECUTORS = {"local": LocalExecutor, "dask": DaskExecutor}


def make_executor(kind: str, workers: int | None = None, scheduler: str | None = None, preload=()):
    """The executor registered as ``kind``: ``local`` gets ``workers``, ``dask`` the
    ``scheduler`` address; both start kernel factories that import ``preload``. An unknown
    ``kind`` is a ``ParameterError`` naming the choices."""
    cls = EXECUTORS.get(kind)
    if cls is None:
        from ..errors import ParameterError
        raise ParameterError(f"unknown executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
    if cls is DaskExecutor:
        return cls(scheduler, preload)
    return cls(workers, preload)
