"""helpers.atomic: a file or folder appears complete under its final name or not at all, and
clean_stale removes exactly the temporaries whose writer is gone."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from helpers import atomic
from helpers.atomic import atomic_dir, atomic_file, clean_stale, temp_path, temporary_pid, write_atomic

DEAD = 999_999_999  # above any pid_max: a writer that is gone


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_one_naming_scheme_beside_the_final_file():
    a, b = temp_path(Path("out/r/his_analyse.html")), temp_path(Path("out/r/his_analyse.html"))
    assert a != b  # two writers in one process never share a temporary
    for p in (a, b):
        assert p.parent == Path("out/r") and p.suffix == ".html"
        assert p.name.startswith(".his_analyse.tmp-") and temporary_pid(p.name) == os.getpid()
    assert temporary_pid(temp_path(Path("cube/2026Q3")).name) == os.getpid()  # folders too


@pytest.mark.parametrize("data", ["tekst met ë", b"\x00\x01bytes"])
def test_write_atomic_writes_and_replaces(tmp_path, data):
    target = tmp_path / "sub" / "f.txt"
    write_atomic(target, "old")
    write_atomic(target, data)
    assert target.read_bytes() == (data.encode() if isinstance(data, str) else data)
    assert names(target.parent) == ["f.txt"]


def test_write_atomic_with_fsync(tmp_path):
    atomic.write_text(tmp_path / "state.json", "{}", fsync=True)
    atomic.write_bytes(tmp_path / "b.bin", b"1", fsync=True)
    assert names(tmp_path) == ["b.bin", "state.json"]


def test_a_write_error_leaves_no_temporary_and_names_the_final_file(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    write_atomic(target, "previous")
    real_open = open

    class Full:
        def __init__(self, path):
            self.f = real_open(path, "wb")

        def write(self, data):
            self.f.write(data[:1])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(atomic, "open", lambda path, mode="r": Full(path), raising=False)
    with pytest.raises(OSError) as err:
        write_atomic(target, "new")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert names(tmp_path) == ["report.html"] and target.read_text() == "previous"


def test_a_failed_rename_leaves_no_temporary(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError) as err:
        write_atomic(tmp_path / "a.txt", "x")
    assert err.value.filename == str(tmp_path / "a.txt") and names(tmp_path) == []


def test_atomic_file_renames_on_success_and_removes_on_error(tmp_path):
    target = tmp_path / "werklijst.csv"
    with atomic_file(target) as tmp:
        assert tmp.parent == tmp_path and temporary_pid(tmp.name) == os.getpid()
        tmp.write_text("a;b\n")
        assert not target.exists()  # not visible before the block ends
    assert target.read_text() == "a;b\n"
    with pytest.raises(ValueError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise ValueError("stopped")
    assert target.read_text() == "a;b\n" and names(tmp_path) == ["werklijst.csv"]
    with pytest.raises(FileNotFoundError):
        with atomic_file(tmp_path / "never.csv"):
            pass  # nothing written: no empty file appears
    assert names(tmp_path) == ["werklijst.csv"]


def test_atomic_dir_replaces_a_folder_as_a_whole(tmp_path):
    target = tmp_path / "2026Q3"
    with atomic_dir(target) as stage:
        (stage / "a.parquet").write_bytes(b"1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as stage:
            (stage / "b.parquet").write_bytes(b"2")
            raise RuntimeError("prepare failed")
    assert names(target) == ["a.parquet"] and names(tmp_path) == ["2026Q3"]  # old kept, stage gone
    with atomic_dir(target) as stage:
        (stage / "c.parquet").write_bytes(b"3")
    assert names(target) == ["c.parquet"] and names(tmp_path) == ["2026Q3"]
    with pytest.raises(FileExistsError):
        with atomic_dir(target, replace=False) as stage:
            (stage / "d.parquet").write_bytes(b"4")
    assert names(target) == ["c.parquet"] and names(tmp_path) == ["2026Q3"]


def test_clean_stale_removes_only_what_a_gone_writer_left(tmp_path):
    out = tmp_path / "2026Q3" / "01000001"
    out.mkdir(parents=True)
    keep = ["his_analyse.html", ".ipynb_checkpoints", ".notes.tmp-old",
            f".his_analyse.tmp-{os.getpid()}-1a2b.pdf",   # this process may still be writing
            ".live.tmp-1-0.html"]                         # pid 1 is alive
    gone = [f".his_analyse.tmp-{DEAD}-1a2b.html",          # this scheme
            f".index.tmp-{DEAD}.html",                     # portal/render's former scheme
            f".werklijst_dm.csv.tmp-{DEAD}"]               # worklists' former scheme
    for n in keep + gone:
        (out / n).write_text("x") if n != ".ipynb_checkpoints" else (out / n).mkdir()
    stage = tmp_path / f".2026Q4.tmp-{DEAD}"                 # a cube staging folder, one level up
    stage.mkdir()
    (stage / "findings.parquet").write_bytes(b"half")
    assert clean_stale(tmp_path) == 4
    assert names(out) == sorted(keep) and names(tmp_path) == ["2026Q3"]
    assert clean_stale(tmp_path) == 0


def test_clean_stale_with_pids_non_recursive_and_everyone(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    mine = f".a.tmp-{os.getpid()}-ff.html"
    for folder in (tmp_path, sub):
        (folder / mine).write_text("x")
        (folder / ".b.tmp-1-0.html").write_text("x")
    (tmp_path / ".extras-tmp-x").mkdir()                     # an older runner's staging folder
    assert clean_stale(tmp_path, pids={os.getpid()}, recursive=False) == 1
    assert names(tmp_path) == [".b.tmp-1-0.html", ".extras-tmp-x", "sub"] and mine in names(sub)
    assert clean_stale(tmp_path, everyone=True) == 4        # the build, under its lock, removes all
    assert names(tmp_path) == ["sub"] and names(sub) == []
    assert clean_stale(tmp_path / "missing") == 0


def test_write_temporary_stages_without_renaming_and_cleans_up_on_error(tmp_path, monkeypatch):
    final = tmp_path / "his_analyse.ipynb"
    tmp = atomic.write_temporary(final, "{}")
    assert tmp.read_text() == "{}" and not final.exists() and temporary_pid(tmp.name) == os.getpid()
    tmp.unlink()

    class Full:
        def __init__(self, path):
            self.f = open(path, "wb")

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(atomic, "open", lambda path, mode="r": Full(path), raising=False)
    with pytest.raises(OSError) as err:
        atomic.write_temporary(final, b"x")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(final)
    assert names(tmp_path) == []


def test_pid_alive_and_remove_quietly(tmp_path):
    assert atomic.pid_alive(os.getpid()) and not atomic.pid_alive(DEAD)
    assert not atomic.pid_alive(None) and not atomic.pid_alive(0)
    f = tmp_path / "x"
    f.write_text("x")
    atomic.remove_quietly(f)
    atomic.remove_quietly(f)   # already gone: no error
    assert names(tmp_path) == []
