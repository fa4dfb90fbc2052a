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
from .batchfile import Batch, EXECUTORS, load_batch
from .cache import environment_fingerprint
from .console import error_lines, interrupt_message, _memory_line, print_summary, Progress, _render_only_note
from .manifest import discard_unrecorded, Manifest, _now_iso
from .plan import _first_line, notebook_imports, plan_runs, previous_loads, resolve_selection, stale_data, stale_line, stale_of
from .steps import _fresh_cube, _ingest_if_changed


def add_build_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``spiegel build`` arguments (the batch file's values, overridable)."""
    parser.add_argument("batch_file", nargs="?", default=str(PARAMETERS_DIR / "demo.yaml"),
                        help="the batch file, e.g. parameters/demo.yaml (the default)")
    parser.add_argument("--practice", action="append", metavar="AGB",
                        help="only this practice (repeatable; overrides `practices`)")
    parser.add_argument("--quarter", action="append", metavar="YYYYQn",
                        help="only this quarter (repeatable, or `latest`; overrides `quarters`)")
    parser.add_argument("--report", action="append", metavar="ID",
                        help=f"only this report (repeatable; {', '.join(REPORTS)})")
    parser.add_argument("--format", action="append", metavar="FMT",
                        help="html and/or pdf (repeatable or comma-separated; overrides `formats`)")
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
    one line now, not a traceback halfway through the build."""
    import tempfile
    try:
        outputs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=outputs, prefix=".write-probe-"):
            pass
    except OSError as e:
        raise ParameterError(f"outputs folder {outputs} is not writable ({e.strerror}): choose another "
                             "folder with --outputs or make this one writable") from None


def check_scheduler(address: str, timeout: float = 3.0) -> None:
    """Refuse an unreachable Dask scheduler in seconds (the Dask client waits 30 s per try)."""
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
    Ctrl-C: a KeyboardInterrupt in the main thread. The previous handler comes back on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def run_build(args: argparse.Namespace) -> int:
    """Run ``spiegel build``; returns the exit status (the build command's epilog lists them)."""
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


def _build(b: Batch) -> int:
    from ..runner import RunResult, make_executor
    started = time.perf_counter()
    extra_lines: list[str] = []
    executor = None
    manifests: dict[str, Manifest] = {}
    in_flight: dict[str, object] = {}    # runs handed to the executor, not yet recorded
    meta_common = {"spiegel_version": __version__, "environment": environment_fingerprint(), "batch": b.name}

    def get_executor():
        nonlocal executor
        if executor is None:
            preload = notebook_imports([get_report(r).notebook for r in b.reports])
            try:
                executor = make_executor(b.executor, b.workers, b.scheduler, preload)
            except Exception as exc:  # noqa: BLE001 - whatever the Dask client raises, the address is wrong
                if b.executor != "dask":
                    raise
                raise ParameterError(f"Dask scheduler {b.scheduler} does not answer as a Dask scheduler "
                                     f"({type(exc).__name__}): give its address with --scheduler "
                                     "(tcp://host:8786)") from None
        return executor

    print(f"spiegel build {b.name}: outputs {b.outputs}, warehouse {b.warehouse}", flush=True)
    try:
        # 1. ingest
        refused: dict[str, str] = {}
        ingest: dict = {}
        if b.dataset is not None and b.ingest:
            ingest = _ingest_if_changed(b, get_executor, print)
            refused = {**ingest.get("refused", {}), **ingest.get("failed", {})}
            if not ingest.get("skipped"):
                extra_lines.append(f"ingest: {len(ingest['loaded'])} loaded, {len(ingest['unchanged'])} unchanged, "
                                   f"{len(ingest['refused'])} refused, {len(ingest['failed'])} failed "
                                   f"in {ingest['seconds']:.1f}s")
                for p in ingest.get("dataset_problems", []):
                    extra_lines.append(f"  dataset problem: {p}")
        if not b.warehouse.exists():
            raise ParameterError(f"warehouse {b.warehouse} does not exist: run `spiegel ingest <dataset>` first "
                                 f"(or name the dataset in {b.source})")
        # 2. plan
        from ..warehouse import Warehouse
        wh = Warehouse(b.warehouse)
        practices_df = wh.practices()
        hashes = wh.practice_hashes()
        stale = stale_data(refused, previous_loads(b.warehouse) if hashes else {}, set(ingest.get("failed", {})))
        practices, regions, quarters = resolve_selection(b, practices_df, refused)
        specs = plan_runs(b, practices_df, hashes, refused, practices, regions, quarters)
        extra_lines += [stale_line(agb, stale[agb]) for agb in practices if agb in stale]
        # 3. skip what is up to date
        for q in quarters:   # what an interrupted build left (the outputs lock says it is gone)
            clean_stale(b.outputs / q, everyone=True)
        manifests = {q: Manifest(b.outputs, q) for q in quarters}
        to_run, skipped = [], []
        for s in specs:
            if b.force or s.pre_failed is not None:
                to_run.append(s)
            elif manifests[s.quarter].up_to_date(s):
                skipped.append(s)
                manifests[s.quarter].mark_skipped(s, b.name, stale_of(s, stale))
            else:
                to_run.append(replace(s, render_only=manifests[s.quarter].renderable(s)))
        print(f"spiegel build {b.name}: {len(specs)} runs ({len(practices)} practices, {len(regions)} regions, "
              f"quarters {', '.join(quarters)}, reports {', '.join(b.reports)}, formats {', '.join(b.formats)}): "
              f"{len(to_run)} to run{_render_only_note(to_run)}, {len(skipped)} up to date", flush=True)
        results: dict = {}
        worker_mem = []
        # 4. prepare + run
        if to_run:
            # runs that cannot start (refused first delivery, quarter past the extraction) fail without a kernel
            for s in [s for s in to_run if s.pre_failed]:
                results[s.name] = _fail_without_kernel(s)
            runnable = [s for s in to_run if not s.pre_failed]
            prepared = {}
            for q in sorted({s.quarter for s in runnable}):
                t0 = time.perf_counter()
                fresh = None if b.force else _fresh_cube(b.warehouse, q)
                if fresh is not None:   # up to date: no need to wait for a worker to say so
                    prepared[q] = fresh
                    extra_lines.append(f"prepare {q}: cube up to date (key {str(fresh['key'])[:12]})")
                    continue
                try:
                    prepared[q] = get_executor().call("helpers.batch.steps:prepare_task", str(b.warehouse), q, b.force)
                    prepared[q]["seconds"] = round(time.perf_counter() - t0, 3)
                    extra_lines.append(f"prepare {q}: {prepared[q]['seconds']:.2f}s (cube {Path(prepared[q]['path']).name}, "
                                       f"key {str(prepared[q]['key'])[:12]})")
                except SpiegelError:
                    raise   # a busy or unusable warehouse stops the build with its own exit status
                except Exception as exc:  # noqa: BLE001 - every run of the quarter fails with it
                    msg = f"{type(exc).__name__}: {_first_line(exc)}"
                    for s in [s for s in runnable if s.quarter == q]:
                        results[s.name] = RunResult(name=s.name, error={"stage": "prepare", "message": msg})
            runnable = [s for s in runnable if s.name not in results]
            progress = Progress(len(to_run))
            by_name = {s.name: s for s in to_run}
            for s in to_run:
                if s.name in results:
                    _record(manifests, s, results[s.name], b, prepared, meta_common, stale)
                    progress.update(s, results[s.name])
            try:
                in_flight.update((s.name, s) for s in runnable)
                if runnable:
                    for result in get_executor().run_all(runnable):
                        s = by_name[result.name]
                        results[s.name] = result
                        _record(manifests, s, result, b, prepared, meta_common, stale)
                        in_flight.pop(s.name, None)
                        progress.update(s, result)
            finally:
                progress.close()
            worker_mem = get_executor().memory() if runnable else []
        for m in manifests.values():
            m.save(meta_common)
        # 5. portal and summary
        from ..render.portal import build_portal
        portal = build_portal(b.outputs)
        extra_lines.append(_memory_line(results, worker_mem))
        print_summary(specs, results, skipped, time.perf_counter() - started, extra_lines, b.outputs, portal)
        refused_here = any(s.key in refused for s in specs if s.scope == "practice")
        failed = any(r.status != "done" for r in results.values())
        return 1 if failed or refused_here else 0
    except KeyboardInterrupt:
        with _signals_held():
            if executor is not None:
                # from now on no run starts and none that finishes is kept; the grace lets the
                # workers end their kernels themselves before they are terminated
                executor.close(grace=2)
            discarded = discard_unrecorded(manifests, in_flight.values())
            for m in manifests.values():
                m.save(meta_common)
            if manifests:   # no link to a discarded file
                from ..render.portal import build_portal
                build_portal(b.outputs)
        print(f"\n{interrupt_message(b, discarded)}", file=sys.stderr)
        return exit_code(KeyboardInterrupt())
    finally:
        if executor is not None:
            executor.close()
        for q in manifests:   # the workers are gone: what a killed one was writing goes too
            clean_stale(b.outputs / q, everyone=True)


def _record(manifests, spec, result, b: Batch, prepared: dict, meta_common: dict, stale: dict) -> None:
    m = manifests[spec.quarter]
    prep = prepared.get(spec.quarter)
    if prep:
        result.timings.setdefault("prepare_shared", prep["seconds"])
    m.record(spec, result, b.name, stale_of(spec, stale))
    meta = dict(meta_common)
    if prep:
        meta["cube"] = {"key": prep["key"], "computed_at": prep.get("computed_at"),
                        "prepare_s": prep["seconds"], "timings_s": prep.get("timings_s")}
    m.save(meta)


def _fail_without_kernel(spec):
    from ..runner import RunResult
    result = RunResult(name=spec.name, error=dict(spec.pre_failed), finished_at=_now_iso(), attempts=0)
    write_atomic(Path(spec.log_path),
                 f"{time.strftime('%H:%M:%S')} run {spec.name}: not started\n"
                 f"{time.strftime('%H:%M:%S')} {spec.pre_failed['stage']}: {spec.pre_failed['message']}\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spiegel build", description=__doc__.splitlines()[0])
    add_build_arguments(parser)
    return run_build(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
