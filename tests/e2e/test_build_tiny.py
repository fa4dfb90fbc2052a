"""The batch's failure handling, regions, resume, no-browser and Dask paths, with two small
test notebooks (``fixtures/tiny.ipynb``, ``fixtures/tiny_regio.ipynb``) on a demo care group."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import FIXTURES, build, counts, manifest
from helpers.demo import edit_first_patient

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fixture_reports_registered")]


def _quarter(out: str) -> str:
    import re
    return re.search(r"quarters (\d{4}Q[1-4])", out).group(1)


def test_a_failing_cell_in_one_practice_leaves_the_others_complete(tiny_group):
    bad = tiny_group.practices[1]
    batch = tiny_group.batch("fail", reports=["tiny", "tiny_regio"], formats=["html"],
                             params={"tiny": {"fail_for": bad}})
    code, out = build(batch)
    assert code == 1, out
    q = _quarter(out)
    outputs = tiny_group.root / "out-fail"
    c = counts(out)
    assert c["failed"] == 1 and c["done"] == c["runs"] - 1 and c["runs"] == 3 + 2   # 3 practices, 2 regions
    # the summary names practice, report, the failing cell (index and first line), the error, the partial notebook
    failures = out[out.index("failures:"):]
    assert f"{q} {bad}" in failures and "report tiny" in failures
    assert "cell 3: time.sleep(float(delay))" in failures
    assert f"ValueError: planted failure for practice {bad}" in failures
    partial = outputs / q / bad / "tiny.failed.ipynb"
    assert "partial notebook:" in failures and partial.exists()
    nb = json.loads(partial.read_text())
    assert any(o.get("ename") == "ValueError" for c in nb["cells"] for o in c.get("outputs", []))
    assert not (outputs / q / bad / "tiny.html").exists(), "no report for the failed run"
    for agb in tiny_group.practices:
        if agb != bad:
            assert "Tiny report" in (outputs / q / agb / "tiny.html").read_text()
    regions = list((outputs / q / "regio").iterdir())
    assert len(regions) == 2 and all((r / "tiny_regio.html").exists() for r in regions)
    entry = manifest(outputs, q)["runs"][f"{bad}-tiny"]
    assert entry["status"] == "failed"
    assert entry["error"]["cell_index"] == 3 and entry["error"]["ename"] == "ValueError"
    assert entry["partial_notebook"] == f"{bad}/tiny.failed.ipynb"
    log = (outputs / q / "logs" / f"{bad}-tiny.log").read_text()
    assert "raised ValueError" in log
    # fixed: the failed run reruns and its partial notebook goes; the others are skipped
    batch = tiny_group.batch("fail", reports=["tiny", "tiny_regio"], formats=["html"])
    code, out = build(batch)
    assert code == 0, out
    assert counts(out)["done"] == 3 and counts(out)["skipped"] == 2   # params changed: all tiny runs rerun
    assert not partial.exists()


def test_interrupted_batch_leaves_no_half_report_and_resumes(tiny_group):
    batch = tiny_group.batch("resume", reports=["tiny"], formats=["html"], workers=1,
                             params={"tiny": {"delay": "2"}})
    outputs = tiny_group.root / "out-resume"
    from helpers import cube
    env = {**os.environ, "SPIEGEL_TEST_CODE_HASH": cube.prepare.code_hash()}
    proc = subprocess.Popen([sys.executable, str(FIXTURES / "build_driver.py"), str(batch)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        done = 0
        while time.time() < deadline and proc.poll() is None:
            files = list(outputs.glob("*/manifest.json"))
            if files:
                runs = json.loads(files[0].read_text())["runs"]
                done = sum(r["status"] == "done" for r in runs.values())
                if done >= 1:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read().decode()
        assert done >= 1
        os.killpg(proc.pid, signal.SIGKILL)   # no clean-up at all: power cut
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    q = files[0].parent.name
    for html in outputs.glob(f"{q}/*/tiny.html"):
        assert html.read_text().rstrip().endswith("</html>"), "a report is complete or absent"
    code, out = build(batch)
    assert code == 0, out
    c = counts(out)
    assert c["skipped"] >= 1 and c["done"] + c["skipped"] == 3
    assert not list(outputs.rglob(".*.tmp-*")), "the rerun removed the interrupted run's temporary files"
    for agb in tiny_group.practices:
        assert (outputs / q / agb / "tiny.html").exists()


def test_pdf_without_a_browser_fails_with_install_hint_and_html_completes(tiny_group, monkeypatch):
    monkeypatch.setenv("SPIEGEL_CHROMIUM", "/nonexistent/chromium")
    agb = tiny_group.practices[0]
    batch = tiny_group.batch("nobrowser", reports=["tiny"], formats=["html", "pdf"], practices=[agb], workers=1)
    code, out = build(batch)
    assert code == 1, out
    assert "stage pdf" in out and "apt-get install chromium" in out
    q = _quarter(out)
    outputs = tiny_group.root / "out-nobrowser"
    assert (outputs / q / agb / "tiny.html").exists()
    assert not (outputs / q / agb / "tiny.pdf").exists()
    # the browser is there again: the next build prints the PDF without executing the notebook again
    monkeypatch.delenv("SPIEGEL_CHROMIUM")
    code, out = build(batch)
    assert code == 0, out
    assert "1 to run (1 only rendered again from their executed notebook)" in out
    assert (outputs / q / agb / "tiny.pdf").exists()
    entry = manifest(outputs, q)["runs"][f"{agb}-tiny"]
    assert entry["status"] == "done" and "execute" not in entry["timings_s"]
    assert "not executed again" in (outputs / q / "logs" / f"{agb}-tiny.log").read_text()


def test_dask_executor_on_a_local_cluster(tiny_group):
    from distributed import LocalCluster
    batch = tiny_group.batch("dask", reports=["tiny", "tiny_regio"], formats=["html"])
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        code, out = build(batch, "--executor", "dask", "--scheduler", cluster.scheduler_address)
    assert code == 0, out
    assert counts(out) == {"runs": 5, "done": 5, "skipped": 0, "failed": 0}
    q = _quarter(out)
    runs = manifest(tiny_group.root / "out-dask", q)["runs"]
    assert all(r["status"] == "done" for r in runs.values())


def test_changing_one_practice_reruns_it_and_its_region_only(tiny_group):
    batch = tiny_group.batch("regions", reports=["tiny", "tiny_regio"], formats=["html"])
    code, out = build(batch)
    assert code == 0, out
    q = _quarter(out)
    outputs = tiny_group.root / "out-regions"
    runs = manifest(outputs, q)["runs"]
    agb = tiny_group.practices[0]
    region_run = next(n for n, r in runs.items() if r["scope"] == "region"
                      and r["key"] == _region_of(tiny_group, agb))
    before = {n: r["finished_at"] for n, r in runs.items()}
    edit_first_patient(tiny_group.dataset, agb)
    code, out = build(batch)
    assert code == 0, out
    after = {n: r["finished_at"] for n, r in manifest(outputs, q)["runs"].items()}
    assert {n for n in after if after[n] != before[n]} == {f"{agb}-tiny", region_run}
    assert counts(out) == {"runs": 5, "done": 2, "skipped": 3, "failed": 0}


def _region_of(group, agb) -> str:
    import duckdb
    con = duckdb.connect(str(group.warehouse), read_only=True)
    try:
        return con.execute("SELECT region FROM practices WHERE practice_agb = ?", [agb]).fetchone()[0]
    finally:
        con.close()


def test_two_quarters_build_every_run_of_each_and_rebuild_nothing(tiny_group):
    """`quarters: latest 2`: a run name repeats in each quarter; every run of both quarters is
    built, recorded in its own quarter's manifest and in the summary, and a rebuild skips all."""
    batch = tiny_group.batch("two", reports=["tiny", "tiny_regio"], formats=["html"], quarters="latest 2")
    code, out = build(batch)
    assert code == 0, out
    c = counts(out)
    assert c["runs"] == 2 * (3 + 2) and c["done"] == c["runs"], out
    import re
    q1, q2 = re.search(r"quarters (\d{4}Q[1-4]), (\d{4}Q[1-4])", out).groups()
    outputs = tiny_group.root / "out-two"
    for q in (q1, q2):
        runs = manifest(outputs, q)["runs"]
        assert len(runs) == 5 and {r["quarter"] for r in runs.values()} == {q}
        assert all(r["status"] == "done" for r in runs.values())
        for agb in tiny_group.practices:
            assert f"{q} {agb}" in out                     # the progress names each run's own quarter
            assert (outputs / q / agb / "tiny.html").exists()
    code, out = build(batch)
    assert code == 0 and counts(out)["skipped"] == 10, out
