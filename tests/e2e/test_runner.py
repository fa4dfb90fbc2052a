"""The worker on its own (in this process): a kernel that fails to start is retried, the
time limit stops a run, and the worker goes on with the next run."""

from __future__ import annotations

import json
from pathlib import Path

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


def _spec(group, quarter, cube, out: Path, agb: str, timeout: float = 120, delay: str = "0") -> runner.RunSpec:
    d = out / quarter / agb
    return runner.RunSpec(
        name=f"{agb}-tiny", quarter=quarter, report="tiny", scope="practice", key=agb, label=agb,
        notebook=str(FIXTURES / "tiny.ipynb"),
        params={"practice_agb": agb, "quarter": quarter, "warehouse": str(group.warehouse),
                "cube_path": str(cube), "fail_for": "", "delay": delay},
        formats=["html"], outdir=str(d), files={"ipynb": str(d / "tiny.ipynb"), "html": str(d / "tiny.html")},
        partial_path=str(d / "tiny.failed.ipynb"), log_path=str(out / quarter / "logs" / f"{agb}-tiny.log"),
        cube_path=str(cube), cache_key="k" * 64, timeout=timeout, title="Tiny report")


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
    assert slow.timings["total"] < 60
    partial = Path(slow.error["partial_notebook"])
    assert partial.exists() and json.loads(partial.read_text())["cells"]
    assert not (tmp_path / quarter / group.practices[1] / "tiny.html").exists()
    after = state.run(_spec(group, quarter, cube, tmp_path, group.practices[2]))
    assert after.status == "done", after.error
    assert "Tiny report" in (tmp_path / quarter / group.practices[2] / "tiny.html").read_text()
