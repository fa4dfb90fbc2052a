"""``spiegel build``: a batch file -> every report for every practice and quarter.

A batch file (``parameters/<batch>.yaml``) names the dataset, the warehouse, the quarters
(a list, or ``latest``), the practices (``all`` or a list), the reports, the formats and the
executor. Everything is parsed explicitly (the YAML is read with every scalar as text:
``01000001`` stays an AGB code, not an octal number; ``2025Q2`` a quarter) and checked
before anything runs; each problem is one line. Command-line flags override the file.

The build, in order:

1. ingest the dataset when its files changed since the last build (in a worker: the
   coordinator never loads patient tables); a refused practice becomes a failed run;
2. expand practices x quarters x reports into named runs with fixed output paths,
   ``outputs/<quarter>/<practice>/<report>.html|.pdf|.ipynb`` and
   ``outputs/<quarter>/regio/<region>/<report>.*``, each with its parameters validated;
3. skip a run whose cache key (notebook bytes, parameters, the data of its practice or
   region, the rules (``parameters_hash``), the helpers' code (``code_hash``) and the
   environment) matches the manifest and whose files are all there (``--force``: rerun);
4. prepare the quarter cube once (in a worker), then run the rest on the executor;
5. record every run in ``outputs/<quarter>/manifest.json`` as it finishes (atomically:
   an interrupted batch resumes where it stopped), rebuild the portal, print the summary.

Decisions worth knowing:

- A quarter must be complete at a practice's extraction date (``latest`` picks the latest
  quarter complete at the newest extraction date). A quarter no selected practice covers
  refuses the build in one line (``--quarter 2030Q1``); a quarter only some practices cover
  runs for those, and the others' runs fail with their extraction date and latest quarter:
  a partly extracted quarter would report controls as missing that were not extracted yet.
- A practice whose new delivery is refused (or cannot be read) while its previous delivery is
  intact in the warehouse keeps its report: it is (re)built from that previous delivery when
  needed, its manifest entry holds ``stale_data`` (reason, first problem with file, line and
  column, when the previous data were loaded, a Dutch note), the summary names the first
  problem, and the exit status is 1. A first delivery that is refused is a failed run.
- SIGTERM stops a build like Ctrl-C. After an interrupt no run starts and none is kept any
  more; a file a run replaced without being recorded is removed, so every file the manifest
  describes has the hash it states. The same command without ``--force`` resumes.

Exit status (``errors.EXIT_CODES``, shown in ``spiegel build --help``): 0 all done or skipped,
1 a run failed or a practice was refused, 2 a user error (batch file, flags, dataset, outputs),
3 the warehouse is busy, 130 interrupted (Ctrl-C or SIGTERM).

>>> parser = argparse.ArgumentParser(); add_build_arguments(parser)      # doctest: +SKIP
>>> run_build(parser.parse_args(["parameters/demo.yaml", "--practice", "01000001"]))  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from .. import __version__
from ..atomic import clean_stale, write_atomic
from ..config import PARAMETERS_DIR
from ..errors import EXIT_CODES_HELP, ParameterError, SpiegelError, exit_code
from ..reports import REPORTS, get_report
from .batchfile import EXECUTORS, Batch, load_batch
from .cache import environment_fingerprint
from .console import Progress, _memory_line, _render_only_note, error_lines, interrupt_message, print_summary
from .manifest import Manifest, _now_iso, discard_unrecorded
from .plan import (_first_line, notebook_imports, plan_runs, previous_loads, resolve_selection, stale_data, stale_line,
                   stale_of)
from .steps import _fresh_cube, _ingest_if_changed


def add_build_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``spiegel build`` arguments (the batch file's values, overridable) and the exit statuses
    in the epilog; returns ``parser``.

    >>> args = add_build_arguments(argparse.ArgumentParser()).parse_args(["b.yaml", "--practice", "01000001"])
    >>> args.batch_file, args.practice, args.force
    ('b.yaml', ['01000001'], False)
    """
    parser.add_argument("batch_file", nargs="?", default=str(PARAMETERS_DIR / "demo.yaml"),
                        help="the batch file, e.g. parameters/demo.yaml (the default)")
    parser.add_argument("--practice", action="append", metavar="AGB",
                        help="only this practice (repeatable; overrides `practices`)")
    parser.add_argument("--quarter", action="append", metavar="YYYYQn",
                        help="only this quarter (repeatable), or `latest` or `latest N` (the N latest complete quarters); overrides `quarters`")
    parser.add_argument("--report", action="append", metavar="ID",
                        help=f"only this report (repeatable; {', '.join(REPORTS)})")
    parser.add_argument("--format", action="append", metavar="FMT",
                        help="html, pdf and/or slides (repeatable or comma-separated; overrides `formats`)")
    parser.add_argument("--workers", metavar="N", help="worker processes (default: the machine's cores)")
    parser.add_argument("--executor", choices=EXECUTORS, help="local process pool (default) or dask")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--force", action="store_true", help="rerun every run, even when up to date")
    parser.add_argument("--timeout", metavar="SECONDS", help="time limit per run (default 900)")
    parser.add_argument("--outputs", metavar="DIR", help="outputs folder (default outputs/)")
    parser.add_argument("--warehouse", metavar="FILE", help="the DuckDB warehouse (overrides `warehouse`)")
    parser.epilog = (f"{EXIT_CODES_HELP} (Ctrl-C or SIGTERM; the same command without --force resumes). "
                     "A practice whose new delivery is refused keeps a report built from its previous "
                     "delivery, still in the warehouse.")
    return parser


class _BuildLock:
    """One build at a time per outputs folder (two would race on the same files)."""

    def __init__(self, outputs: Path):
        self.path = Path(outputs) / ".build.lock"
        self.fh = None

    def __enter__(self):
        import fcntl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            raise SpiegelError(f"another `spiegel build` is writing to {self.path.parent} "
                               f"(pid {self.fh.read().strip() or '?'}); wait for it to finish") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc):
        import fcntl
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def check_outputs_writable(outputs: Path) -> None:
    """Create the outputs folder and write a probe file in it: a read-only folder (or disk) is
    one line now, not a traceback halfway through the build (a ParameterError).

    >>> check_outputs_writable(Path("/proc/spiegel-outputs"))
    Traceback (most recent call last):
    ...
    helpers.errors.ParameterError: outputs folder /proc/spiegel-outputs is not writable (No such file or directory): choose another folder with --outputs or make this one writable
    """
    import tempfile
    try:
        outputs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=outputs, prefix=".write-probe-"):
            pass
    except OSError as e:
        raise ParameterError(f"outputs folder {outputs} is not writable ({e.strerror}): choose another "
                             "folder with --outputs or make this one writable") from None


def check_scheduler(address: str, timeout: float = 3.0) -> None:
    """Refuse an unreachable Dask scheduler in seconds (the Dask client waits 30 s per try):
    a ParameterError naming the address. Other transports than tcp and tls are left to the client.

    >>> check_scheduler("tcp://")
    Traceback (most recent call last):
    ...
    helpers.errors.ParameterError: scheduler 'tcp://' names no host: write it as tcp://host:8786
    """
    import socket
    from urllib.parse import urlsplit
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        return   # inproc:// and other transports: the client itself will tell
    try:
        host, port = parts.hostname, parts.port or 8786
    except ValueError:
        raise ParameterError(f"scheduler {address!r} is not an address: write it as tcp://host:8786") from None
    if not host:
        raise ParameterError(f"scheduler {address!r} names no host: write it as tcp://host:8786")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__.replace("Error", " error").lower()
        raise ParameterError(f"Dask scheduler {address} is not reachable ({reason}): start it "
                             f"(`dask scheduler`) or give the right address with --scheduler") from None


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (``timeout``, CI cancellation, service managers) stops the build exactly like
    Ctrl-C: a KeyboardInterrupt in the main thread. Ctrl-C itself always interrupts, also when
    the build was started with SIGINT ignored (a non-interactive shell starts background jobs
    so, and a child inherits it; Python then installs no KeyboardInterrupt of its own). The
    previous handlers come back on exit.

    >>> with sigterm_as_interrupt():
    ...     signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, signal.getsignal(signal.SIGINT) is signal.default_int_handler
    (True, True)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


@contextlib.contextmanager
def _signals_held():
    """No second Ctrl-C or SIGTERM while an interrupted build records what it has."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _signals_deferred():
    """A Ctrl-C or SIGTERM that arrives inside the block takes effect when it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(caught[0])


def run_build(args: argparse.Namespace) -> int:
    """Run ``spiegel build`` for parsed arguments (:func:`add_build_arguments`); returns the exit
    status: 0 done, 1 a run failed or a practice was refused, and for a user error, a busy
    warehouse or an interrupt that of ``errors.EXIT_CODES`` (2, 3, 130), printed as
    ``spiegel build: <line>`` without a traceback."""
    with sigterm_as_interrupt():
        try:
            b = load_batch(args.batch_file, args)
            check_outputs_writable(b.outputs)
            if b.executor == "dask":
                check_scheduler(b.scheduler)
            with _BuildLock(b.outputs):
                return _build(b)
        except SpiegelError as e:
            for line in error_lines(e):
                print(f"spiegel build: {line}", file=sys.stderr)
            return exit_code(e)


class _Build:
    """One build's state, passed from step to step of :func:`_build`."""

    def __init__(self, b: Batch):
        self.b = b
        self.started = time.perf_counter()
        self.extra_lines: list[str] = []
        self.executor = None
        self.manifests: dict[str, Manifest] = {}
        self.in_flight: dict[str, object] = {}    # runs handed to the executor, not yet recorded
        self.meta_common = {"spiegel_version": __version__, "environment": environment_fingerprint(),
                            "batch": b.name}
        self.refused: dict[str, str] = {}
        self.ingest: dict = {}
        self.stale: dict[str, dict] = {}
        self.specs: list = []
        self.practices: list[str] = []
        self.regions: list[str] = []
        self.quarters: list[str] = []
        self.to_run: list = []
        self.skipped: list = []
        self.results: dict = {}
        self.worker_mem: list[dict] = []
        self.prepared: dict = {}

    def get_executor(self):
        """The executor, started on first use (an up-to-date build starts none)."""
        from ..runner import make_executor
        b = self.b
        if self.executor is None:
            preload = notebook_imports([get_report(r).notebook for r in b.reports])
            try:
                self.executor = make_executor(b.executor, b.workers, b.scheduler, preload)
            except Exception as exc:  # noqa: BLE001 - whatever the Dask client raises, the address is wrong
                if b.executor != "dask":
                    raise
                raise ParameterError(f"Dask scheduler {b.scheduler} does not answer as a Dask scheduler "
                                     f"({type(exc).__name__}): give its address with --scheduler "
                                     "(tcp://host:8786)") from None
        return self.executor


def _build(b: Batch) -> int:
    """The build, as a recipe: ingest, plan, skip what is up to date, prepare, run, finish."""
    st = _Build(b)
    print(f"spiegel build {b.name}: outputs {b.outputs}, warehouse {b.warehouse}", flush=True)
    try:
        _ingest_step(st)
        _plan_step(st)
        _skip_step(st)
        if st.to_run:
            _fail_unstartable(st)
            _prepare_step(st)
            _run_step(st)
        return _finish_step(st)
    except KeyboardInterrupt:
        return _interrupted(st)
    finally:
        _close(st)


def _ingest_step(st: _Build) -> None:
    """1. Ingest the dataset when its files changed; the refused practices."""
    b = st.b
    if b.dataset is not None and b.ingest:
        ingest = st.ingest = _ingest_if_changed(b, st.get_executor, print)
        st.refused = {**ingest.get("refused", {}), **ingest.get("failed", {})}
        if not ingest.get("skipped"):
            st.extra_lines.append(f"ingest: {len(ingest['loaded'])} loaded, {len(ingest['unchanged'])} unchanged, "
                                  f"{len(ingest['refused'])} refused, {len(ingest['failed'])} failed "
                                  f"in {ingest['seconds']:.1f}s")
            for p in ingest.get("dataset_problems", []):
                st.extra_lines.append(f"  dataset problem: {p}")
    if not b.warehouse.exists():
        raise ParameterError(f"warehouse {b.warehouse} does not exist: run `spiegel ingest <dataset>` first "
                             f"(or name the dataset in {b.source})")


def _plan_step(st: _Build) -> None:
    """2. The named runs of the selected practices, regions and quarters."""
    from ..warehouse import Warehouse
    b = st.b
    wh = Warehouse(b.warehouse)
    practices_df = wh.practices()
    hashes = wh.practice_hashes()
    st.stale = stale_data(st.refused, previous_loads(b.warehouse) if hashes else {}, set(st.ingest.get("failed", {})))
    st.practices, st.regions, st.quarters = resolve_selection(b, practices_df, st.refused)
    st.specs = plan_runs(b, practices_df, hashes, st.refused, st.practices, st.regions, st.quarters)
    st.extra_lines += [stale_line(agb, st.stale[agb]) for agb in st.practices if agb in st.stale]


def _skip_step(st: _Build) -> None:
    """3. Skip what is up to date (``--force``: nothing); a run whose notebook is kept only renders."""
    b = st.b
    st.manifests = {q: Manifest(b.outputs, q) for q in st.quarters}
    for q in st.quarters:   # what an interrupted build left (the outputs lock says it is gone)
        st.manifests[q].complete_commits()   # renames it noted first: their temporaries are recorded files
        clean_stale(b.outputs / q, everyone=True)
    for s in st.specs:
        if b.force or s.pre_failed is not None:
            st.to_run.append(s)
        elif st.manifests[s.quarter].up_to_date(s):
            st.skipped.append(s)
            st.manifests[s.quarter].mark_skipped(s, b.name, stale_of(s, st.stale))
        else:
            st.to_run.append(replace(s, render_only=st.manifests[s.quarter].renderable(s)))
    print(f"spiegel build {b.name}: {len(st.specs)} runs ({len(st.practices)} practices, {len(st.regions)} regions, "
          f"quarters {', '.join(st.quarters)}, reports {', '.join(b.reports)}, formats {', '.join(b.formats)}): "
          f"{len(st.to_run)} to run{_render_only_note(st.to_run)}, {len(st.skipped)} up to date", flush=True)


def _fail_unstartable(st: _Build) -> None:
    """Runs that cannot start (refused first delivery, quarter past the extraction) fail without a kernel."""
    for s in [s for s in st.to_run if s.pre_failed]:
        st.results[s.uid] = _fail_without_kernel(s)


def _prepare_step(st: _Build) -> None:
    """4. Prepare each quarter's cube once, in the workers, the quarters at the same time (a
    prepare is partly single-threaded SQL: two quarters on two cores take little more than
    one); a quarter that fails fails its runs."""
    from ..runner import RunResult
    b = st.b
    runnable = [s for s in st.to_run if not s.pre_failed]
    todo = []
    for q in sorted({s.quarter for s in runnable}):
        fresh = None if b.force else _fresh_cube(b.warehouse, q)
        if fresh is not None:   # up to date: no need to wait for a worker to say so
            st.prepared[q] = fresh
            st.extra_lines.append(f"prepare {q}: cube up to date (key {str(fresh['key'])[:12]})")
        else:
            todo.append(q)
    if not todo:
        return
    results = st.get_executor().call_many("helpers.batch.steps:prepare_task",
                                          [(str(b.warehouse), q, b.force) for q in todo])
    for q, prep in zip(todo, results):
        if isinstance(prep, SpiegelError):
            raise prep   # a busy or unusable warehouse stops the build with its own exit status
        if isinstance(prep, BaseException):   # every run of the quarter fails with it
            msg = f"{type(prep).__name__}: {_first_line(prep)}"
            for s in [s for s in runnable if s.quarter == q]:
                st.results[s.uid] = RunResult(name=s.name, uid=s.uid, error={"stage": "prepare", "message": msg})
            continue
        st.prepared[q] = prep   # its seconds: the worker's own, from start to cube written
        st.extra_lines.append(f"prepare {q}: {prep['seconds']:.2f}s (cube {Path(prep['path']).name}, "
                              f"key {str(prep['key'])[:12]})")


def _run_step(st: _Build) -> None:
    """5. Record what already failed, run the rest on the executor, record each as it finishes."""
    # runs are keyed by uid (quarter/name): a batch of several quarters repeats every name
    runnable = [replace(s, commit_by_build=True) for s in st.to_run if not s.pre_failed and s.uid not in st.results]
    progress = Progress(len(st.to_run))
    by_uid = {s.uid: s for s in st.to_run}
    for s in st.to_run:
        if s.uid in st.results:
            _record(st, s, st.results[s.uid])
            progress.update(s, st.results[s.uid])
    try:
        st.in_flight.update((s.uid, s) for s in runnable)
        if runnable:
            for result in st.get_executor().run_all(runnable):
                s = by_uid[result.uid]
                st.results[s.uid] = result
                _record(st, s, result)
                st.in_flight.pop(s.uid, None)
                progress.update(s, result)
    finally:
        progress.close()
    st.worker_mem = st.get_executor().memory() if runnable else []


def _finish_step(st: _Build) -> int:
    """6. Save the manifests, rebuild the portal, print the summary; the exit status."""
    from ..render.portal import build_portal
    b = st.b
    for m in st.manifests.values():
        m.save(st.meta_common)
    portal = build_portal(b.outputs)
    st.extra_lines.append(_memory_line(st.results, st.worker_mem))
    print_summary(st.specs, st.results, st.skipped, time.perf_counter() - st.started, st.extra_lines, b.outputs,
                  portal)
    refused_here = any(s.key in st.refused for s in st.specs if s.scope == "practice")
    failed = any(r.status != "done" for r in st.results.values())
    return 1 if failed or refused_here else 0


def _interrupted(st: _Build) -> int:
    """Ctrl-C or SIGTERM: no run starts and none that finishes is kept; what a run replaced
    without being recorded goes; the manifests and the portal say what is there."""
    b = st.b
    with _signals_held():
        if st.executor is not None:
            # the grace lets the workers end their kernels themselves before they are terminated
            st.executor.close(grace=2)
        discarded = discard_unrecorded(st.manifests, st.in_flight.values())
        for m in st.manifests.values():
            m.save(st.meta_common)
        if st.manifests:   # no link to a discarded file
            from ..render.portal import build_portal
            build_portal(b.outputs)
    print(f"\n{interrupt_message(b, discarded)}", file=sys.stderr)
    return exit_code(KeyboardInterrupt())


def _close(st: _Build) -> None:
    """Always: the executor closes; what a killed worker was writing goes."""
    if st.executor is not None:
        st.executor.close()
    for q in st.manifests:   # the workers are gone: what a killed one was writing goes too
        clean_stale(st.b.outputs / q, everyone=True)


def _record(st: _Build, spec, result) -> None:
    """Record a finished run. The files its worker handed over are renamed into place between
    two saves of the manifest: first the entry with a note of the renames, then without it, so
    a build killed at any moment leaves no file the manifest does not know of (the next build
    completes noted renames: ``Manifest.complete_commits``). A Ctrl-C or SIGTERM meanwhile
    waits until the entry and the files agree."""
    with _signals_deferred():
        _record_now(st, spec, result)


def _record_now(st: _Build, spec, result) -> None:
    import copy

    from ..runner.spec import write_failure
    from ..runner.staging import commit_staged, record_staged
    m = st.manifests[spec.quarter]
    prep = st.prepared.get(spec.quarter)
    if prep:
        result.timings.setdefault("prepare_shared", prep["seconds"])
    meta = dict(st.meta_common)
    if prep:
        meta["cube"] = {"key": prep["key"], "computed_at": prep.get("computed_at"),
                        "prepare_s": prep["seconds"], "timings_s": prep.get("timings_s")}
    staged, result.staged = result.staged, []
    previous = copy.deepcopy(m.runs.get(spec.name))
    record_staged(result, staged)
    m.record(spec, result, st.b.name, stale_of(spec, st.stale))
    if staged:
        m.note_commit(spec.name, staged)
        m.save(meta)
        try:
            commit_staged(staged)
        except OSError as exc:   # a rename refused (the folder made read-only meanwhile)
            kept = getattr(exc, "renamed", [])
            result.status, result.outputs, result.extras = "failed", {}, []
            record_staged(result, kept)
            result.outputs_done = {k: k in result.outputs for k in result.outputs_done}
            result.error = write_failure(exc, spec.outdir).info
            if previous is None:
                m.runs.pop(spec.name, None)
            else:
                m.runs[spec.name] = previous   # what the last success was, not this attempt
            m.record(spec, result, st.b.name, stale_of(spec, st.stale))
        m.commit_done(spec.name)
    m.save(meta)


def _fail_without_kernel(spec):
    from ..runner import RunResult
    result = RunResult(name=spec.name, uid=spec.uid, error=dict(spec.pre_failed), finished_at=_now_iso(), attempts=0)
    write_atomic(Path(spec.log_path),
                 f"{time.strftime('%H:%M:%S')} run {spec.name}: not started\n"
                 f"{time.strftime('%H:%M:%S')} {spec.pre_failed['stage']}: {spec.pre_failed['message']}\n")
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.batch``: the build command on its own; returns the exit status."""
    parser = argparse.ArgumentParser(prog="spiegel build", description=__doc__.splitlines()[0])
    add_build_arguments(parser)
    return run_build(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
