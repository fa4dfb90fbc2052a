"""The runner: a batch's named runs on warm workers, each run in a fresh kernel.

The package, one role per module
--------------------------------
=================  ====================================================================
``spec``           ``RunSpec`` in, ``RunResult`` out, ``RunFailure``; write errors
``executors``      ``LocalExecutor``, ``DaskExecutor``, the ``EXECUTORS`` registry, ``make_executor``
``worker``         ``WorkerState`` (factory, spare kernel, printers) and the worker's tasks
``recipe``         the recipe of ONE run (``run_spec``): load, parameterise, execute, raise, write
``staging``        the run's log and files under temporary names until committed
``notebook``       the executed notebook's stable bytes; cells as the author counts them
``kernels``        the kernel factory ("zygote"), the launcher, the kernel managers
``processes``      process lifetimes: ``die_with_parent``, private folders, the process table
``__main__``       ``python -m helpers.runner _zygote|_launch`` (internal)
=================  ====================================================================

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

The time limit covers the whole run (``recipe``): kernel start, execution (a timer kills the kernel;
the cell that was running is named), HTML, PDF (Playwright gets the remaining time and a
watchdog kills the browser at the deadline) and the extras.

Lifetimes: every process dies with the one that started it, also when that one is killed
with SIGKILL: pool workers, kernel factories and launchers arm a parent-death signal
(``processes.die_with_parent``); a forked kernel exits when its launcher's socket closes (a death
signal on the factory would take every running kernel down with a killed factory); the
Playwright driver exits when its worker's pipe closes and kills its Chromium. Each worker
keeps its temporary folders in one ``spiegel-<pid>-*`` folder, removed by the next worker
once that pid is gone.

Files: every output is written under a temporary name (``helpers.atomic.temp_path``, the
one scheme: ``.<stem>.tmp-<pid>-<random><suffix>``) and renamed into place only when the run has finished
and the build is not stopping, so an interrupted build never replaces a file without its
manifest entry. A write error (disk full, read-only, I/O error), the run's log included,
is that run's failure, named with its path; its temporaries go.

Executors (``executors``)
-------------------------
``LocalExecutor``: a ``ProcessPoolExecutor`` (spawn) with ``workers`` processes (default:
the machine's cores) sharing one factory; a worker that dies is replaced and its run is
tried once more. ``DaskExecutor``: the same ``execute_run`` on an existing ``distributed``
cluster whose workers share the project and data paths; each Dask worker process keeps
its own factory and browser. Ingest and prepare also run on a worker (``call``), so the
coordinating process never holds patient tables.

Privacy: the run log holds stage timings, papermill's messages, kernel chatter, the
failing cell's first line, the error's first line and the traceback's code frames; never
notebook outputs.

>>> with make_executor("local", workers=2) as ex:           # doctest: +SKIP
...     for result in ex.run_all(specs): print(result.name, result.status)
"""

from __future__ import annotations

#: seconds a launcher waits for the factory to hand out a kernel (a fork takes milliseconds;
#: a factory that is alive but stuck is then replaced). Read at call time from here
#: (``kernels.handout_timeout``): set ``helpers.runner.FACTORY_HANDOUT_TIMEOUT`` to change it.
FACTORY_HANDOUT_TIMEOUT = 10.0

# The names below are imported on first use (PEP 562): the kernel launcher (``python -m
# helpers.runner _launch``) imports this package, and must start in milliseconds with only
# ``kernels`` and ``processes`` (standard library) loaded; papermill and pandas are imported
# inside the functions that need them, never at a module's top.
_EXPORTS = {
    "RunSpec": "spec", "RunResult": "spec", "RunFailure": "spec", "file_record": "spec",
    "is_write_error": "spec", "write_failure": "spec",
    "EXECUTORS": "executors", "LocalExecutor": "executors", "DaskExecutor": "executors",
    "make_executor": "executors",
    "WorkerState": "worker", "worker_init": "worker", "execute_run": "worker", "call_task": "worker",
    "worker_memory": "worker",
    "run_spec": "recipe", "Run": "recipe",
    "KernelFactory": "kernels", "Kernel": "kernels", "DEFAULT_PRELOAD": "kernels",
    "pid_alive": "processes", "die_with_parent": "processes", "private_dir": "processes",
    "sweep_private_dirs": "processes", "process_table": "processes", "peak_rss_mb": "processes",
    "_process_table": ("processes", "process_table"),   # the name the fault tests use
}

__all__ = ["FACTORY_HANDOUT_TIMEOUT", *(n for n in _EXPORTS if not n.startswith("_"))]


def __getattr__(name: str):
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = (where, name) if isinstance(where, str) else where
    import importlib
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value   # once: later lookups are plain attribute reads
    return value


def __dir__():
    return sorted({*globals(), *_EXPORTS})
