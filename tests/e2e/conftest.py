"""Shared set-up of the end-to-end tests: a small demo care group (3 practices, 2 regions,
one quarter) generated and built once per session, and helpers to run ``spiegel build`` (in
process, or as a subprocess with its own session and environment), to read what it wrote
(the manifest, its hashes, the quarter folder) and to look at the processes it left."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
sys.path.insert(0, str(FIXTURES))

import fixture_reports  # noqa: E402

from helpers.batch import add_build_arguments, run_build  # noqa: E402


def write_batch(path: Path, **values) -> Path:
    """A batch file; lists and mappings are written as YAML flow style."""
    lines = []
    for key, value in values.items():
        if isinstance(value, (list, dict)):
            lines.append(f"{key}: {json.dumps(value)}")
        else:
            lines.append(f"{key}: {value}")
    path.write_text("\n".join(lines) + "\n")
    return path


def build(batch_file: Path, *extra: str) -> tuple[int, str]:
    """Run ``spiegel build`` in-process; returns (exit status, everything it printed)."""
    parser = argparse.ArgumentParser()
    add_build_arguments(parser)
    args = parser.parse_args([str(batch_file), *extra])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = run_build(args)
    text = out.getvalue()
    print(text)   # shown by pytest when a test fails
    return code, text


def counts(summary: str) -> dict[str, int]:
    """The counts of the 'batch summary' line."""
    m = re.search(r"batch summary: (\d+) runs: (\d+) done, (\d+) skipped \(up to date\), (\d+) failed", summary)
    assert m, f"no summary line in:\n{summary}"
    return dict(zip(("runs", "done", "skipped", "failed"), map(int, m.groups())))


def manifest(outputs: Path, quarter: str) -> dict:
    """The manifest of one quarter of an outputs folder."""
    return json.loads((outputs / quarter / "manifest.json").read_text())


def quarter_of(outputs: Path) -> str:
    """The name of the (first) quarter folder, YYYYQn, a build wrote in ``outputs``."""
    return next(p.name for p in sorted(outputs.iterdir()) if p.is_dir() and re.fullmatch(r"\d{4}Q[1-4]", p.name))


def done_runs(outputs: Path) -> int:
    """How many runs the manifest of ``outputs`` records as done so far (0 before it exists)."""
    files = list(outputs.glob("*/manifest.json"))
    if not files:
        return 0
    try:
        runs = json.loads(files[0].read_text())["runs"]
    except (OSError, ValueError):
        return 0
    return sum(r["status"] == "done" for r in runs.values())


def assert_recorded_hashes(outputs: Path, quarter: str, runs: dict | None = None) -> set[Path]:
    """Every file the manifest's runs (default: read from ``outputs``) name exists and has the
    hash recorded for it; returns those files."""
    runs = manifest(outputs, quarter)["runs"] if runs is None else runs
    recorded = set()
    for name, entry in runs.items():
        # a build killed while it renamed the run's files: a file not yet renamed is still its
        # temporary, which the next build renames (Manifest.complete_commits)
        pending = {final: tmp for tmp, final in entry.get("committing", [])
                   if (outputs / quarter / tmp).exists()}
        for rec in [*entry.get("outputs", {}).values(), *entry.get("extras", [])]:
            recorded.add(outputs / quarter / rec["path"])
            path = outputs / quarter / pending.get(rec["path"], rec["path"])
            assert path.exists(), f"{name}: {rec['path']} is in the manifest but not on disk"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == rec["sha256"], \
                f"{name}: {rec['path']} differs from its manifest hash"
    return recorded


def strings(obj):
    """Every key and string value in a JSON-like object, depth first (numbers left out)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)
    elif isinstance(obj, str):
        yield obj


# ------------------------------------------------------------------ a build in a subprocess


def driver_env(**extra: str) -> dict[str, str]:
    """The environment of a build run by ``fixtures/build_driver.py``: this one, with the
    helpers' code hash pinned as in this process (see ``stable_code_hash``), plus ``extra``."""
    from helpers import cube
    return {**os.environ, "SPIEGEL_TEST_CODE_HASH": cube.prepare.code_hash(), **extra}


def start_build(batch: Path, *args: str, env: dict | None = None, stdout=subprocess.PIPE) -> subprocess.Popen:
    """``spiegel build`` with the fixture reports in a subprocess of its own session (so the
    test can signal the whole group), output and errors together to ``stdout``."""
    return subprocess.Popen([sys.executable, str(FIXTURES / "build_driver.py"), str(batch), *args],
                            env=driver_env(**(env or {})), stdout=stdout, stderr=subprocess.STDOUT,
                            text=stdout is subprocess.PIPE, start_new_session=True)


@contextlib.contextmanager
def running_build(batch: Path, *args: str, env: dict | None = None):
    """:func:`start_build` for a ``with`` block; a build still running at its end is killed
    with its whole group (so a failing test leaves no build behind)."""
    proc = start_build(batch, *args, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for_a_done_run(proc: subprocess.Popen, outputs: Path, timeout: float = 240) -> None:
    """Until the build's manifest records a run as done, or the build ends, or ``timeout``."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if done_runs(outputs):
            return
        time.sleep(0.2)


def proc_stats():
    """(pid, state, parent pid, process group, command line) of every process, from /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            state, ppid, pgid = fields[0], int(fields[1]), int(fields[2])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError):   # it ended while we looked
            continue
        yield int(stat.parent.name), state, ppid, pgid, cmdline


class Group:
    """A generated care group: dataset, warehouse, and the quarter the demo reports on."""

    def __init__(self, root: Path, practices: int = 3):
        from helpers.demo import generate
        self.root = root
        self.dataset = root / "demo"
        self.warehouse = root / "warehouse.duckdb"
        generate(self.dataset, practices=practices)
        self.practices = sorted(p.name for p in (self.dataset / "extracts").iterdir())
        self.quarter = None   # known after the first build (latest complete quarter)

    def batch(self, name: str, **values) -> Path:
        base = {"dataset": self.dataset, "warehouse": self.warehouse, "quarters": "latest",
                "practices": "all", "reports": ["his_analyse"], "formats": ["html", "pdf"],
                "executor": "local", "workers": 2, "timeout": 300, "outputs": self.root / f"out-{name}"}
        base.update(values)
        return write_batch(self.root / f"{name}.yaml", **base)


@pytest.fixture(scope="session")
def care_group(tmp_path_factory) -> Group:
    return Group(tmp_path_factory.mktemp("care_group"))


@pytest.fixture(scope="session")
def tiny_group(tmp_path_factory) -> Group:
    return Group(tmp_path_factory.mktemp("tiny_group"))


@pytest.fixture(scope="session", autouse=True)
def stable_code_hash():
    """Other work may edit ``src/helpers`` while these tests run (an editable install): the
    incremental tests are about data, so the helpers' code hash is pinned in the coordinator.
    That a code change reruns everything is tested in tests/unit/test_batch.py."""
    from helpers.cube import prepare
    pinned = prepare.code_hash()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prepare, "code_hash", lambda: pinned)
        yield


@pytest.fixture(scope="module")
def fixture_reports_registered():
    """The test notebooks ``tiny`` and ``tiny_regio`` in the report registry, for one module."""
    fixture_reports.register()
    yield fixture_reports.FIXTURE_REPORTS
    fixture_reports.unregister()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (we are root in CI and here); skipped where mounting is not allowed."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)
