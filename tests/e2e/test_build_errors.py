"""`spiegel build` against careless input and faults, with real builds of the small test
notebook (``fixtures/tiny.ipynb``) on a care group of its own: one clear line and the right
exit status, never a traceback; an interrupted build leaves no file with a stale hash."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (Group, assert_recorded_hashes, build, counts, manifest, proc_stats, quarter_of, running_build,
                      wait_for_a_done_run, write_batch)
from helpers.demo import edit_first_patient

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fixture_reports_registered")]


@pytest.fixture(scope="module")
def group(tmp_path_factory) -> Group:
    return Group(tmp_path_factory.mktemp("errors_group"))


@pytest.fixture(scope="module")
def built(group):
    """One real build of every practice with a fractional time limit (it used to fail every run)."""
    code, out = build(group.batch("base", reports=["tiny"], formats=["html"], workers=1, timeout="90.5"))
    group.quarter = next(w for w in out.split() if len(w) == 6 and w[4] == "Q")
    return code, out


def _copy(group: Group, name: str) -> Path:
    target = group.root / name
    shutil.copytree(group.dataset, target)
    return target


def _errors(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("spiegel build: ")]


def test_a_fractional_time_limit_is_rounded_up_and_the_runs_work(built, group):
    code, out = built
    assert code == 0, out
    assert counts(out) == {"runs": 3, "done": 3, "skipped": 0, "failed": 0}
    log = (group.root / "out-base" / group.quarter / "logs" / f"{group.practices[0]}-tiny.log").read_text()
    assert "time limit 91s" in log


def _children(pid: int) -> list[tuple[int, str]]:
    return [(child, cmdline.decode(errors="replace")) for child, _, ppid, _, cmdline in proc_stats() if ppid == pid]


@pytest.mark.parametrize("damage", ["missing", "wrong header"])
def test_a_dataset_without_a_usable_register_is_one_line_exit_2(group, damage):
    dataset = _copy(group, f"register-{damage.replace(' ', '-')}")
    register = dataset / "practices.csv"
    if damage == "missing":
        register.unlink()
    else:
        text = register.read_text(encoding="utf-8-sig")
        register.write_text(text.replace("practice_agb", "agb_code", 1), encoding="utf-8")
    batch = write_batch(group.root / "register.yaml", dataset=dataset, warehouse=group.root / "register.duckdb",
                        reports=["tiny"], formats=["html"], workers=1, outputs=group.root / "out-register")
    code, out = build(batch)
    assert code == 2, out
    assert "Traceback" not in out and "BrokenProcessPool" not in out and "AttributeError" not in out
    (line,) = _errors(out)
    assert line.startswith(f"spiegel build: dataset {dataset} refused: practices.csv")
    assert "correct the file and run the build again" in line


@pytest.mark.parametrize("kind", ["local", "dask"])
def test_a_refused_register_survives_the_process_pool_and_dask(group, kind):
    """The ingest runs in a worker: its ContractError must reach the coordinator whole."""
    from helpers.errors import ContractError
    from helpers.runner import DaskExecutor, LocalExecutor
    dataset = group.root / "register-pool"
    if not dataset.exists():
        shutil.copytree(group.dataset, dataset)
        (dataset / "practices.csv").unlink()
    with contextlib.ExitStack() as stack:
        if kind == "dask":
            from distributed import LocalCluster
            cluster = stack.enter_context(LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                                       dashboard_address=":0"))
            ex = stack.enter_context(DaskExecutor(cluster.scheduler_address))
        else:
            ex = stack.enter_context(LocalExecutor(1))
        with pytest.raises(ContractError) as e:
            ex.call("helpers.batch.steps:ingest_task", str(group.root / f"pool-{kind}.duckdb"), str(dataset))
    assert e.value.problems[0].file == "practices.csv"
    assert e.value.subject == f"dataset {dataset}"


def test_a_run_resubmitted_after_a_worker_crash_counts_both_attempts(built, group):
    outputs = group.root / "out-crash"
    batch = group.batch("crash", reports=["tiny"], formats=["html"], workers=1, params={"tiny": {"delay": "3"}})
    with running_build(batch) as proc:
        wait_for_a_done_run(proc, outputs)
        workers = [pid for pid, cmd in _children(proc.pid) if "spawn_main" in cmd]
        assert len(workers) == 1, _children(proc.pid)
        os.kill(workers[0], signal.SIGKILL)   # the worker dies halfway through the second run
        text, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, text
    runs = manifest(outputs, quarter_of(outputs))["runs"]
    assert all(r["status"] == "done" for r in runs.values())
    assert max(r["attempts"] for r in runs.values()) == 2, {n: r["attempts"] for n, r in runs.items()}


def test_an_unknown_practice_is_found_before_the_dataset_is_ingested(group):
    warehouse = group.root / "unknown.duckdb"
    batch = write_batch(group.root / "unknown.yaml", dataset=group.dataset, warehouse=warehouse,
                        reports=["tiny"], formats=["html"], outputs=group.root / "out-unknown")
    code, out = build(batch, "--practice", "99999999")
    assert code == 2, out
    (line,) = _errors(out)
    assert line.startswith(f"spiegel build: practice 99999999 is neither in {group.dataset / 'practices.csv'} "
                           "nor in the warehouse unknown.duckdb")
    assert "ingest " not in out and not warehouse.exists(), "nothing was ingested"


def test_a_quarter_after_the_extraction_date_is_refused(built, group):
    code, out = build(group.root / "base.yaml", "--quarter", "2030Q1")
    assert code == 2, out
    (line,) = _errors(out)
    assert line.startswith(f"spiegel build: {group.root / 'base.yaml'}, quarters: found '2030Q1', expected a "
                           "quarter complete at the newest extraction date")
    assert f"the latest quarter possible is {group.quarter}" in line
    assert not (group.root / "out-base" / "2030Q1").exists()


def test_the_resolved_outputs_folder_is_the_first_line(built, group):
    code, out = build(group.root / "base.yaml", "--outputs", str(group.root / "sub" / ".." / "out-base"))
    assert code == 0, out
    assert out.splitlines()[0] == (f"spiegel build base: outputs {group.root / 'out-base'}, "
                                   f"warehouse {group.warehouse}")


def test_a_read_only_outputs_folder_is_one_line_exit_2(group):
    folder = group.root / "readonly"
    folder.mkdir()
    batch = write_batch(group.root / "readonly.yaml", warehouse=group.warehouse, outputs=folder / "out")
    command = [sys.executable, "-m", "helpers.cli", "build", str(batch)]
    if os.geteuid() == 0:   # root writes through mode bits: make it a read-only mount instead
        if not shutil.which("unshare") or subprocess.run(["unshare", "-m", "true"]).returncode:
            pytest.skip("running as root without mount namespaces: no way to make a read-only folder")
        script = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && exec \"$@\""
        command = ["unshare", "-m", "sh", "-c", script, "sh", *command]
    else:
        folder.chmod(0o555)
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"spiegel build: outputs folder {folder / 'out'} is not writable "
        f"({'Read-only file system' if os.geteuid() == 0 else 'Permission denied'}): "
        "choose another folder with --outputs or make this one writable"]


def test_a_refused_reload_keeps_the_previous_report_and_says_why(group):
    dataset = _copy(group, "reload")
    warehouse = group.root / "reload.duckdb"
    outputs = group.root / "out-reload"
    batch = write_batch(group.root / "reload.yaml", dataset=dataset, warehouse=warehouse, reports=["tiny"],
                        formats=["html"], workers=1, outputs=outputs)
    code, out = build(batch)
    assert code == 0, out
    agb = group.practices[1]

    def break_birth_year(line):
        cols = line.split(";")
        cols[1] = "19x5"
        return ";".join(cols)
    original = edit_first_patient(dataset, agb, break_birth_year)
    code, out = build(batch)
    assert code == 1, "a refused practice is exit status 1"
    assert counts(out) == {"runs": 3, "done": 0, "skipped": 3, "failed": 0}, "its previous report stays"
    where = f"extracts/{agb}/patients.csv, line 2, column birth_year: found '…', expected"
    assert f"  practice {agb}: new delivery refused ({where}" in out
    assert "its report is built from the previous delivery still in the warehouse (loaded " in out
    q = quarter_of(outputs)
    entry = manifest(outputs, q)["runs"][f"{agb}-tiny"]
    assert entry["status"] == "done" and (outputs / q / entry["outputs"]["html"]["path"]).exists()
    stale = entry["stale_data"]
    assert stale["reason"] == "refused" and stale["first_problem"].startswith(where)
    assert stale["note_nl"].startswith("Gebaseerd op de vorige levering (geladen ")
    # rebuilt (--force) from the intact data, the report itself says which delivery it shows
    code, out = build(batch, "--force")
    assert code == 1 and counts(out)["done"] == 3, out
    assert "vorige levering (de nieuwe is geweigerd)" in (outputs / q / agb / "tiny.html").read_text()
    # the delivery is fixed: the mark goes
    (dataset / "extracts" / agb / "patients.csv").write_bytes(original)
    code, out = build(batch)
    assert code == 0, out
    assert "stale_data" not in manifest(outputs, q)["runs"][f"{agb}-tiny"]


def test_a_busy_warehouse_waits_then_fails_in_one_line_not_exit_1(built, group):
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(120)", str(group.warehouse)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        os.environ["SPIEGEL_LOCK_WAIT"] = "1"
        code, out = build(group.root / "base.yaml", "--force")
    finally:
        os.environ.pop("SPIEGEL_LOCK_WAIT", None)
        holder.kill()
        holder.wait()
    assert code == 3, out
    (line,) = _errors(out)
    assert line.startswith(f"spiegel build: warehouse {group.warehouse} is in use by ")
    assert "Traceback" not in out


def _alive_in_group(pgid: int, wait: float = 5) -> list[str]:
    """Processes of the group that still run (zombies are dead: here nobody may reap them)."""
    deadline = time.time() + wait
    while True:
        alive = [cmdline.replace(b"\0", b" ").decode()[:120] for _, state, _, group, cmdline in proc_stats()
                 if group == pgid and state not in ("Z", "X")]
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.2)


def test_sigterm_stops_the_build_like_ctrl_c_and_the_rerun_completes_it(built, group):
    outputs = group.root / "out-sigterm"
    batch = group.batch("sigterm", reports=["tiny"], formats=["html"], workers=1, params={"tiny": {"delay": "2"}})
    with running_build(batch, "--force") as proc:
        wait_for_a_done_run(proc, outputs)
        assert proc.poll() is None, proc.stdout.read()
        proc.send_signal(signal.SIGTERM)    # what `timeout`, CI cancellation and systemd send
        text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert _alive_in_group(proc.pid) == [], "workers, kernel factory and kernels ended with the build"
    assert "interrupted; finished runs are kept" in text
    assert "run the same command without --force to resume" in text
    q = quarter_of(outputs)
    assert_recorded_hashes(outputs, q)
    page = (outputs / q / "index.html").read_text()
    for href in re.findall(r'href="([^"]+)"', page):
        assert (outputs / q / href).exists(), f"the portal links {href}, which is not there"
    code, out = build(batch)
    assert code == 0, out
    c = counts(out)
    assert c["skipped"] >= 1 and c["done"] + c["skipped"] == 3
    assert_recorded_hashes(outputs, q)
