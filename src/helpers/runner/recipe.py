"""The recipe of ONE run, in the order papermill's own ``execute_notebook`` reads: load,
parameterise, execute, raise for cell errors, write; here "write" is render the HTML, write
the extras, build the slides (from the executed notebook, not executed again), print the PDF, and commit the staged files together (in a batch: hand them to the build, which commits
them with the manifest entry, ``helpers.runner.staging``).

``run_spec`` is the recipe; ``Run`` holds one run's state (spec, result, log, staging,
deadline, stop flag) and has one method per step. The worker (``WorkerState``) lends it the
kernels, the PDF printer and its private folder.

What holds over the whole run:

- the time limit covers every stage: kernel start, execution (a timer kills the kernel; the
  cell that was running is named, as the author counts cells), HTML, PDF (Playwright gets
  the remaining time and a watchdog kills the browser at the deadline) and the extras;
- the stop flag (``is_set()``) is checked before the run starts and before its files are
  committed: a run that finishes while the build stops keeps nothing;
- a failed run keeps its partial notebook (``spec.partial_path``), written whole or not at all;
- a write error (disk full, read-only), the run's log included, is the run's failure, named
  with its final path; temporaries never stay.

Privacy: the run log holds stage timings, papermill's messages, kernel chatter, the failing
cell's first line, the error's first line and the traceback's code frames; never notebook
outputs.

>>> result = run_spec(worker_state, spec)               # doctest: +SKIP
>>> result.status, result.timings["execute"]               # doctest: +SKIP
('done', 1.9)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
import traceback
from pathlib import Path

from ..atomic import remove_quietly, temp_path, write_atomic
from .kernels import handout_timeout, wait_ready
from .notebook import drop_timestamps, fix_cell_ids, source_cell_index, stopped_cell
from .processes import peak_rss_mb, rss_mb
from .spec import RunFailure, RunResult, RunSpec, file_record, first_line, is_write_error, now_iso, write_failure
from .staging import RunLog, Staging

__all__ = ["run_spec", "Run", "Stopped", "KERNEL_ATTEMPTS"]

#: kernel starts per run before it fails (a start can still race under parallel runs)
KERNEL_ATTEMPTS = 3
#: seconds a kernel handed out by the factory has to answer before it counts as not started
KERNEL_READY_TIMEOUT = 60.0

_RENDER_LOCK = threading.Lock()   # one HTML exporter per process; Dask may run tasks in threads
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Stopped(Exception):
    """The build is stopping: this run is discarded."""


def run_spec(worker, spec: RunSpec, stop=None) -> RunResult:
    """Run ``spec`` on ``worker`` (a ``WorkerState``) and return its result; never raises for
    the run's own failures (they are ``result.error``). ``stop``: an object with ``is_set()``
    that tells the build is stopping; the run is then discarded."""
    run = Run(worker, spec, stop)
    result, log, staging = run.result, run.log, run.staging
    worker._current = (spec, staging, log)
    try:
        run.check_can_start()
        nb = run.executed_notebook() if spec.render_only else None
        if nb is None:
            nb = run.load()
            nb = run.parameterise(nb)
            nb = run.execute(nb)
            run.raise_for_cell_errors(nb)
            run.stage_notebook(nb)
        run.write(nb)
        result.status = "done"
        run.remove_stale_partial()
    except Stopped:
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
            result.error = {"stage": "runner", "message": f"{type(exc).__name__}: {first_line(exc)}"}
            log("FAILED (internal error):\n" + "".join(traceback.format_exception(exc)))
    finally:
        run.finish()
        worker._current = None
    if log.error is not None and result.status == "done":   # the log's last lines or its rename
        result.status = "failed"
        result.error = write_failure(log.error).info
    return result


class Run:
    """One run in progress: its spec, result, log, staged files, deadline and stop flag, with
    one method per step of ``run_spec``."""

    def __init__(self, worker, spec: RunSpec, stop=None):
        self.worker, self.spec, self.stop = worker, spec, stop
        self.started = time.perf_counter()
        self.deadline = time.monotonic() + spec.timeout
        self.result = RunResult(name=spec.name, uid=spec.uid, worker=f"{socket.gethostname()}:{os.getpid()}")
        self.log = RunLog(spec.log_path)
        self.staging = Staging()
        self.log(f"run {spec.name}: report {spec.report}, {spec.scope} {spec.key}, quarter {spec.quarter}")
        self.log(f"cache key {spec.cache_key[:16]}, worker {self.result.worker}, time limit {spec.timeout:.0f}s")

    # -- guards -------------------------------------------------------------------------

    def check_stop(self) -> None:
        """Raise ``Stopped`` when the build is stopping."""
        if self.stop is not None and self.stop.is_set():
            raise Stopped()

    def check_deadline(self, stage: str, where: str) -> None:
        """Fail ``stage`` when the run's time limit has passed."""
        if time.monotonic() >= self.deadline:
            raise RunFailure(stage, f"time limit of {self.spec.timeout:.0f}s reached {where}")

    def check_can_start(self) -> None:
        """A run the batch marked as unstartable fails as such; a stopping build starts none;
        the output folder exists."""
        spec = self.spec
        if spec.pre_failed:
            raise RunFailure(**spec.pre_failed)
        self.check_stop()
        try:
            Path(spec.outdir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, spec.outdir) from None

    # -- load, parameterise ----------------------------------------------------------------

    def executed_notebook(self):
        """``render_only``: the notebook a previous run executed, or None to execute again."""
        import nbformat
        final = Path(self.spec.files["ipynb"])
        try:
            nb = nbformat.read(final, as_version=4)
            nbformat.validate(nb)
        except Exception as exc:  # noqa: BLE001 - missing or damaged: execute as usual
            self.log(f"no usable executed notebook at {final} ({type(exc).__name__}): executing")
            return None
        self.result.outputs["ipynb"] = file_record(final)
        self.result.attempts = 0
        self.log(f"rendering from the executed notebook {final.name} (not executed again)")
        return nb

    def load(self):
        """The report's notebook as papermill loads it (the cell ids of the file are kept, to
        number the cells papermill adds; see ``parameterise``)."""
        self._t_execute = time.perf_counter()
        try:
            from papermill.iorw import load_notebook_node
            with open(self.spec.notebook, encoding="utf-8") as f:
                self._source_ids = [c.get("id") for c in json.load(f).get("cells", [])]
            return load_notebook_node(self.spec.notebook)
        except Exception as exc:  # noqa: BLE001 - named as the execute stage, like papermill's own
            if is_write_error(exc):
                raise
            raise RunFailure("execute", f"{type(exc).__name__}: {first_line(exc)}", partial_notebook=None) from None

    def parameterise(self, nb):
        """papermill's parameter injection and metadata; cells get ids from their position."""
        from papermill.execute import prepare_notebook_metadata, remove_error_markers
        from papermill.parameterize import parameterize_notebook
        spec = self.spec
        try:
            nb = parameterize_notebook(nb, spec.params, kernel_name="python3", language="python")
            nb = prepare_notebook_metadata(nb, spec.notebook, spec.files["ipynb"])
            nb = remove_error_markers(nb)
        except Exception as exc:  # noqa: BLE001
            raise RunFailure("execute", f"{type(exc).__name__}: {first_line(exc)}", partial_notebook=None) from None
        fix_cell_ids(nb, self._source_ids)
        return nb

    # -- execute ----------------------------------------------------------------------------

    def execute(self, nb):
        """Execute ``nb`` in a fresh kernel of the worker's factory: a kernel that does not
        start is retried (``KERNEL_ATTEMPTS``), a stuck factory replaced; a dead kernel or the
        time limit fails the run with its partial notebook and the cell that was running."""
        import logging
        spec, result, log, worker = self.spec, self.result, self.log, self.worker
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s papermill %(levelname)s %(message)s", "%H:%M:%S"))
        pm_log = logging.getLogger("papermill")
        pm_log.addHandler(handler)
        pm_log.propagate = False
        pm_log.setLevel(logging.INFO)
        attempts = 0
        try:
            while True:
                attempts += 1
                kernel_started, kernel, timer = False, None, None
                kernel_peak, progress = {}, {}   # progress: the notebook being executed and its cell
                t_attempt = time.perf_counter()
                try:
                    kernel = worker.take_kernel()
                    from nbclient.util import run_sync
                    run_sync(wait_ready)(kernel, max(1.0, min(KERNEL_READY_TIMEOUT, self.deadline - time.monotonic())))
                    kernel_started = True
                    result.timings["kernel_start"] = round(time.perf_counter() - t_attempt, 3)
                    timer = threading.Timer(max(self.deadline - time.monotonic(), 0.1), kernel.kill_process)
                    timer.daemon = True
                    timer.start()
                    nb = self._execute_on(kernel, nb, kernel_peak, progress)
                    break
                except Exception as exc:  # kernel start, dead kernel, time limit
                    if is_write_error(exc):
                        raise
                    over_time = time.monotonic() >= self.deadline - 0.5
                    msg = f"{type(exc).__name__}: {first_line(exc)}"
                    handout_failed = (not kernel_started and kernel is not None and worker.factory is not None
                                      and kernel.pid() is None)
                    # a kernel forked by the factory that does not answer: the factory's own state
                    # is suspect (its next kernels hung too, once, under load): a new factory
                    # (a kernel that died at once is not that: it is simply retried)
                    unresponsive = (not kernel_started and not handout_failed and kernel is not None
                                    and worker.factory is not None
                                    and time.perf_counter() - t_attempt >= 0.9 * KERNEL_READY_TIMEOUT)
                    if handout_failed:
                        msg = (f"the kernel factory did not hand out a kernel within "
                               f"{handout_timeout():.0f}s (it was replaced)")
                    cell = stopped_cell(progress.get("nb"), progress.get("cell"))
                    if over_time:
                        where = f" in cell {cell['cell_index']} (`{cell['cell_source']}`)" if cell else ""
                        msg = f"time limit of {spec.timeout:.0f}s reached{where} ({type(exc).__name__})"
                    log(f"attempt {attempts}: {msg}")
                    if handout_failed:
                        worker.replace_factory(log)
                    elif unresponsive and not over_time:
                        worker.renew_factory(log, f"handed out a kernel that did not answer within "
                                                  f"{KERNEL_READY_TIMEOUT:.0f}s")
                    if not kernel_started and not over_time and attempts < KERNEL_ATTEMPTS:
                        log("kernel did not start; trying again")
                        time.sleep(0.2 * attempts)
                        continue
                    partial = self.keep_partial(progress.get("nb"))
                    raise RunFailure("execute", msg, partial_notebook=partial,
                                     kernel_started=kernel_started, **cell) from None
                finally:
                    if timer is not None:
                        timer.cancel()
                    if kernel_peak:
                        result.memory_mb["kernel_peak"] = kernel_peak["mb"]
                    # the next run's kernel boots while this report renders
                    worker.release_kernel(kernel, log, start_next=not (self.stop is not None and self.stop.is_set()))
            result.attempts = attempts
            return nb
        finally:
            pm_log.removeHandler(handler)

    def _execute_on(self, kernel, nb, kernel_peak: dict, progress: dict):
        """papermill's execution on a kernel we started ourselves, so it can be started ahead.
        The notebook stays in memory (papermill would rewrite the file after every cell): the
        run writes it once, complete."""
        import logging
        import math

        from papermill.clientwrap import PapermillNotebookClient
        from papermill.engines import NotebookExecutionManager

        nb_man = NotebookExecutionManager(nb, output_path=None, progress_bar=False, log_output=False)
        progress["nb"] = nb_man.nb

        def on_cell_complete(**_kw):   # nbclient calls it once the cell is sent
            pid = kernel.pid()
            mb = rss_mb(f"/proc/{pid}/status") if pid else None
            if mb is not None:
                kernel_peak["mb"] = max(mb, kernel_peak.get("mb", 0))

        # the cell in progress: papermill marks a cell stopped by the time limit as completed
        def on_cell_start(cell, cell_index, **_kw):
            if cell.cell_type == "code" and cell.source.strip():
                progress["cell"] = cell_index

        def on_cell_executed(**_kw):
            progress["cell"] = None

        # not papermill's notebook_complete: it marks cells that never ran as completed
        nb_man.notebook_start()
        client = PapermillNotebookClient(
            nb_man, km=kernel.km, kernel_name="python3",
            timeout=max(1, math.ceil(self.deadline - time.monotonic())), startup_timeout=60,
            log=logging.getLogger("papermill"), log_output=False, record_timing=False,
            resources={"metadata": {"path": kernel.workdir}}, on_cell_complete=on_cell_complete,
            on_cell_start=on_cell_start, on_cell_executed=on_cell_executed)
        client.kc = kernel.kc
        client.execute()
        return nb_man.nb

    # -- raise --------------------------------------------------------------------------------

    def raise_for_cell_errors(self, nb) -> None:
        """papermill's check for a cell error, as a ``RunFailure`` naming the cell as the
        author counts cells, the error's first line and the partial notebook."""
        import copy

        from papermill.exceptions import PapermillExecutionError
        from papermill.execute import raise_for_execution_errors
        # papermill writes the notebook with its error banner, here to the worker's private
        # folder (``failed.ipynb``), from where the run keeps it
        bannered = Path(self.worker.ipc_dir) / "failed.ipynb"
        try:
            raise_for_execution_errors(copy.deepcopy(nb), str(bannered))
        except PapermillExecutionError as err:
            raise self._cell_failure(err, bannered) from None

    def _cell_failure(self, err, bannered: Path) -> RunFailure:
        import nbformat

        from ..suppression import scrub_message
        spec, log = self.spec, self.log
        try:
            partial = self.keep_partial(nbformat.read(bannered, as_version=4))
        finally:
            remove_quietly(bannered)
        cell_index = source_cell_index(err.cell_index, partial)
        source = first_line(err.source, 120)
        message = f"{err.ename}: {scrub_message(first_line(err.evalue))}"
        log(f"cell {cell_index} (`{source}`) raised {message}")
        # the traceback's frames (code, not data) help the analyst; values stay out
        frames = [_ANSI.sub("", ln) for ln in "\n".join(err.traceback or []).splitlines()]
        frames = [ln for ln in frames if ln.strip().startswith(("File ", "Cell In", "---->"))]
        for ln in frames[:20]:
            log("  " + ln[:200])
        return RunFailure("execute", message, cell_index=cell_index, cell_source=source,
                          ename=err.ename, partial_notebook=partial)

    def keep_partial(self, nb) -> str | None:
        """The partial notebook of a failed run, written whole or not at all."""
        if nb is None:
            return None
        import nbformat
        drop_timestamps(nb, self.spec)
        try:
            write_atomic(Path(self.spec.partial_path), nbformat.writes(nb))
        except OSError as exc:
            self.log(f"partial notebook not kept: {write_failure(exc).info['message']}")
            return None
        return self.spec.partial_path

    # -- write ----------------------------------------------------------------------------------

    def stage_notebook(self, nb) -> None:
        """The executed notebook, without timings, staged as the run's ``.ipynb``."""
        import nbformat
        drop_timestamps(nb, self.spec)
        self.staging.write("ipynb", Path(self.spec.files["ipynb"]), nbformat.writes(nb))
        self.result.timings["execute"] = round(time.perf_counter() - self._t_execute, 3)
        self.log(f"executed in {self.result.timings['execute']:.2f}s (kernel ready after "
                 f"{self.result.timings.get('kernel_start', 0):.2f}s, attempts {self.result.attempts})")

    def write(self, nb) -> None:
        """HTML, extras and PDF, then every staged file into place together. A PDF that fails
        leaves the HTML and extras committed and is the run's failure."""
        html_tmp = self.render_html(nb)
        self.write_extras()
        if "slides" in self.spec.formats:
            self.render_slides(nb)
        pdf_failure = None
        if "pdf" in self.spec.formats:
            try:
                self.print_pdf(html_tmp)
            except RunFailure as failure:   # the HTML and extras stay: only the PDF failed
                pdf_failure = failure
        if self.log.error is not None:
            raise self.log.error
        self.check_stop()
        if self.spec.commit_by_build:
            self.result.staged = self.staging.hand_over()
            self.worker.handed_over = frozenset(tmp for _kind, tmp, _final, _rec in self.result.staged)
        else:
            self.staging.commit(self.result)
        if pdf_failure is not None:
            raise pdf_failure

    def render_html(self, nb) -> Path:
        """The house-style HTML page of ``nb``, staged; returns its temporary path."""
        from .. import render
        spec = self.spec
        t0 = time.perf_counter()
        try:
            with _RENDER_LOCK:
                page = render.render_html(nb, title=spec.title, subtitle=spec.subtitle,
                                          provenance=spec.provenance)
        except Exception as exc:  # noqa: BLE001
            raise RunFailure("html", f"{type(exc).__name__}: {first_line(exc)}") from None
        tmp = self.staging.write("html", Path(spec.files["html"]), page)
        self.result.timings["html"] = round(time.perf_counter() - t0, 3)
        self.check_deadline("html", "while rendering the HTML")
        self.log(f"html rendered in {self.result.timings['html']:.2f}s ({len(page)} characters)")
        return tmp

    def render_slides(self, nb) -> None:
        """The deck (``<report>.slides.html``) from the notebook already executed, staged: its
        sections are the notebook's H2 headings (``helpers.render.slides``), the practice and
        quarter on every slide, the key figures (``write_extras`` computed them) on the first."""
        from ..render.slides import render_slides
        from ..reports import REPORTS
        spec = self.spec
        t0 = time.perf_counter()
        report = REPORTS.get(spec.report)
        columns = report.figure_columns() if report is not None else ()
        figures = [(label, self.result.figures[key]) for key, label in columns
                   if self.result.figures.get(key) not in (None, "")]
        try:
            with _RENDER_LOCK:
                deck = render_slides(nb, title=spec.title, subtitle=spec.subtitle, provenance=spec.provenance,
                                     figures=figures)
        except Exception as exc:  # noqa: BLE001
            raise RunFailure("slides", f"{type(exc).__name__}: {first_line(exc)}") from None
        self.staging.write("slides", Path(spec.files["slides"]), deck)
        self.result.timings["slides"] = round(time.perf_counter() - t0, 3)
        self.check_deadline("slides", "while building the slides")
        self.log(f"slides built in {self.result.timings['slides']:.2f}s ({len(deck)} characters)")

    def print_pdf(self, html_tmp: Path) -> None:
        """Print the PDF within the run's remaining time: Playwright gets it as its timeout,
        and a watchdog kills the browser at the deadline (a page can stall Chromium where
        no Playwright timeout reaches, e.g. while printing)."""
        spec = self.spec
        t0 = time.perf_counter()
        final = Path(spec.files["pdf"])
        tmp = temp_path(final)
        self.check_deadline("pdf", "before printing the PDF")
        printer = self.worker.printer()
        watchdog = threading.Timer(max(self.deadline - time.monotonic(), 0.1), printer.kill)
        watchdog.daemon = True
        try:
            printer.start()
            watchdog.start()
            pages = printer.print_pdf(html_tmp, tmp, footer_left=f"{spec.label} · {spec.quarter}",
                                      timeout=max(self.deadline - time.monotonic(), 0.1))
        except Exception as exc:  # noqa: BLE001 - HTML stays; the run is marked failed
            remove_quietly(tmp)
            if is_write_error(exc):
                raise write_failure(exc, final) from None
            if time.monotonic() >= self.deadline - 0.5:
                raise RunFailure("pdf", f"time limit of {spec.timeout:.0f}s reached while printing the PDF "
                                        f"({type(exc).__name__})") from None
            raise RunFailure("pdf", first_line(exc, 400)) from None
        finally:
            watchdog.cancel()
        self.staging.add("pdf", tmp, final, pages=pages)
        self.result.timings["pdf"] = round(time.perf_counter() - t0, 3)
        self.log(f"pdf printed in {self.result.timings['pdf']:.2f}s ({pages} pages)")

    def write_extras(self) -> None:
        """The report's extra files (worklists), staged, and its key figures for the portal."""
        from ..reports import REPORTS
        spec, result, log = self.spec, self.result, self.log
        t0 = time.perf_counter()
        report = REPORTS.get(spec.report)
        if report is not None and report.extras is not None and Path(spec.notebook).resolve() == Path(report.notebook).resolve():
            folder = temp_path(Path(spec.outdir) / "extras")
            shutil.rmtree(folder, ignore_errors=True)
            try:
                folder.mkdir(parents=True)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, spec.outdir) from None
            self.staging.dirs.append(folder)
            try:
                written = report.extras(Path(spec.cube_path), spec.key, folder)
            except OSError as exc:
                if is_write_error(exc):
                    raise OSError(exc.errno, exc.strerror, spec.outdir) from None
                raise RunFailure("extras", f"{type(exc).__name__}: {first_line(exc)}") from None
            except Exception as exc:  # noqa: BLE001
                raise RunFailure("extras", f"{type(exc).__name__}: {first_line(exc)}") from None
            for path in written:
                self.staging.add("extra", Path(path), Path(spec.outdir) / Path(path).name)
            log(f"{len(written)} extra file(s) written")
        try:
            from ..render.portal import key_figures
            result.figures = key_figures(spec.report, Path(spec.cube_path), spec.key)
        except Exception as exc:  # noqa: BLE001 - figures are a nicety for the portal
            log(f"key figures unavailable: {type(exc).__name__}")
        result.timings["extras"] = round(time.perf_counter() - t0, 3)
        self.check_deadline("extras", "while writing the extra files")

    # -- the end ----------------------------------------------------------------------------------

    def remove_stale_partial(self) -> None:
        """A run that succeeds removes the partial notebook of an earlier failure (in a batch:
        the build does, once it has committed this run's files)."""
        stale = Path(self.spec.partial_path)
        if stale.exists():
            if self.spec.commit_by_build:
                self.result.staged.append(["remove", str(stale), "", {}])
            else:
                stale.unlink()

    def finish(self) -> None:
        """Whatever happened: uncommitted temporaries go, the result gets its totals, the log
        its last line and its final name."""
        spec, result, log = self.spec, self.result, self.log
        self.staging.discard()
        written = {*result.outputs, *(item[0] for item in result.staged)}
        result.outputs_done = {fmt: fmt in written for fmt in dict.fromkeys(["ipynb", "html", *spec.formats])}
        result.timings["total"] = round(time.perf_counter() - self.started, 3)
        result.memory_mb["worker_peak"] = peak_rss_mb()
        result.finished_at = now_iso()
        log(f"{result.status} in {result.timings['total']:.2f}s; timings {json.dumps(result.timings)}")
        log.close()
