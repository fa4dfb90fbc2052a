"""Fault injection: ``spiegel build`` (a separate process in its own session, tagged with
``SPIEGEL_TEST_TAG`` so every process it starts can be found, Chromium included) is killed
with SIGKILL, SIGTERM and SIGINT halfway; a worker, a kernel and the browser are killed;
the disk fills up; the warehouse is locked. Each time: no process is left, no file is half
written, the manifest's hashes are the files' hashes (and no output exists without its
entry), and the rerun without --force completes exactly what is missing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from conftest import assert_recorded_hashes, build, counts, done_runs, quarter_of, start_build
from helpers import runner

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fixture_reports_registered")]

OUTPUT_SUFFIXES = (".html", ".ipynb", ".pdf", ".csv")


# ---------------------------------------------------------------------------------------
# the build under test, and what we check afterwards
# ---------------------------------------------------------------------------------------


def tagged(tag: str) -> dict[int, str]:
    """pid -> command line of every live process whose environment holds the tag."""
    marker = f"SPIEGEL_TEST_TAG={tag}".encode()
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if marker not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if runner.pid_alive(int(name)):
            found[int(name)] = cmd
    return found


class Build:
    """``spiegel build`` with the fixture reports, in its own session, output to a file; as a
    ``with`` block, every process of the build is killed at its end."""

    def __init__(self, batch: Path, *args: str, env: dict | None = None):
        self.tag = uuid.uuid4().hex
        self.log = batch.with_suffix(f".{self.tag[:8]}.out")
        with open(self.log, "wb") as out:
            self.proc = start_build(batch, *args, env={"SPIEGEL_TEST_TAG": self.tag, **(env or {})}, stdout=out)
        self.seen: dict[int, str] = {}

    def processes(self) -> dict[int, str]:
        now = tagged(self.tag)
        self.seen.update(now)
        return now

    def wait_for(self, what, timeout: float = 180, step: float = 0.1):
        """Poll ``what()`` until it returns something true; fail if the build ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.processes()
            value = what()
            if value:
                return value
            assert self.proc.poll() is None, f"the build ended first:\n{self.output()}"
            time.sleep(step)
        raise AssertionError(f"timed out waiting; build output:\n{self.output()}")

    def finish(self, timeout: float = 240) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> "Build":
        return self

    def __exit__(self, *exc) -> None:
        self.kill_everything()   # whatever the test saw: no process of this build outlives it

    def kill_everything(self) -> None:
        for pid in tagged(self.tag):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def assert_no_process_left(b: Build, within: float = 20) -> None:
    deadline = time.monotonic() + within
    left = b.processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = tagged(b.tag)
    b.kill_everything()   # so one failure does not leave the machine busy for the next test
    assert not left, "processes left running:\n" + "\n".join(f"{p} {c[:160]}" for p, c in left.items())


class _Strict(HTMLParser):
    def __init__(self):
        super().__init__()
        self.closed_html = False

    def handle_endtag(self, tag):
        if tag == "html":
            self.closed_html = True


def assert_no_half_file(outputs: Path, temporaries_allowed: bool = False) -> None:
    for path in outputs.rglob("*"):
        if ".tmp-" in path.name:
            assert temporaries_allowed, f"temporary left behind: {path}"
            continue
        if not path.is_file():
            continue
        if path.suffix == ".html":
            parser = _Strict()
            parser.feed(path.read_text(encoding="utf-8"))
            parser.close()
            assert parser.closed_html, f"half an HTML file: {path}"
        elif path.suffix == ".ipynb":
            nbformat.validate(nbformat.read(path, as_version=4))
        elif path.suffix == ".pdf":
            data = path.read_bytes()
            assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF"), f"half a PDF: {path}"
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))


def assert_manifest_matches(outputs: Path, quarter: str) -> dict:
    """Every file the manifest names has its hash, and no report file exists without it."""
    mpath = outputs / quarter / "manifest.json"
    runs = json.loads(mpath.read_text())["runs"] if mpath.exists() else {}
    recorded = assert_recorded_hashes(outputs, quarter, runs)
    for path in (outputs / quarter).rglob("*"):
        in_run_folder = path.parent != outputs / quarter and path.parent.name != "logs"   # not the portal
        if in_run_folder and path.suffix in OUTPUT_SUFFIXES and ".tmp-" not in path.name \
                and not path.name.endswith(".failed.ipynb"):
            assert path in recorded, f"{path} was written without a manifest entry"
    return runs


def _rerun_completes_what_is_missing(batch: Path, outputs: Path, done_before: int, runs: int = 3) -> str:
    code, out = build(batch)
    assert code == 0, out
    c = counts(out)
    assert c["skipped"] == done_before and c["done"] == runs - done_before, c
    q = quarter_of(outputs)
    assert_no_half_file(outputs)
    entries = assert_manifest_matches(outputs, q)
    assert all(e["status"] == "done" for e in entries.values())
    return out


def _whole_and_recorded_after_the_stop(outputs: Path) -> int:
    """After the build was stopped: no half file (temporaries may stay until the next build),
    every file recorded with its hash; returns how many runs are done."""
    q = quarter_of(outputs)
    assert_no_half_file(outputs, temporaries_allowed=True)
    runs = assert_manifest_matches(outputs, q)
    return sum(r["status"] == "done" for r in runs.values())


def _at_most_one_failed_then_the_rerun_completes(b: Build, code: int, batch: Path, outputs: Path) -> None:
    """After a kill inside one run: that run failed or was retried, the others are done, the
    outputs are whole and recorded, and the rerun completes what is missing."""
    c = counts(b.output())
    assert c["failed"] <= 1 and c["done"] + c["failed"] == 3 and code == (1 if c["failed"] else 0)
    q = quarter_of(outputs)
    assert_no_half_file(outputs)
    assert_manifest_matches(outputs, q)
    _rerun_completes_what_is_missing(batch, outputs, c["done"])


def _kernel_or_launcher(b: Build) -> bool:
    return any("helpers.runner _launch" in c for c in b.processes().values())


# ---------------------------------------------------------------------------------------
# the build is killed
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_killing_the_build_leaves_nothing_running_and_the_rerun_completes_it(tiny_group, how):
    name = f"kill-{how.lower()}"
    formats = ["html", "pdf"] if how == "SIGKILL" else ["html"]   # Chromium too, once
    batch = tiny_group.batch(name, reports=["tiny"], formats=formats, workers=2, params={"tiny": {"delay": "3"}})
    outputs = tiny_group.root / f"out-{name}"
    with Build(batch) as b:
        b.wait_for(lambda: done_runs(outputs) >= 1)
        if how == "SIGKILL":
            assert any("chromium" in c for c in b.seen.values()) or b.wait_for(
                lambda: any("chromium" in c for c in b.processes().values()), timeout=30)
        os.kill(b.proc.pid, getattr(signal, how))   # the coordinator only: its children must follow
        b.finish(timeout=60)
        assert_no_process_left(b)
    done_before = _whole_and_recorded_after_the_stop(outputs)
    _rerun_completes_what_is_missing(batch, outputs, done_before)


def test_ctrl_c_stops_at_once_and_keeps_only_what_the_manifest_records(tiny_group):
    batch = tiny_group.batch("ctrl-c", reports=["tiny"], formats=["html"], workers=2,
                             params={"tiny": {"delay": "8"}})   # time enough to interrupt run 3
    outputs = tiny_group.root / "out-ctrl-c"
    with Build(batch) as b:
        b.wait_for(lambda: done_runs(outputs) >= 1)
        os.killpg(b.proc.pid, signal.SIGINT)   # what a terminal sends to the whole group
        code = b.finish(timeout=60)
        assert code == 130, b.output()
        assert "interrupted" in b.output()
        assert "Traceback" not in b.output(), b.output()
        assert_no_process_left(b)
    time.sleep(3)   # a worker that went on after the interrupt would write now
    done_before = _whole_and_recorded_after_the_stop(outputs)
    assert done_before < 3
    _rerun_completes_what_is_missing(batch, outputs, done_before)


# ---------------------------------------------------------------------------------------
# a part of the build is killed
# ---------------------------------------------------------------------------------------


def _workers(b: Build) -> list[int]:
    return [p for p, c in b.processes().items() if "multiprocessing.spawn" in c and "spawn_main" in c]


def test_a_killed_worker_costs_no_run_and_leaves_no_temporaries(tiny_group):
    batch = tiny_group.batch("kill-worker", reports=["tiny"], formats=["html"], workers=2,
                             params={"tiny": {"delay": "3"}})
    outputs = tiny_group.root / "out-kill-worker"
    with Build(batch) as b:
        b.wait_for(lambda: _kernel_or_launcher(b) and _workers(b))
        time.sleep(1.5)   # inside the run (the sleeping cell)
        victim = _workers(b)[0]
        os.kill(victim, signal.SIGKILL)
        code = b.finish()
        assert code == 0, b.output()
        assert_no_process_left(b)
    assert counts(b.output())["done"] == 3
    q = quarter_of(outputs)
    assert_no_half_file(outputs)   # the dead worker's temporaries were removed
    runs = assert_manifest_matches(outputs, q)
    assert max(r["attempts"] for r in runs.values()) >= 2, "the resubmission is counted"
    leftovers = [d for d in Path(os.environ.get("TMPDIR", "/tmp")).glob(f"spiegel-{victim}-*")]
    assert leftovers == [], "the killed worker's private folder was removed"


def test_a_killed_kernel_fails_at_most_its_run(tiny_group):
    batch = tiny_group.batch("kill-kernel", reports=["tiny"], formats=["html"], workers=2,
                             params={"tiny": {"delay": "3"}})
    outputs = tiny_group.root / "out-kill-kernel"
    with Build(batch) as b:
        b.wait_for(lambda: _kernel_or_launcher(b))
        time.sleep(1.5)   # inside the run (the sleeping cell)
        table = runner._process_table()
        forked = {p for p, c in b.processes().items() if "helpers.runner _zygote" in c}
        # a kernel is forked from the factory and keeps its command line
        kernels = [p for p in forked if table.get(p, (0, ""))[0] in forked]
        assert kernels, b.processes()
        os.kill(kernels[0], signal.SIGKILL)
        code = b.finish()
        assert_no_process_left(b)
    _at_most_one_failed_then_the_rerun_completes(b, code, batch, outputs)


def test_a_killed_browser_fails_at_most_one_pdf(tiny_group):
    batch = tiny_group.batch("kill-browser", reports=["tiny"], formats=["html", "pdf"], workers=1)
    outputs = tiny_group.root / "out-kill-browser"
    with Build(batch) as b:
        browsers = b.wait_for(lambda: [p for p, c in b.processes().items()
                                       if re.search(r"chromium/chromium\b", c) and "--type=" not in c])
        os.kill(browsers[0], signal.SIGKILL)
        code = b.finish()
        assert_no_process_left(b)
    _at_most_one_failed_then_the_rerun_completes(b, code, batch, outputs)


# ---------------------------------------------------------------------------------------
# the disk fills up; the warehouse is locked
# ---------------------------------------------------------------------------------------


def test_a_full_disk_fails_the_run_that_fills_it_and_the_others_complete(tiny_group, small_disk):
    big = tiny_group.practices[1]
    outputs = small_disk / "out"
    batch = tiny_group.batch("disk-full", reports=["steady"], formats=["html"], workers=1, outputs=outputs,
                             params={"steady": {"big_for": big}})
    with Build(batch) as b:
        code = b.finish()
        assert_no_process_left(b)
    out = b.output()
    assert code == 1, out
    assert counts(out) == {"runs": 3, "done": 2, "skipped": 0, "failed": 1}
    assert f"disk full at {outputs}" in out and "Traceback" not in out
    assert (outputs / "index.html").exists(), "the portal is written"
    q = quarter_of(outputs)
    assert_no_half_file(outputs)
    runs = assert_manifest_matches(outputs, q)
    assert runs[f"{big}-steady"]["error"]["stage"] == "write"
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    _rerun_completes_what_is_missing(batch, outputs, 2)


def test_a_locked_warehouse_fails_in_one_line_and_leaves_nothing(tiny_group):
    batch = tiny_group.batch("locked", reports=["tiny"], formats=["html"], workers=1)
    outputs = tiny_group.root / "out-locked"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(120)", str(tiny_group.warehouse)],
        stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with Build(batch, env={"SPIEGEL_LOCK_WAIT": "1"}) as b:
            code = b.finish()
            assert_no_process_left(b)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    out = b.output()
    assert code not in (0, 1), out          # 1 means "a practice was refused"
    assert "Traceback" not in out, out
    problem = [ln for ln in out.splitlines() if ln.startswith("spiegel build:")]
    assert len(problem) == 1 and str(holder.pid) in problem[0], out
    assert_no_half_file(outputs)
    code, out = build(batch)
    assert code == 0, out
    assert counts(out)["done"] == 3
