"""Batch files, the sweep and the cache keys: fast, no kernel, no browser."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import batch as B
from helpers.config import PARAMETERS_DIR, PROJECT_ROOT
from helpers.errors import ParameterError
from helpers.reports import COMMON, REPORTS, Param, ReportSpec


def _parse(text: str, tmp_path: Path, *argv: str) -> B.Batch:
    f = tmp_path / "b.yaml"
    f.write_text(text)
    parser = argparse.ArgumentParser()
    B.add_build_arguments(parser)
    return B.load_batch(f, parser.parse_args([str(f), *argv]))


def _run_build(text: str, tmp_path: Path) -> int:
    """``spiegel build`` of a batch file holding ``text``: its exit status."""
    f = tmp_path / "b.yaml"
    f.write_text(text)
    parser = argparse.ArgumentParser()
    B.add_build_arguments(parser)
    return B.run_build(parser.parse_args([str(f)]))


def _problems(text: str, tmp_path: Path, *argv: str) -> list[str]:
    with pytest.raises(ParameterError) as e:
        _parse(text, tmp_path, *argv)
    return str(e.value).splitlines()


# -- parsing --------------------------------------------------------------------------


def test_demo_batch_file_parses():
    raw = B.load_batch_file(PARAMETERS_DIR / "demo.yaml")
    b, problems = B.parse_batch(raw, "demo.yaml")
    assert problems == []
    assert b.quarters is None and b.latest == 2 and b.practices is None   # the two latest quarters
    assert b.reports == raw["reports"] and b.reports[0] == "his_analyse" and set(b.reports) <= set(REPORTS)
    assert b.formats == ["html", "pdf", "slides"]
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
    f = tmp_path / "b.yaml"
    assert f"{f}: found 'colour', expected a batch file key: description, dataset" in text
    assert f"{f}, quarters: found '2026Q5', expected a quarter YYYYQn" in text
    assert f"{f}, quarters: found '2025-06-30', expected a quarter, not a date" in text
    assert f"{f}, practices: found '123', expected an AGB code (8 digits 0-9)" in text
    assert f"{f}, reports: found 'nope', expected a report id: his_analyse" in text
    assert f"{f}, formats: found 'docx', expected a format: html or pdf" in text
    assert f"{f}, executor: found 'slurm', expected an executor: local or dask" in text
    assert f"{f}, workers: found '-1', expected a number of workers" in text
    assert f"{f}, timeout: found 'soon', expected a time limit" in text
    assert all(line.startswith(str(f)) for line in lines), "every problem names the file"


def test_command_line_overrides_the_file(tmp_path):
    b = _parse("quarters: latest\npractices: all\nformats: [html, pdf]\n", tmp_path,
               "--practice", "01000001", "--practice", "01000002", "--quarter", "2025Q4",
               "--format", "html", "--workers", "1", "--force", "--timeout", "60", "--outputs", str(tmp_path / "o"))
    assert b.practices == ["01000001", "01000002"] and b.quarters == ["2025Q4"]
    assert b.formats == ["html"] and b.workers == 1 and b.force and b.timeout == 60
    assert b.outputs == (tmp_path / "o").resolve()


def test_bad_overrides_are_refused(tmp_path):
    text = "\n".join(_problems("{}", tmp_path, "--quarter", "Q3", "--report", "x", "--executor", "dask"))
    assert "--quarter: found 'Q3', expected a quarter YYYYQn" in text
    assert "--report: found 'x', expected a report id" in text
    assert "--scheduler: expected a scheduler address: executor dask needs one" in text


def test_missing_dataset_and_bad_yaml(tmp_path):
    assert (f"dataset: found '{tmp_path / 'nope'}', expected a dataset folder that exists"
            in _problems(f"dataset: {tmp_path / 'nope'}\n", tmp_path)[0])
    assert "not valid YAML" in _problems("quarters: [2025Q2\n", tmp_path)[0]
    with pytest.raises(ParameterError, match="does not exist"):
        B.load_batch(tmp_path / "missing.yaml")


def test_extra_notebook_parameters_are_checked(tmp_path):
    b = _parse("params: {his_analyse: {}}\n", tmp_path)
    assert b.params == {}
    text = "\n".join(_problems("params: {his_analyse: {colour: red, practice_agb: '01000001'}, nope: {}}\n", tmp_path))
    assert "params.his_analyse: found 'colour', expected a parameter of his_analyse" in text
    assert "params.his_analyse: found 'practice_agb', expected a parameter the sweep does not set" in text
    assert "params: found 'nope', expected a report id" in text


def test_run_build_refuses_before_anything_runs(tmp_path, capsys):
    assert _run_build(f"quarters: 2026Q9\npractices: [1]\noutputs: {tmp_path / 'out'}\n", tmp_path) == 2
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
    with pytest.raises(ParameterError) as e:
        B.resolve_selection(_batch(tmp_path, practices=["09999999"], quarters=["2025Q2"]), PRACTICES, {})
    assert str(e.value) == ("t.yaml, practices: found '09999999', expected a practice in the warehouse w.duckdb "
                            "(known: 01000001, 01000002, 01000003); check --practice or `practices:` in t.yaml")
    practices, _, _ = B.resolve_selection(_batch(tmp_path, practices=["09999999"], quarters=["2025Q2"]),
                                          PRACTICES, {"09999999": "practice 09999999 refused: 1 problem"})
    assert practices == ["09999999"]
    b = _batch(tmp_path, practices=["09999999"], quarters=["2025Q2"])
    refusal = ("practice 09999999 refused: 3 problem(s) with the data contract\n"
               "  - patients.csv, line 14, column birth_year: found 'P00123', expected a whole number\n  - x\n  - y")
    specs = B.plan_runs(b, PRACTICES, HASHES, {"09999999": refusal}, ["09999999"], [], ["2025Q2"])
    assert specs[0].pre_failed == {"stage": "ingest", "message": "delivery of practice 09999999 refused: patients.csv, "
                                   "line 14, column birth_year: found '…', expected a whole number (and 2 more)"}


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
    pdf_too = B.plan_runs(dataclasses.replace(b, formats=["html", "pdf"]), PRACTICES, HASHES, {}, ["01000001"], [], ["2025Q2"])[0]
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
    assert B.plan._first_line("KeyError: 'P00123'\nmore") == "KeyError: '…'"


# -- hardening (issue 7) --------------------------------------------------------------------


@pytest.mark.parametrize("line, key, must", [
    ("outputs: {a: b}", "outputs", "one value, not a mapping"),
    ("warehouse: [x]", "warehouse", "one value, not a list"),
    ("dataset: {}", "dataset", "one value, not a mapping"),
    ("executor: [local]", "executor", "one value, not a list"),
    ("timeout: {a: 1}", "timeout", "one value, not a mapping"),
    ("workers: [2]", "workers", "one value, not a list"),
    ("description: {x: y}", "description", "one value, not a mapping"),
    ("practices: [['01000001']]", "practices", "one value or a list of values, not a list of lists or mappings"),
    ("quarters: {latest: 1}", "quarters", "one value or a list of values, not a mapping"),
    ("params: his_analyse", "params", "a mapping, not the single value 'his_analyse'"),
])
def test_every_batch_value_is_type_checked(tmp_path, line, key, must):
    lines = _problems(line + "\n", tmp_path)
    assert lines == [lines[0]] and lines[0].startswith(f"{tmp_path / 'b.yaml'}, {key}: expected {must}; {key} is ")
    assert not (tmp_path / "{'a': 'b'}").exists()


def test_fractional_time_limit_is_rounded_up_to_whole_seconds(tmp_path):
    # nbclient's timeout is an Integer trait: 90.5 made every run fail with a TraitError
    assert _parse("timeout: 90.5\n", tmp_path).timeout == 91
    b = _parse("{}", tmp_path, "--timeout", "0.2")
    assert b.timeout == 1 and isinstance(b.timeout, int)
    assert isinstance(_parse("timeout: 1.5m\n", tmp_path).timeout, int)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_batch_file_with_a_byte_order_mark_is_read(tmp_path, encoding):
    f = tmp_path / "b.yaml"
    f.write_text("practices: ['01000001']\ndescription: zorggroep Ærø\n", encoding=encoding)
    data = B.load_batch_file(f)
    assert data == {"practices": ["01000001"], "description": "zorggroep Ærø"}


@pytest.mark.parametrize("raw, says", [
    ("description: café\n".encode("latin-1"), "line 1 is not UTF-8 text (byte 0xe9; Latin-1?): save the file as UTF-8"),
    ("practices: all\n".encode("utf-16-le"), "looks like UTF-16 without a byte-order mark: save it as UTF-8"),
])
def test_batch_file_in_another_encoding_is_refused_in_one_line(tmp_path, raw, says):
    f = tmp_path / "b.yaml"
    f.write_bytes(raw)
    with pytest.raises(ParameterError) as e:
        B.load_batch_file(f)
    assert str(e.value) == f"{f}: {says}"


def test_agb_codes_quarters_and_workers_take_ascii_digits_only(tmp_path):
    text = "\n".join(_problems("practices: ['０１０００００１']\nquarters: ['２０２５Q2']\nworkers: '٣'\n", tmp_path))
    assert "practices: found '０１０００００１', expected an AGB code" in text
    assert "quarters: found '２０２５Q2', expected a quarter YYYYQn" in text
    assert "workers: found '٣', expected a number of workers: a whole number" in text
    from helpers.reports import validate_params
    with pytest.raises(ParameterError, match="found '٠١٠٠٠٠٠١', expected an AGB code"):
        validate_params("his_analyse", {"practice_agb": "٠١٠٠٠٠٠١", "quarter": "2025Q2"})


def test_relative_outputs_are_resolved(tmp_path):
    b = _parse("outputs: ../elsewhere\n", tmp_path)
    assert b.outputs == (PROJECT_ROOT.parent / "elsewhere").resolve()
    assert ".." not in str(b.outputs)


def test_outputs_at_a_file_and_warehouse_at_a_folder_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    text = "\n".join(_problems(f"warehouse: {tmp_path}\n", tmp_path, "--outputs", str(tmp_path / "file" / "sub")))
    assert f"outputs: found '{tmp_path / 'file' / 'sub'}', expected a folder, but {tmp_path / 'file'} is a file" in text
    assert f"warehouse: found '{tmp_path}', expected the DuckDB file, not a folder" in text


def test_unreachable_dask_scheduler_is_one_line(tmp_path, capsys):
    assert _run_build(f"outputs: {tmp_path / 'out'}\nexecutor: dask\nscheduler: tcp://127.0.0.1:1\n", tmp_path) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["spiegel build: Dask scheduler tcp://127.0.0.1:1 is not reachable (Connection refused): "
                   "start it (`dask scheduler`) or give the right address with --scheduler"]


def test_build_help_lists_the_exit_codes():
    parser = B.add_build_arguments(argparse.ArgumentParser())
    assert "1 done, but a practice was refused or a run failed" in parser.epilog
    assert "3 the warehouse is busy" in parser.epilog and "130 interrupted" in parser.epilog


def test_a_refused_delivery_is_one_line_naming_the_file_and_the_fix():
    from helpers.errors import ContractError, Problem
    err = ContractError([Problem("practices.csv", None, None, None, "a file practices.csv"),
                         Problem("practices.csv", 3, "name", "x", "text")], subject="dataset /d")
    assert B.error_lines(err) == [
        "dataset /d refused: practices.csv: expected a file practices.csv (and 1 more problem(s)); correct the "
        "file and run the build again (the contract is spec/his-extract.md; `spiegel ingest <dataset>` lists "
        "every problem)"]


def test_quarter_after_every_extraction_date_is_refused(tmp_path):
    with pytest.raises(ParameterError) as e:
        B.resolve_selection(_batch(tmp_path, quarters=["2030Q1"]), PRACTICES, {})
    assert str(e.value) == ("t.yaml, quarters: found '2030Q1', expected a quarter complete at the newest extraction "
                            "date of the selected practices, 03-07-2025 (practice 01000002): the latest quarter "
                            "possible is 2025Q2; choose it or an earlier one, or `latest`")
    # the quarter that ends on the extraction date is complete (as for `latest`)
    on_the_day = PRACTICES.assign(extraction_date=pd.to_datetime(["2025-06-30"] * 3))
    assert B.resolve_selection(_batch(tmp_path, quarters=["2025Q2"]), on_the_day, {})[2] == ["2025Q2"]


def test_partly_covered_quarter_fails_the_practices_it_is_not_complete_for(tmp_path, regional_report):
    b = _batch(tmp_path, reports=["his_analyse", regional_report], quarters=["2025Q2"])
    practices, regions, quarters = B.resolve_selection(b, PRACTICES, {})
    specs = {s.name: s for s in B.plan_runs(b, PRACTICES, HASHES, {}, practices, regions, quarters)}
    late = specs["01000003-his_analyse"].pre_failed
    assert late == {"stage": "quarter", "message": "quarter 2025Q2 ends on 30-06-2025, after the extraction date "
                    "20-05-2025 of practice 01000003: its data cover up to 2025Q1; deliver a newer extraction "
                    "or build an earlier quarter"}
    assert "of practice 01000003 of region Utrecht Oost" in specs["regio-Utrecht-Oost-regio_test"].pre_failed["message"]
    assert specs["01000001-his_analyse"].pre_failed is None
    assert specs["regio-Utrecht-West-regio_test"].pre_failed is None


REFUSAL = ("practice 01000001 refused: 2 problem(s) with the data contract\n"
           "  - extracts/01000001/patients.csv, line 14, column birth_year: found 'P00123', expected a whole number\n"
           "  - extracts/01000001/patients.csv, line 15, column sex: found 'X', expected M, V or O\n"
           "  Fix: correct the export in the HIS (or the file) and deliver it again; the contract is spec/his-extract.md.")


def test_refused_reload_rebuilds_from_the_previous_delivery_and_says_so(tmp_path):
    stale = B.stale_data({"01000001": REFUSAL, "09999999": "practice 09999999 refused: 1 problem"},
                         {"01000001": "2025-07-02T10:00:00"})
    assert list(stale) == ["01000001"], "a first delivery that was refused has no previous data"
    info = stale["01000001"]
    assert info["reason"] == "refused" and info["previous_loaded_at"] == "2025-07-02T10:00:00"
    assert info["first_problem"] == ("extracts/01000001/patients.csv, line 14, column birth_year: found '…', "
                                     "expected a whole number"), "file, line, column; the value scrubbed"
    assert info["note_nl"] == ("Gebaseerd op de vorige levering (geladen 02-07-2025 10:00): de nieuwe levering "
                               "is geweigerd.")
    unreadable = B.stale_data({"01000001": "OSError: cannot read the files of practice 01000001 (Permission "
                                           "denied)"}, {"01000001": "2025-07-02T10:00:00"}, {"01000001"})
    assert unreadable["01000001"]["reason"] == "failed"
    assert unreadable["01000001"]["note_nl"].endswith("de nieuwe levering is niet te lezen.")
    assert "new delivery not readable (OSError: cannot read the files" in B.stale_line("01000001",
                                                                                     unreadable["01000001"])
    b = _batch(tmp_path, quarters=["2025Q1"], formats=["html"])
    spec = B.plan_runs(b, PRACTICES, HASHES, {"01000001": REFUSAL}, ["01000001"], [], ["2025Q1"])[0]
    assert spec.pre_failed is None, "the intact previous data still make a report"
    assert spec.provenance["dataset"].endswith("; vorige levering (de nieuwe is geweigerd)")
    assert B.stale_line("01000001", info) == (
        "  practice 01000001: new delivery refused (extracts/01000001/patients.csv, line 14, column birth_year: "
        "found '…', expected a whole number); its report is built from the previous delivery still in the "
        "warehouse (loaded 2025-07-02 10:00)")
    # the manifest entry carries it, and loses it once a delivery is accepted again
    from helpers.runner import RunResult, file_record
    Path(spec.outdir).mkdir(parents=True)
    for fmt in ("ipynb", "html"):
        Path(spec.files[fmt]).write_text(fmt)
    m = B.Manifest(b.outputs, "2025Q1")
    m.record(spec, RunResult(name=spec.name, status="done", outputs={f: file_record(Path(spec.files[f]))
                                                                       for f in ("ipynb", "html")}),
             "t", B.stale_of(spec, stale))
    assert m.runs[spec.name]["stale_data"] == info
    m.mark_skipped(spec, "t", B.stale_of(spec, {}))
    assert "stale_data" not in m.runs[spec.name]
    m.mark_skipped(spec, "t", B.stale_of(spec, stale))
    assert m.runs[spec.name]["stale_data"] == info


def test_the_interrupt_message_tells_how_to_resume_after_force(tmp_path):
    forced = B.interrupt_message(_batch(tmp_path, force=True))
    assert "run the same command without --force to resume" in forced
    assert "rerun the same command" not in B.interrupt_message(_batch(tmp_path))
    assert "run the same command again to resume (it runs only what is missing)" in B.interrupt_message(_batch(tmp_path))


def test_files_written_after_an_interrupt_are_discarded_not_left_with_stale_hashes(tmp_path):
    from helpers.runner import RunResult, file_record
    b = _batch(tmp_path, quarters=["2025Q2"], formats=["html"])
    kept, replaced, new = B.plan_runs(b, PRACTICES, HASHES, {}, ["01000001", "01000002", "01000003"], [],
                                      ["2025Q2"])[:3]
    m = B.Manifest(b.outputs, "2025Q2")
    for spec in (kept, replaced):
        Path(spec.outdir).mkdir(parents=True)
        for fmt in ("ipynb", "html"):
            Path(spec.files[fmt]).write_text(f"{fmt} of the last build")
        m.record(spec, RunResult(name=spec.name, status="done",
                                 outputs={f: file_record(Path(spec.files[f])) for f in ("ipynb", "html")}), "t")
    # a worker finished after the interrupt: it replaced one report and wrote a new one, unrecorded
    Path(replaced.files["html"]).write_text("html of the interrupted build")
    Path(new.outdir).mkdir(parents=True)
    Path(new.files["html"]).write_text("html of the interrupted build")
    assert B.discard_unrecorded({"2025Q2": m}, [kept, replaced, new]) == 2
    assert Path(kept.files["html"]).read_text() == "html of the last build"
    assert not Path(replaced.files["html"]).exists() and not Path(new.files["html"]).exists()
    assert Path(replaced.files["ipynb"]).exists(), "an untouched file keeps its record"
    entry = m.runs[replaced.name]
    assert entry["status"] == "failed" and set(entry["outputs"]) == {"ipynb"}
    assert not m.up_to_date(replaced), "the next build redoes it"
    assert m.up_to_date(kept)


def test_sigterm_interrupts_the_build_like_ctrl_c_and_the_handler_is_restored():
    import signal
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with B.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)   # the handler raises at once; never reached
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_run_whose_pdf_failed_is_rendered_again_not_executed(tmp_path):
    from helpers.runner import RunResult, file_record
    b = _batch(tmp_path, quarters=["2025Q2"], formats=["html", "pdf"])
    spec = B.plan_runs(b, PRACTICES, HASHES, {}, ["01000001"], [], ["2025Q2"])[0]
    Path(spec.outdir).mkdir(parents=True)
    for fmt in ("ipynb", "html"):
        Path(spec.files[fmt]).write_text(fmt)
    m = B.Manifest(b.outputs, "2025Q2")
    no_browser = RunResult(name=spec.name, outputs={f: file_record(Path(spec.files[f])) for f in ("ipynb", "html")},
                           outputs_done={"ipynb": True, "html": True, "pdf": False},
                           error={"stage": "pdf", "message": "no Chromium: apt-get install chromium"})
    m.record(spec, no_browser, "t")
    assert m.runs[spec.name]["outputs_done"] == {"ipynb": True, "html": True, "pdf": False}
    assert not m.up_to_date(spec) and m.renderable(spec)
    other = B.plan_runs(b, PRACTICES, {**HASHES, "01000001": "new"}, {}, ["01000001"], [], ["2025Q2"])[0]
    assert not m.renderable(other), "new data: execute again"
    Path(spec.files["ipynb"]).write_text("damaged")
    assert not m.renderable(spec), "a notebook that is not the one recorded is executed again"
    Path(spec.files["ipynb"]).write_text("ipynb")
    assert m.renderable(spec)
    m.record(spec, RunResult(name=spec.name, error={"stage": "execute", "message": "boom"}), "t")
    assert not m.renderable(spec), "a failed execution kept no notebook"


def test_a_warehouse_that_is_not_duckdb_is_one_line_exit_2(tmp_path, capsys):
    junk = tmp_path / "warehouse.duckdb"
    junk.write_text("practice_agb;name\n01000001;De Linde\n")
    f = tmp_path / "b.yaml"
    f.write_text(f"warehouse: {junk}\noutputs: {tmp_path / 'out'}\n")
    parser = B.add_build_arguments(argparse.ArgumentParser())
    assert B.run_build(parser.parse_args([str(f)])) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"spiegel build: warehouse {junk} is not a DuckDB database")


def test_an_address_that_is_no_dask_scheduler_is_one_line(tmp_path, capsys):
    import socket
    import threading
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_like_a_web_server():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            conn.close()
    threading.Thread(target=answer_like_a_web_server, daemon=True).start()
    f = tmp_path / "b.yaml"
    f.write_text(f"outputs: {tmp_path / 'out'}\nexecutor: dask\nscheduler: tcp://127.0.0.1:{port}\n"
                 f"dataset: {tmp_path}\nwarehouse: {tmp_path / 'w.duckdb'}\n")
    (tmp_path / "practices.csv").write_text("practice_agb;name;region;hagro;his_system;fte_gp;extraction_date\n")
    parser = B.add_build_arguments(argparse.ArgumentParser())
    try:
        code = B.run_build(parser.parse_args([str(f)]))
    finally:
        server.close()
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"spiegel build: Dask scheduler tcp://127.0.0.1:{port} does not answer as a Dask scheduler")


def test_the_summary_says_which_formats_of_a_failed_run_were_written(tmp_path):
    from helpers.runner import RunResult
    b = _batch(tmp_path, quarters=["2025Q2"], formats=["html", "pdf"])
    spec = B.plan_runs(b, PRACTICES, HASHES, {}, ["01000001"], [], ["2025Q2"])[0]
    result = RunResult(name=spec.name, outputs_done={"ipynb": True, "html": True, "pdf": False},
                       error={"stage": "pdf", "message": "no Chromium: apt-get install chromium"})
    lines = []
    B.print_summary([spec], {spec.uid: result}, [], 1.0, [], b.outputs, None, out=lines.append)
    assert "    written: ipynb, html (the next build only renders what is missing)" in lines


def test_batch_problems_are_problem_objects_written_by_one_function(tmp_path):
    from helpers.errors import Problem, format_problem
    with pytest.raises(ParameterError) as e:
        _parse("quarters: 2026Q5\npractices: [123]\n", tmp_path, "--workers", "0")
    problems = e.value.problems
    assert all(isinstance(p, Problem) for p in problems)
    f = str(tmp_path / "b.yaml")
    assert [(p.file, p.key, p.value) for p in problems] == [
        (f, "quarters", "2026Q5"), (f, "practices", "123"), (None, "--workers", "0")]
    assert str(e.value).splitlines() == [format_problem(p) for p in problems]


def test_batch_file_executor_names_are_the_runner_registry():
    from helpers.batch.batchfile import EXECUTORS as names
    from helpers.runner import EXECUTORS as registry
    assert tuple(names) == tuple(registry)
