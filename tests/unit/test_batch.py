"""Batch files, the sweep and the cache keys: fast, no kernel, no browser."""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import batch as B
from helpers.errors import ParameterError
from helpers.reports import COMMON, REPORTS, Param, ReportSpec


def _parse(text: str, tmp_path: Path, *argv: str) -> B.Batch:
    f = tmp_path / "b.yaml"
    f.write_text(text)
    parser = argparse.ArgumentParser()
    B.add_build_arguments(parser)
    return B.load_batch(f, parser.parse_args([str(f), *argv]))


def _problems(text: str, tmp_path: Path, *argv: str) -> list[str]:
    with pytest.raises(ParameterError) as e:
        _parse(text, tmp_path, *argv)
    return str(e.value).splitlines()


# -- parsing --------------------------------------------------------------------------


def test_demo_batch_file_parses():
    b, problems = B.parse_batch(B.load_batch_file(B.PARAMETERS_DIR / "demo.yaml"), "demo.yaml")
    assert problems == []
    assert b.quarters is None and b.practices is None
    assert b.reports == ["his_analyse"] and b.formats == ["html", "pdf"]
    assert b.executor == "local" and b.dataset.name == "demo" and b.warehouse.name == "warehouse.duckdb"


def test_values_are_parsed_explicitly(tmp_path):
    b = _parse("quarters: [2025q2, 2025-Q3]\npractices: [01000001, '01000002']\nreports: his_analyse\n"
               "formats: html\nworkers: 3\ntimeout: 15m\ningest: no\n", tmp_path)
    assert b.quarters == ["2025Q2", "2025Q3"]
    assert b.practices == ["01000001", "01000002"], "an unquoted AGB stays text, not an octal number"
    assert b.formats == ["html"] and b.workers == 3 and b.timeout == 900 and b.ingest is False


def test_every_problem_is_one_line_and_all_are_reported(tmp_path):
    lines = _problems("quarters: [2026Q5, 2025-06-30]\npractices: [123]\nreports: [his_analyse, nope]\n"
                      "formats: [html, docx]\nexecutor: slurm\nworkers: -1\ntimeout: soon\ncolour: blue\n", tmp_path)
    text = "\n".join(lines)
    assert len(lines) == 9, text
    assert "unknown key 'colour'" in text
    assert "'2026Q5' is not a quarter" in text
    assert "'2025-06-30' is a date, not a quarter" in text
    assert "practice '123' is not an AGB code" in text
    assert "report 'nope' is unknown; choose from his_analyse" in text
    assert "format 'docx' is unknown" in text
    assert "'slurm' is unknown" in text and "workers '-1'" in text and "'soon' is not a time limit" in text


def test_command_line_overrides_the_file(tmp_path):
    b = _parse("quarters: latest\npractices: all\nformats: [html, pdf]\n", tmp_path,
               "--practice", "01000001", "--practice", "01000002", "--quarter", "2025Q4",
               "--format", "html", "--workers", "1", "--force", "--timeout", "60", "--outputs", str(tmp_path / "o"))
    assert b.practices == ["01000001", "01000002"] and b.quarters == ["2025Q4"]
    assert b.formats == ["html"] and b.workers == 1 and b.force and b.timeout == 60
    assert b.outputs == (tmp_path / "o").resolve()


def test_bad_overrides_are_refused(tmp_path):
    text = "\n".join(_problems("{}", tmp_path, "--quarter", "Q3", "--report", "x", "--executor", "dask"))
    assert "--quarter: quarter 'Q3'" in text and "--report: report 'x'" in text
    assert "executor dask needs a scheduler" in text


def test_missing_dataset_and_bad_yaml(tmp_path):
    assert "does not exist" in _problems(f"dataset: {tmp_path / 'nope'}\n", tmp_path)[0]
    assert "not valid YAML" in _problems("quarters: [2025Q2\n", tmp_path)[0]
    with pytest.raises(ParameterError, match="does not exist"):
        B.load_batch(tmp_path / "missing.yaml")


def test_extra_notebook_parameters_are_checked(tmp_path):
    b = _parse("params: {his_analyse: {}}\n", tmp_path)
    assert b.params == {}
    text = "\n".join(_problems("params: {his_analyse: {colour: red, practice_agb: '01000001'}, nope: {}}\n", tmp_path))
    assert "unknown parameter 'colour'" in text
    assert "'practice_agb' is set by the sweep" in text
    assert "report 'nope' is unknown" in text


def test_run_build_refuses_before_anything_runs(tmp_path, capsys):
    f = tmp_path / "b.yaml"
    f.write_text(f"quarters: 2026Q9\npractices: [1]\noutputs: {tmp_path / 'out'}\n")
    parser = argparse.ArgumentParser()
    B.add_build_arguments(parser)
    assert B.run_build(parser.parse_args([str(f)])) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("spiegel build: ") for line in err)
    assert not (tmp_path / "out").exists(), "nothing ran, nothing written"


# -- cache keys ----------------------------------------------------------------------------


BASE = dict(notebook_hash="nb", params={"practice_agb": "01000001", "quarter": "2025Q2"}, data_hash="d1",
            parameters_hash="p", code_hash="c", environment={"python": "3.11", "packages": {"pandas": "2.2"}},
            formats=["html"])


@pytest.mark.parametrize("change", [
    {"notebook_hash": "nb2"}, {"params": {"practice_agb": "01000001", "quarter": "2025Q3"}},
    {"data_hash": "d2"}, {"parameters_hash": "p2"}, {"code_hash": "c2"},
    {"environment": {"python": "3.11", "packages": {"pandas": "2.3"}}}, {"formats": ["html", "pdf"]},
])
def test_cache_key_changes_with_each_dependency(change):
    assert B.run_cache_key(**{**BASE, **change}) != B.run_cache_key(**BASE)


def test_cache_key_is_stable():
    assert B.run_cache_key(**BASE) == B.run_cache_key(**dict(BASE, params=dict(reversed(BASE["params"].items()))))


def test_paths_stay_out_of_the_key():
    kp = B.key_params("his_analyse", {"practice_agb": "01000001", "quarter": "2025Q2",
                                      "warehouse": "/a/w.duckdb", "cube_path": "/a/cube/2025Q2"})
    assert kp == {"practice_agb": "01000001", "quarter": "2025Q2"}


def test_region_hash_depends_on_its_practices_only():
    regions = {"01000001": "Noord", "01000002": "Noord", "01000003": "Zuid"}
    hashes = {"01000001": "a", "01000002": "b", "01000003": "c"}
    noord = B.region_data_hash("Noord", regions, hashes)
    assert B.region_data_hash("Noord", regions, {**hashes, "01000003": "changed"}) == noord
    assert B.region_data_hash("Noord", regions, {**hashes, "01000002": "changed"}) != noord


def test_environment_fingerprint_names_python_and_packages():
    env = B.environment_fingerprint()
    assert env["python"].count(".") == 2 and env["packages"]["pandas"] and env["packages"]["papermill"]


# -- the sweep ---------------------------------------------------------------------------


@pytest.fixture
def regional_report(tmp_path):
    nb = tmp_path / "regio.ipynb"
    nb.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    REPORTS["regio_test"] = ReportSpec(id="regio_test", title_nl="Regio", notebook=nb, scope="region",
                                       params=(Param("region", "region"), *COMMON))
    yield "regio_test"
    REPORTS.pop("regio_test")


PRACTICES = pd.DataFrame({
    "practice_agb": ["01000001", "01000002", "01000003"],
    "name": ["De Linde", "Oost", "Zuid & Co"],
    "region": ["Utrecht-West", "Utrecht-West", "Utrecht Oost"],
    "extraction_date": pd.to_datetime(["2025-07-01", "2025-07-03", "2025-05-20"]),
})
HASHES = {"01000001": "h1", "01000002": "h2", "01000003": "h3"}


def _batch(tmp_path, **kw) -> B.Batch:
    return B.Batch(name="t", source="t.yaml", warehouse=tmp_path / "w.duckdb", outputs=tmp_path / "out", **kw)


def test_sweep_names_runs_and_fixes_their_paths(tmp_path, regional_report):
    b = _batch(tmp_path, reports=["his_analyse", regional_report], quarters=["2025Q2", "2025Q1"])
    practices, regions, quarters = B.resolve_selection(b, PRACTICES, {})
    assert regions == ["Utrecht Oost", "Utrecht-West"]
    specs = B.plan_runs(b, PRACTICES, HASHES, {}, practices, regions, quarters)
    assert len(specs) == 2 * (3 + 2)
    by = {(s.quarter, s.name): s for s in specs}
    s = by[("2025Q2", "01000001-his_analyse")]
    assert s.files["html"] == str(tmp_path / "out/2025Q2/01000001/his_analyse.html")
    assert s.files["pdf"].endswith("2025Q2/01000001/his_analyse.pdf") and s.files["ipynb"].endswith(".ipynb")
    assert s.log_path == str(tmp_path / "out/2025Q2/logs/01000001-his_analyse.log")
    assert s.params == {"practice_agb": "01000001", "quarter": "2025Q2", "warehouse": str(tmp_path / "w.duckdb"),
                        "cube_path": str(tmp_path / "cube/2025Q2")}
    assert s.label == "De Linde" and s.subtitle == "De Linde · 2e kwartaal 2025"
    assert s.provenance["extraction_date"] == "01-07-2025"
    r = by[("2025Q2", "regio-Utrecht-Oost-regio_test")]
    assert r.outdir == str(tmp_path / "out/2025Q2/regio/Utrecht-Oost") and r.params["region"] == "Utrecht Oost"
    assert r.label == "Regio Utrecht Oost"
    west = by[("2025Q2", "regio-Utrecht-West-regio_test")]
    assert west.provenance["extraction_date"] == "01-07-2025 t/m 03-07-2025"
    # keys: the quarter and the practice's own data matter, another practice's data does not
    assert by[("2025Q1", "01000001-his_analyse")].cache_key != s.cache_key
    other = B.plan_runs(b, PRACTICES, {**HASHES, "01000003": "new"}, {}, practices, regions, quarters)
    changed = {x.name for x, y in zip(specs, other) if x.cache_key != y.cache_key}
    assert changed == {"01000003-his_analyse", "regio-Utrecht-Oost-regio_test"}


def test_latest_quarter_from_extraction_dates(tmp_path):
    b = _batch(tmp_path)
    _, _, quarters = B.resolve_selection(b, PRACTICES, {})
    assert quarters == ["2025Q2"]   # latest extraction 2025-07-03: 2025Q2 is the last complete quarter
    _, _, quarters = B.resolve_selection(_batch(tmp_path, practices=["01000003"]), PRACTICES, {})
    assert quarters == ["2025Q1"]


def test_unknown_practice_is_refused_and_refused_practice_is_known(tmp_path):
    with pytest.raises(ParameterError, match="practice 09999999 is not in the warehouse"):
        B.resolve_selection(_batch(tmp_path, practices=["09999999"], quarters=["2025Q2"]), PRACTICES, {})
    practices, _, _ = B.resolve_selection(_batch(tmp_path, practices=["09999999"], quarters=["2025Q2"]),
                                          PRACTICES, {"09999999": "practice 09999999 refused: 1 problem"})
    assert practices == ["09999999"]
    b = _batch(tmp_path, practices=["09999999"], quarters=["2025Q2"])
    specs = B.plan_runs(b, PRACTICES, HASHES, {"09999999": "practice 09999999 refused: 1 problem\n  - x"},
                        ["09999999"], [], ["2025Q2"])
    assert specs[0].pre_failed == {"stage": "ingest", "message": "practice 09999999 refused: 1 problem"}


def test_empty_warehouse_is_a_parameter_error(tmp_path):
    with pytest.raises(ParameterError, match="holds no practices"):
        B.resolve_selection(_batch(tmp_path), PRACTICES.iloc[0:0], {})


# -- skipping, manifest, odds and ends --------------------------------------------------------


def test_manifest_skips_only_complete_runs_with_the_same_key(tmp_path):
    from helpers.runner import RunResult, file_record
    b = _batch(tmp_path, quarters=["2025Q2"], formats=["html"])
    spec = B.plan_runs(b, PRACTICES, HASHES, {}, ["01000001"], [], ["2025Q2"])[0]
    m = B.Manifest(b.outputs, "2025Q2")
    assert not m.up_to_date(spec)
    Path(spec.outdir).mkdir(parents=True)
    for fmt in ("ipynb", "html"):
        Path(spec.files[fmt]).write_text(fmt)
    result = RunResult(name=spec.name, status="done", outputs={f: file_record(Path(spec.files[f])) for f in ("ipynb", "html")})
    m.record(spec, result, "t")
    m.save()
    m = B.Manifest(b.outputs, "2025Q2")
    assert m.runs[spec.name]["outputs"]["html"]["path"] == "01000001/his_analyse.html"
    assert m.up_to_date(spec)
    pdf_too = B.plan_runs(B.replace(b, formats=["html", "pdf"]), PRACTICES, HASHES, {}, ["01000001"], [], ["2025Q2"])[0]
    assert not m.up_to_date(pdf_too), "a new format reruns"
    Path(spec.files["html"]).write_text("truncated!")
    assert not m.up_to_date(spec), "a changed output reruns"
    Path(spec.files["html"]).write_text("html")
    assert m.up_to_date(spec)
    Path(spec.files["html"]).unlink()
    assert not m.up_to_date(spec), "a missing output reruns"


def test_notebook_imports_found_for_the_factory(tmp_path):
    nb = tmp_path / "n.ipynb"
    nb.write_text(json.dumps({"cells": [
        {"cell_type": "code", "source": ["%matplotlib inline\n", "import pandas as pd, numpy\n",
                                         "from helpers import plots\n", "from . import x\n"]},
        {"cell_type": "code", "source": "def f(:\n"},
        {"cell_type": "markdown", "source": "import nothing"}]}))
    assert B.notebook_imports([nb]) == ["pandas", "numpy", "helpers", "helpers.plots"]


def test_slug_and_run_names():
    assert B.slug("Utrecht-West") == "Utrecht-West" and B.slug("Gooi / Vecht") == "Gooi-Vecht"
    assert B.run_name("his_analyse", "practice", "01000001") == "01000001-his_analyse"
    assert B.run_name("regio", "region", "Gooi en Vecht") == "regio-Gooi-en-Vecht-regio"


def test_dataset_fingerprint_sees_any_edit(tmp_path):
    (tmp_path / "a").mkdir()
    f = tmp_path / "a" / "x.csv"
    f.write_text("1")
    before = B.dataset_fingerprint(tmp_path)
    assert B.dataset_fingerprint(tmp_path) == before
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert B.dataset_fingerprint(tmp_path) != before


def test_stale_temporaries_are_cleaned(tmp_path):
    (tmp_path / "01000001").mkdir()
    (tmp_path / "01000001" / ".his_analyse.tmp-123-4.html").write_text("half")
    (tmp_path / "01000001" / ".extras-tmp-123-4").mkdir()
    (tmp_path / "01000001" / "his_analyse.html").write_text("whole")
    assert B.clean_stale_temporaries(tmp_path) == 2
    assert [p.name for p in (tmp_path / "01000001").iterdir()] == ["his_analyse.html"]


def test_progress_prints_plain_lines_off_a_terminal(capsys):
    from helpers.runner import RunResult, RunSpec
    spec = RunSpec(name="01000001-his_analyse", quarter="2025Q2", report="his_analyse", scope="practice",
                   key="01000001", label="De Linde", notebook="n", params={}, formats=["html"], outdir="o",
                   files={}, partial_path="p", log_path="l", cube_path="c", cache_key="k", timeout=1, title="t")
    p = B.Progress(2, stream=io.StringIO())
    p.update(spec, RunResult(name=spec.name, status="done", timings={"total": 1.5}))
    p.update(spec, RunResult(name=spec.name, error={"stage": "execute", "cell_index": 4,
                                                    "cell_source": "raise X", "message": "X: boom"}))
    p.close()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[1/2] done   2025Q2 01000001 his_analyse 1.5s"
    assert out[1].startswith("[2/2] failed 2025Q2 01000001 his_analyse") and "cell 4 (`raise X`): X: boom" in out[1]


def test_a_stray_extract_folder_does_not_stop_the_batch(tmp_path):
    # ingest refuses `extracts/backup/` (not in practices.csv, not an AGB): no run for it
    refused = {"backup": "practice backup refused: folder not in practices.csv",
               "09999999": "practice 09999999 refused: 1 problem"}
    practices, _, _ = B.resolve_selection(_batch(tmp_path, quarters=["2025Q2"]), PRACTICES, refused)
    assert "backup" not in practices and "09999999" in practices
    specs = B.plan_runs(_batch(tmp_path, quarters=["2025Q2"]), PRACTICES, HASHES, refused, practices, [],
                        ["2025Q2"])
    assert {s.key for s in specs} == set(practices)


def test_error_messages_in_shared_outputs_are_scrubbed():
    assert B._first_line("KeyError: 'P00123'\nmore") == "KeyError: '…'"
