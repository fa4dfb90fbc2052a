"""A batch run's files are renamed into place by the build, between two saves of the manifest
(the entry with a note of the renames to come, then without): a build killed at any moment
leaves no file the manifest does not know of, and the next build completes the noted renames.
Each state a kill can leave is made here by hand, step by step."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from helpers.batch.manifest import Manifest
from helpers.runner.spec import RunResult, RunSpec
from helpers.runner.staging import Staging, commit_staged, record_staged


def _spec(outdir: Path) -> RunSpec:
    files = {"ipynb": str(outdir / "r.ipynb"), "html": str(outdir / "r.html")}
    return RunSpec(name="01000001-r", quarter="2026Q3", report="r", scope="practice", key="01000001",
                   label="Praktijk", notebook="r.ipynb", params={}, formats=["html"], outdir=str(outdir),
                   files=files, partial_path=str(outdir / "r.failed.ipynb"), log_path=str(outdir / "r.log"),
                   cube_path="", cache_key="k", timeout=60, title="r", commit_by_build=True)


def _handed_over(outdir: Path) -> RunResult:
    """What a worker returns in a batch: the run's files staged, not renamed."""
    staging = Staging()
    staging.write("ipynb", outdir / "r.ipynb", "{}")
    staging.write("html", outdir / "r.html", "<html>nieuw</html>")
    extras = outdir / ".extras.tmp-1-ab"
    extras.mkdir()
    (extras / "lijst.csv").write_text("a;b\n")
    staging.dirs.append(extras)
    staging.add("extra", extras / "lijst.csv", outdir / "lijst.csv")
    result = RunResult(name="01000001-r", uid="2026Q3/01000001-r", status="done")
    result.staged = staging.hand_over()
    staging.discard()   # the worker's own clean-up at the end of the run leaves them alone
    return result


def _noted(tmp_path: Path, old_html: str | None = None) -> tuple[Path, RunSpec, list]:
    """A batch run's files handed over and its entry saved with the note of the renames, as
    the build leaves them just before it renames (``old_html``: last quarter's HTML there)."""
    outdir = tmp_path / "2026Q3" / "01000001"
    outdir.mkdir(parents=True)
    if old_html is not None:
        (outdir / "r.html").write_text(old_html)
    spec = _spec(outdir)
    result = _handed_over(outdir)
    staged, result.staged = result.staged, []
    record_staged(result, staged)
    m = Manifest(tmp_path, "2026Q3")
    m.record(spec, result, "demo")
    m.note_commit(spec.name, staged)
    m.save()
    return outdir, spec, staged


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_worker_hands_its_files_over_without_renaming_them(tmp_path):
    result = _handed_over(tmp_path)
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "lijst.csv").exists()
    assert [kind for kind, *_ in result.staged] == ["ipynb", "html", "extra", "dir"]
    assert all(Path(tmp).exists() for _kind, tmp, _final, _rec in result.staged)


def test_the_build_commits_them_and_the_staging_folder_goes(tmp_path):
    result = _handed_over(tmp_path)
    staged = result.staged
    record_staged(result, staged)
    assert sorted(result.outputs) == ["html", "ipynb"] and result.extras[0]["path"].endswith("lijst.csv")
    commit_staged(staged)
    assert (tmp_path / "r.html").read_text() == "<html>nieuw</html>"
    assert (tmp_path / "lijst.csv").read_text() == "a;b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lijst.csv", "r.html", "r.ipynb"]
    assert _sha(tmp_path / "r.html") == result.outputs["html"]["sha256"]


def test_a_build_killed_between_the_note_and_the_renames_is_completed_by_the_next(tmp_path):
    outdir, spec, staged = _noted(tmp_path, old_html="<html>oud</html>")   # last quarter's build there
    commit_staged(staged[:1])   # killed after the first rename
    saved = json.loads((tmp_path / "2026Q3" / "manifest.json").read_text())
    assert [final for _tmp, final in saved["runs"][spec.name]["committing"]] == [
        "01000001/r.ipynb", "01000001/r.html", "01000001/lijst.csv"]
    assert (outdir / "r.html").read_text() == "<html>oud</html>"   # not yet: its temporary is noted

    again = Manifest(tmp_path, "2026Q3")   # the next build, before it removes any temporary
    assert again.complete_commits() == 2
    assert (outdir / "r.html").read_text() == "<html>nieuw</html>"
    entry = json.loads((tmp_path / "2026Q3" / "manifest.json").read_text())["runs"][spec.name]
    assert "committing" not in entry
    for rec in [*entry["outputs"].values(), *entry["extras"]]:
        assert _sha(tmp_path / "2026Q3" / rec["path"]) == rec["sha256"], rec["path"]
    assert Manifest(tmp_path, "2026Q3").complete_commits() == 0   # nothing noted any more


def test_a_build_killed_after_the_renames_leaves_only_the_note(tmp_path):
    outdir, spec, staged = _noted(tmp_path)
    commit_staged(staged)   # killed before the second save
    again = Manifest(tmp_path, "2026Q3")
    assert again.complete_commits() == 0
    assert "committing" not in json.loads((tmp_path / "2026Q3" / "manifest.json").read_text())["runs"][spec.name]


def test_a_refused_rename_names_the_file_and_says_what_was_renamed_before_it(tmp_path):
    result = _handed_over(tmp_path)
    (tmp_path / "r.html").mkdir()   # a folder where the HTML goes: the rename is refused
    (tmp_path / "r.html" / "x").write_text("")
    try:
        commit_staged(result.staged)
    except OSError as exc:
        assert exc.filename == str(tmp_path / "r.html")
        assert [item[0] for item in exc.renamed] == ["ipynb"]
    else:
        raise AssertionError("the rename should have been refused")
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name], "no temporary stays"


def test_a_noted_rename_that_fails_in_the_next_build_makes_the_run_run_again(tmp_path):
    outdir, spec, staged = _noted(tmp_path)   # killed here
    (outdir / "r.html").mkdir()
    (outdir / "r.html" / "x").write_text("")
    again = Manifest(tmp_path, "2026Q3")
    again.complete_commits()   # no traceback: the run is marked to be done again
    entry = json.loads((tmp_path / "2026Q3" / "manifest.json").read_text())["runs"][spec.name]
    assert entry["status"] == "failed" and entry["error"]["stage"] == "interrupted"
    assert "committing" not in entry
    assert not again.up_to_date(spec)


def test_a_ctrl_c_while_a_run_is_recorded_takes_effect_once_entry_and_files_agree():
    import os
    import signal

    import pytest

    from helpers.batch.build import _signals_deferred
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with _signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("renamed")   # the block goes on to its end
            steps.append("saved")
    assert steps == ["renamed", "saved"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_earlier_failures_partial_notebook_goes_only_when_the_build_commits(tmp_path):
    partial = tmp_path / "r.failed.ipynb"
    partial.write_text("{}")
    result = _handed_over(tmp_path)
    result.staged.append(["remove", str(partial), "", {}])   # what a successful run adds
    record_staged(result, result.staged)
    assert sorted(result.outputs) == ["html", "ipynb"] and len(result.extras) == 1
    assert partial.exists(), "the worker leaves it: the build may never commit this run"
    commit_staged(result.staged)
    assert not partial.exists()
    assert (tmp_path / "r.html").exists()
