"""Mistakes a user can make with the input commands: one line naming the thing and the fix,
the exit status of helpers.errors.EXIT_CODES, never a traceback (issue 7, items 7 and 15)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _datasets import build
from helpers import cli
from helpers.errors import EXIT_CODES, SpiegelError, WarehouseBusyError
from helpers.warehouse import Warehouse

SPIEGEL = [sys.executable, "-m", "helpers.cli"]


def run(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_line(err: str, *names: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert str(name) in lines[0], (name, err)
    return lines[0]


@pytest.fixture
def dataset(tmp_path) -> Path:
    return build(tmp_path)


@pytest.fixture
def loaded(tmp_path, dataset) -> Path:
    path = tmp_path / "wh.duckdb"
    assert Warehouse(path).ingest(dataset).ok
    return path


class LockHolder:
    """A second process with a write connection open on the warehouse, until release()."""

    def __init__(self, path: Path):
        code = ("import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('held', flush=True); "
                "sys.stdin.readline(); con.close()")
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
        self.proc.wait(timeout=60)


@pytest.fixture
def holder(loaded):
    h = LockHolder(loaded)
    yield h
    h.release()


# ------------------------------------------------------------------------------ --warehouse


@pytest.mark.parametrize("command", ["ingest", "prepare"])
def test_warehouse_that_is_a_folder(capsys, tmp_path, dataset, command):
    folder = tmp_path / "wh"
    folder.mkdir()
    args = [dataset] if command == "ingest" else ["2025Q1"]
    code, err = run(capsys, command, *args, "--warehouse", folder)
    assert code == 2
    one_line(err, folder, "is a folder, not a DuckDB file", folder / "warehouse.duckdb")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("command", ["ingest", "prepare"])
@pytest.mark.parametrize("content", [b"practice_agb;name\n01000001;De Linde\n", b""], ids=["csv", "empty"])
def test_warehouse_that_is_not_duckdb(capsys, tmp_path, dataset, command, content):
    path = tmp_path / "wh.duckdb"
    path.write_bytes(content)
    args = [dataset] if command == "ingest" else ["2025Q1"]
    code, err = run(capsys, command, *args, "--warehouse", path)
    assert code == 2
    one_line(err, path, "is not a DuckDB database")
    assert path.read_bytes() == content


def test_prepare_on_a_duckdb_file_without_the_warehouse_tables(capsys, tmp_path):
    import duckdb
    path = tmp_path / "other.duckdb"
    duckdb.connect(str(path)).close()
    code, err = run(capsys, "prepare", "2025Q1", "--warehouse", path)
    assert code == 2
    one_line(err, path, "is empty", "spiegel ingest")


def test_warehouse_in_a_folder_that_cannot_be_made(capsys, tmp_path, dataset):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run(capsys, "ingest", dataset, "--warehouse", blocker / "wh.duckdb")
    assert code == 2
    one_line(err, blocker / "wh.duckdb", "cannot create its folder")


@pytest.mark.parametrize("command", ["ingest", "prepare"])
def test_busy_warehouse_waits_then_names_the_holder(capsys, monkeypatch, dataset, loaded, holder, command):
    monkeypatch.setenv("SPIEGEL_LOCK_WAIT", "0.3")
    args = [dataset] if command == "ingest" else ["2025Q1"]
    code, err = run(capsys, command, *args, "--warehouse", loaded)
    assert code == EXIT_CODES[WarehouseBusyError] == 3
    waiting, failed = err.strip().splitlines()
    assert f"in use by process {holder.proc.pid}" in waiting and "waiting up to 0.3 s" in waiting
    assert failed.startswith(f"spiegel {command}: error: warehouse {loaded} is in use by process {holder.proc.pid}")
    assert "SPIEGEL_LOCK_WAIT" in failed and "Traceback" not in err


def test_busy_warehouse_for_the_build(loaded, holder):
    """The build reads the warehouse through the same class: it gets the same error to map."""
    with pytest.raises(WarehouseBusyError) as caught:
        Warehouse(loaded, lock_wait=0).practice_hashes()
    assert caught.value.holder.startswith(f"process {holder.proc.pid} (")
    assert caught.value.path == str(loaded)


def test_busy_warehouse_is_used_once_the_holder_is_done(tmp_path, dataset, loaded):
    """Two ingests at once: the second waits and then loads."""
    holder = LockHolder(loaded)
    env = {**os.environ, "SPIEGEL_LOCK_WAIT": "600"}
    second = subprocess.Popen([*SPIEGEL, "ingest", str(dataset), "--warehouse", str(loaded), "--force"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        waiting = second.stderr.readline()
        assert f"in use by process {holder.proc.pid}" in waiting
    finally:
        holder.release()
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "ingest: 2 loaded" in out and err == ""


@pytest.mark.parametrize("value", ["abc", "-1", "nan"])
def test_bad_lock_wait_setting(capsys, monkeypatch, dataset, tmp_path, value):
    monkeypatch.setenv("SPIEGEL_LOCK_WAIT", value)
    code, err = run(capsys, "ingest", dataset, "--warehouse", tmp_path / "wh.duckdb")
    assert code == 2
    one_line(err, f"SPIEGEL_LOCK_WAIT={value!r}", "number of seconds")


def test_dataset_that_is_a_file(capsys, tmp_path):
    path = tmp_path / "practices.csv"
    path.write_text("practice_agb\n")
    code, err = run(capsys, "ingest", path, "--warehouse", tmp_path / "wh.duckdb")
    assert code == 2
    one_line(err, path, "is not a folder")


def test_warehouse_class_refuses_a_folder(tmp_path):
    with pytest.raises(SpiegelError, match="is a folder, not a DuckDB file"):
        Warehouse(tmp_path).practice_hashes()


# ------------------------------------------------------------------------------ demo-data


@pytest.mark.parametrize("args,names", [
    (["--seed", "-1"], ["--seed: found '-1'", "from 0 on"]),
    (["--extraction-date", "1850-01-01"], ["--extraction-date: found '1850-01-01'", "1999-01-01 to 2099-12-31"]),
    (["--extraction-date", "2101-01-01"], ["--extraction-date: found '2101-01-01'", "1999-01-01 to 2099-12-31"]),
    (["--extraction-date", "2026-13-01"], ["--extraction-date: found '2026-13-01'", "YYYY-MM-DD"]),
    (["--practices", "0"], ["--practices: found '0'", "from 1 to 2000"]),
    (["--regions", "0"], ["--regions: found '0'", "from 1 to --practices (1)"]),
    (["--practices", "2", "--regions", "3"], ["--regions: found '3'", "from 1 to --practices (2)"]),
], ids=["seed", "1850", "2101", "not-a-date", "practices-0", "regions-0", "regions-above-practices"])
def test_demo_data_values(capsys, tmp_path, args, names):
    out = tmp_path / "demo"
    code, err = run(capsys, "demo-data", "--out", out, "--practices", "1", *args)
    assert code == 2
    one_line(err, *names)
    assert list(tmp_path.iterdir()) == []


def test_demo_data_unwritable_out(capsys):
    code, err = run(capsys, "demo-data", "--out", "/proc/x", "--practices", "1")
    assert code == 2
    one_line(err, "/proc/x", "cannot write the demo dataset", "--out")
    assert not Path("/proc/x").exists()


def test_demo_data_out_is_a_file(capsys, tmp_path):
    path = tmp_path / "afile"
    path.write_text("keep")
    code, err = run(capsys, "demo-data", "--out", path, "--practices", "1")
    assert code == 2
    one_line(err, path, "is a file", "--force")
    assert path.read_text() == "keep"


def test_help_lists_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 done; 1 done, but a practice was refused" in out and "3 the warehouse is busy" in out


def test_build_with_a_bad_batch_file_is_a_user_error(capsys, tmp_path):
    batch = tmp_path / "b.yaml"
    batch.write_text(f"quarters: 2026Q9\noutputs: {tmp_path / 'out'}\n")
    code = cli.main(["build", str(batch)])
    err = capsys.readouterr().err
    assert code == 2 == EXIT_CODES[SpiegelError]
    assert one_line(err, batch, "quarters: found '2026Q9', expected a quarter").startswith("spiegel build: ")
    assert not (tmp_path / "out").exists()


def test_build_help_lists_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        cli.main(["build", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "2 a user error" in out and "1 done, but a practice was refused or a run failed" in out
    assert "130 interrupted" in out
