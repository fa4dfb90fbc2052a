"""The worker on its own (in this process): a kernel that fails to start is retried, a
stuck kernel factory is replaced, the time limit covers the whole run (the PDF included)
and names the cell, a write error fails only its run, a run without a browser keeps its
HTML and is completed later without executing again, and the executed notebook has the
same bytes for the same inputs."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import nbformat

import pandas as pd
import pytest

from helpers import runner
from helpers.cube import prepare_quarter
from helpers.quarter import Quarter
from helpers.warehouse import Warehouse

from conftest import FIXTURES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worker(tiny_group):
    wh = Warehouse(tiny_group.warehouse)
    if not wh.practice_hashes():
        wh.ingest(tiny_group.dataset)
    latest = pd.to_datetime(wh.practices()["extraction_date"]).max().date()
    quarter = str(Quarter.latest_complete(latest))
    cube = prepare_quarter(tiny_group.warehouse, quarter)
    state = runner.WorkerState(["pandas", "seaborn"])
    yield state, tiny_group, quarter, cube
    state.close()


def _spec(group, quarter, cube, out: Path, agb: str, timeout: float = 120, delay: str = "0",
          report: str = "tiny", formats=("html",), **params) -> runner.RunSpec:
    d = out / quarter / agb
    base = {"tiny": {"fail_for": ""}, "steady": {"big_for": ""}}[report]
    return runner.RunSpec(
        name=f"{agb}-{report}", quarter=quarter, report=report, scope="practice", key=agb, label=agb,
        notebook=str(FIXTURES / f"{report}.ipynb"),
        params={"practice_agb": agb, "quarter": quarter, "warehouse": str(group.warehouse),
                "cube_path": str(cube), **base, "delay": delay, **params},
        formats=list(formats), outdir=str(d),
        files={fmt: str(d / f"{report}.{fmt}") for fmt in ("ipynb", "html", *formats)},
        partial_path=str(d / f"{report}.failed.ipynb"), log_path=str(out / quarter / "logs" / f"{agb}-{report}.log"),
        cube_path=str(cube), cache_key="k" * 64, timeout=timeout, title=f"{report.title()} report")


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


def test_a_kernel_that_fails_to_start_is_retried(worker, tmp_path, monkeypatch):
    state, group, quarter, cube = worker
    real_launch = state._launch
    calls = {"n": 0}

    def flaky_launch():
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("Kernel didn't respond in 60 seconds (simulated port race)")
        return real_launch()

    if state._spare is not None:
        state._spare.discard()
        state._spare = None
    monkeypatch.setattr(state, "_launch", flaky_launch)
    result = state.run(_spec(group, quarter, cube, tmp_path, group.practices[0]))
    assert result.status == "done", result.error
    assert result.attempts == 2
    log = (tmp_path / quarter / "logs" / f"{group.practices[0]}-tiny.log").read_text()
    assert "simulated port race" in log and "trying again" in log


def test_the_time_limit_stops_a_run_and_the_worker_goes_on(worker, tmp_path):
    state, group, quarter, cube = worker
    slow = state.run(_spec(group, quarter, cube, tmp_path, group.practices[1], timeout=6, delay="60"))
    assert slow.status == "failed"
    assert slow.error["stage"] == "execute" and "time limit of 6s" in slow.error["message"]
    # the cell that was running is named, as the author counts cells
    assert "in cell 3 (`time.sleep(float(delay))`)" in slow.error["message"]
    assert slow.error["cell_index"] == 3 and slow.error["cell_source"] == "time.sleep(float(delay))"
    assert slow.timings["total"] < 60
    partial = Path(slow.error["partial_notebook"])
    nb = nbformat.read(partial, as_version=4)
    nbformat.validate(nb)
    status = [c.metadata.get("papermill", {}).get("status") for c in nb.cells if c.cell_type == "code"]
    # parameters, injected parameters, probe, plot: completed; the sleeping cell stopped; the
    # cell after it never ran and is not marked as completed
    assert status == ["completed"] * 4 + ["failed", "pending"], status
    assert not (tmp_path / quarter / group.practices[1] / "tiny.html").exists()
    after = state.run(_spec(group, quarter, cube, tmp_path, group.practices[2]))
    assert after.status == "done", after.error
    assert "Tiny report" in (tmp_path / quarter / group.practices[2] / "tiny.html").read_text()


def _steady(worker, out: Path, agb: str, **kw) -> runner.RunSpec:
    state, group, quarter, cube = worker
    return _spec(group, quarter, cube, out, agb, report="steady", **kw)


@pytest.mark.usefixtures("fixture_reports_registered")
def test_same_inputs_give_the_same_notebook_bytes(worker, tmp_path):
    state, group, quarter, cube = worker
    agb = group.practices[0]
    runs = []
    for _ in range(2):
        result = state.run(_steady(worker, tmp_path, agb))
        assert result.status == "done", result.error
        runs.append((tmp_path / quarter / agb / "steady.ipynb").read_bytes())
    assert runs[0] == runs[1]
    nb = nbformat.reads(runs[0].decode(), as_version=4)
    nbformat.validate(nb)
    assert [c.id for c in nb.cells][:2] == ["cell-0", "injected-parameters"]
    assert not {"start_time", "end_time", "duration"} & set(nb.metadata.papermill)
    for cell in nb.cells:
        assert "execution" not in cell.metadata
        assert not {"start_time", "end_time", "duration"} & set(cell.metadata.get("papermill", {}))
    assert nb.metadata.papermill["output_path"] == str(tmp_path / quarter / agb / "steady.ipynb")


def test_a_stuck_kernel_factory_is_replaced_and_fails_no_run(worker, tmp_path, monkeypatch):
    state, group, quarter, cube = worker
    monkeypatch.setattr(runner, "FACTORY_HANDOUT_TIMEOUT", 3.0)
    if state._spare is not None:   # forked before the factory got stuck
        state._spare.discard()
        state._spare = None
    stuck = state.factory.pid
    os.kill(stuck, signal.SIGSTOP)   # alive, but it hands out no kernel
    try:
        result = state.run(_spec(group, quarter, cube, tmp_path, group.practices[0]))
    finally:
        try:
            os.kill(stuck, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert result.status == "done", result.error
    assert result.attempts == 2
    assert not runner.pid_alive(stuck), "the stuck factory was killed"
    assert state.factory.pid != stuck and state.factory.alive()
    log = (tmp_path / quarter / "logs" / f"{group.practices[0]}-tiny.log").read_text()
    assert "did not hand out a kernel within 3s" in log


def _sigkill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _stop_the_first_kernel(state, monkeypatch) -> list[int]:
    """Have ``state``'s next kernel handed out alive, forked, but SIGSTOPped: it never answers.
    Returns the list that gets its pid (for the test to kill)."""
    real_launch = state._launch
    stopped = []

    def launch_then_stop():
        kernel = real_launch()
        if not stopped:
            deadline = time.monotonic() + 20
            while kernel.pid() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(kernel.pid(), signal.SIGSTOP)
            stopped.append(kernel.pid())
        return kernel

    monkeypatch.setattr(state, "_launch", launch_then_stop)
    return stopped


def test_a_kernel_that_does_not_answer_gets_a_new_factory_and_the_run_goes_on(worker, tmp_path, monkeypatch):
    """Once, under load, every kernel one factory forked hung until the run failed: a kernel
    that does not answer now replaces its factory before the next attempt."""
    from helpers.runner import recipe
    state, group, quarter, cube = worker
    monkeypatch.setattr(recipe, "KERNEL_READY_TIMEOUT", 3.0)
    if state._spare is not None:
        state._spare.discard()
        state._spare = None
    before = state.factory.pid
    stopped = _stop_the_first_kernel(state, monkeypatch)
    try:
        result = state.run(_spec(group, quarter, cube, tmp_path, group.practices[0]))
    finally:
        _sigkill(stopped)
    assert result.status == "done", result.error
    assert result.attempts == 2
    assert state.factory.pid != before and state.factory.alive()
    assert not runner.pid_alive(before), "the suspect factory was killed"
    log = (tmp_path / quarter / "logs" / f"{group.practices[0]}-tiny.log").read_text()
    assert "handed out a kernel that did not answer within 3s: killed, a new one starts" in log


def test_a_kernel_of_the_shared_factory_that_does_not_answer_leaves_that_factory_to_the_others(
        worker, tmp_path, monkeypatch):
    """In the local pool the workers share one factory, and a kernel dies with the factory it
    was forked from: a worker whose kernel hung starts a factory of its own instead of killing
    the shared one under the other workers' runs."""
    from helpers.runner import recipe
    _state, group, quarter, cube = worker
    monkeypatch.setattr(recipe, "KERNEL_READY_TIMEOUT", 3.0)
    shared = runner.KernelFactory(["pandas"])
    shared.wait_ready()
    state = runner.WorkerState(["pandas"], factory_sock=shared.sock, factory_pid=shared.pid)
    stopped = _stop_the_first_kernel(state, monkeypatch)
    try:
        result = state.run(_spec(group, quarter, cube, tmp_path, group.practices[1]))
        assert result.status == "done", result.error
        assert result.attempts == 2
        assert shared.alive(), "the shared factory is left to the other workers"
        assert state.factory.pid != shared.pid and state.factory.alive()
        log = (tmp_path / quarter / "logs" / f"{group.practices[1]}-tiny.log").read_text()
        assert f"the shared kernel factory (pid {shared.pid}) handed out a kernel that did not answer" in log
    finally:
        _sigkill(stopped)
        state.close()
        shared.close()


def test_a_factory_that_never_answers_is_named_in_the_failure(worker, tmp_path, monkeypatch):
    state, group, quarter, cube = worker
    monkeypatch.setattr(runner, "FACTORY_HANDOUT_TIMEOUT", 2.0)
    stuck = []
    ready = runner.KernelFactory.wait_ready

    def ready_then_stuck(factory, *args, **kw):
        ready(factory, *args, **kw)
        if factory.pid not in stuck:
            os.kill(factory.pid, signal.SIGSTOP)
            stuck.append(factory.pid)

    if state._spare is not None:
        state._spare.discard()
        state._spare = None
    monkeypatch.setattr(runner.KernelFactory, "wait_ready", ready_then_stuck)
    try:
        result = state.run(_spec(group, quarter, cube, tmp_path, group.practices[1]))
    finally:
        _sigkill(stuck)
    assert result.status == "failed"
    assert result.error["stage"] == "execute"
    assert result.error["message"] == "the kernel factory did not hand out a kernel within 2s (it was replaced)"
    assert len(stuck) >= 3, "each attempt found its factory stuck and replaced it"


def _browser_pids() -> list[int]:
    table = runner._process_table()
    drivers = {pid for pid, (ppid, cmd) in table.items() if ppid == os.getpid() and "run-driver" in cmd}
    return [pid for pid, (ppid, _cmd) in table.items() if ppid in drivers]


@pytest.mark.usefixtures("fixture_reports_registered")
def test_the_time_limit_covers_the_pdf_of_a_hanging_browser(worker, tmp_path):
    state, group, quarter, cube = worker
    agb = group.practices[2]
    printer = state.printer()
    printer.start()
    hung = _browser_pids()
    assert hung, "the printer's Chromium runs"
    for pid in hung:
        os.kill(pid, signal.SIGSTOP)   # the browser stops answering, as a page can make it
    try:
        t0 = time.monotonic()
        result = state.run(_steady(worker, tmp_path, agb, timeout=25, formats=("html", "pdf")))
        elapsed = time.monotonic() - t0
    finally:
        for pid in hung:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert result.status == "failed"
    assert result.error["stage"] == "pdf"
    assert "time limit of 25s reached while printing the PDF" in result.error["message"]
    assert elapsed < 25 + 10   # the whole run, not Playwright's own 30 s on top of it
    assert not any(runner.pid_alive(pid) for pid in hung)
    assert result.outputs_done == {"ipynb": True, "html": True, "pdf": False}
    assert _temporaries(tmp_path) == []
    again = state.run(_steady(worker, tmp_path, agb, formats=("html", "pdf")))
    assert again.status == "done", again.error
    assert (tmp_path / quarter / agb / "steady.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.usefixtures("fixture_reports_registered")
def test_without_a_browser_the_html_and_extras_are_kept_and_the_pdf_follows_without_executing(
        worker, tmp_path, monkeypatch):
    state, group, quarter, cube = worker
    agb = group.practices[0]
    state.printer().close()
    monkeypatch.setenv("SPIEGEL_CHROMIUM", "/nonexistent/chromium")
    spec = _steady(worker, tmp_path, agb, formats=("html", "pdf"))
    result = state.run(spec)
    d = tmp_path / quarter / agb
    assert result.status == "failed"
    assert result.error["stage"] == "pdf" and "apt-get install chromium" in result.error["message"]
    assert result.outputs_done == {"ipynb": True, "html": True, "pdf": False}
    assert set(result.outputs) == {"ipynb", "html"}
    assert [Path(x["path"]).name for x in result.extras] == ["werklijst_steady.csv"]
    assert (d / "steady.html").exists() and (d / "werklijst_steady.csv").exists()
    assert not (d / "steady.pdf").exists()
    executed = (d / "steady.ipynb").stat()
    monkeypatch.delenv("SPIEGEL_CHROMIUM")
    spec.render_only = True
    done = state.run(spec)
    assert done.status == "done", done.error
    assert done.attempts == 0 and "execute" not in done.timings
    assert (d / "steady.ipynb").stat().st_mtime_ns == executed.st_mtime_ns, "not executed again"
    assert done.outputs["ipynb"]["sha256"] == result.outputs["ipynb"]["sha256"]
    assert (d / "steady.pdf").read_bytes().startswith(b"%PDF")
    assert done.outputs_done == {"ipynb": True, "html": True, "pdf": True}
    assert "not executed again" in (tmp_path / quarter / "logs" / f"{agb}-steady.log").read_text()


@pytest.mark.usefixtures("fixture_reports_registered")
def test_a_full_disk_fails_that_run_only_and_leaves_no_half_file(worker, small_disk):
    state, group, quarter, cube = worker
    big, small = group.practices[0], group.practices[1]
    full = state.run(_steady(worker, small_disk, big, big_for=big))
    assert full.status == "failed"
    assert full.error["stage"] == "write"
    target = small_disk / quarter / big / "steady.ipynb"
    assert full.error["message"].startswith(f"disk full at {target}: free space")
    assert _temporaries(small_disk) == [], "no truncated temporary stays"
    assert not target.exists() and not (small_disk / quarter / big / "steady.failed.ipynb").exists()
    after = state.run(_steady(worker, small_disk, small, big_for=big))
    assert after.status == "done", after.error
    nbformat.validate(nbformat.read(small_disk / quarter / small / "steady.ipynb", as_version=4))
    assert _temporaries(small_disk) == []


def test_a_full_disk_under_the_log_is_the_runs_failure(worker, small_disk):
    state, group, quarter, cube = worker
    agb = group.practices[2]
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:   # fill the disk to the last block
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    result = state.run(_spec(group, quarter, cube, small_disk, agb))
    assert result.status == "failed" and result.error["stage"] == "write"
    assert result.error["message"].startswith("disk full at ")
    assert _temporaries(small_disk) == []
    filler.unlink()
    assert state.run(_spec(group, quarter, cube, small_disk, agb)).status == "done"


def test_a_run_that_finishes_after_the_build_stopped_keeps_no_file(worker, tmp_path):
    state, group, quarter, cube = worker
    agb = group.practices[1]
    stop = threading.Event()

    def stop_while_it_runs():
        deadline = time.monotonic() + 60
        while state._kernel is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)   # in the sleeping cell
        stop.set()

    threading.Thread(target=stop_while_it_runs, daemon=True).start()
    result = state.run(_spec(group, quarter, cube, tmp_path, agb, delay="4"), stop=stop)
    assert result.status == "failed" and result.error["stage"] == "interrupted"
    assert "execute" in result.timings, "the notebook ran to its end, and was then discarded"
    assert list((tmp_path / quarter / agb).glob("tiny.*")) == []
    assert _temporaries(tmp_path) == []
