"""The planner, a report's parameters and the demo generator's flags say a bad input as the
batch file does: one ``helpers.errors.Problem`` line (where, found, expected, fix), exit status
2, never a traceback, also when run as the ``spiegel`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _datasets import build
from helpers.errors import ParameterError
from helpers.reports import validate_params
from helpers.warehouse import Warehouse

SPIEGEL = [sys.executable, "-m", "helpers.cli"]


def spiegel(*argv, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SPIEGEL, *map(str, argv)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wh")
    path = root / "wh.duckdb"
    assert Warehouse(path).ingest(build(root)).ok
    return path


def batch_file(folder: Path, warehouse: Path, **keys) -> Path:
    path = folder / "b.yaml"
    lines = [f"warehouse: {warehouse}", f"outputs: {folder / 'out'}", "formats: html", "quarters: 2025Q2"]
    lines += [f"{k}: {v}" for k, v in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the planner (helpers.batch.plan) ----------------------------------------------------------


def test_a_practice_not_in_the_warehouse_is_one_problem_line(tmp_path, warehouse):
    batch = batch_file(tmp_path, warehouse)
    proc = spiegel("build", batch, "--practice", "09999999")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr == (f"spiegel build: {batch}, practices: found '09999999', expected a practice in the "
                           f"warehouse wh.duckdb (known: 12345678, 87654321); check --practice or `practices:` "
                           f"in {batch}\n")
    assert not (tmp_path / "out" / "2025Q2").exists()


# -- a report's parameters (helpers.reports.registry.validate_params) --------------------------


PLUGIN = '''
from pathlib import Path
from helpers.reports import COMMON, Param, ReportSpec
SPECS = (ReportSpec(id="titled", title_nl="Met titel", notebook=Path(__file__).with_name("titled.ipynb"),
                    scope="zorggroep", params=(Param("title", "str", help="the title page's text"), *COMMON)),)
'''


def test_a_missing_report_parameter_is_one_problem_line(tmp_path, warehouse):
    (tmp_path / "titled.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    plugin = tmp_path / "titled_plugin.py"
    plugin.write_text(PLUGIN)
    batch = batch_file(tmp_path, warehouse, reports="[titled]")
    proc = spiegel("build", batch, env={"SPIEGEL_REPORT_PLUGINS": str(plugin)})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr == "spiegel build: titled.title: expected a value: title is required (the title page's text)\n"


def test_validate_params_gives_every_problem_one_line_each():
    with pytest.raises(ParameterError) as e:
        validate_params("his_analyse", {"practice_agb": "123", "quarter": "2026Q5", "colour": "red"})
    assert str(e.value).splitlines() == [
        "his_analyse: found 'colour', expected a parameter of his_analyse: practice_agb, quarter, warehouse, cube_path",
        "his_analyse.practice_agb: found '123', expected an AGB code (8 digits 0-9)",
        "his_analyse.quarter: found '2026Q5', expected a quarter YYYYQn (n from 1 to 4, year 1900 to 2100); e.g. 2025Q2",
    ]
    assert [p.key for p in e.value.problems] == ["his_analyse", "his_analyse.practice_agb", "his_analyse.quarter"]
    with pytest.raises(ParameterError, match="^hagro_test.hagro: found 'Zuid', expected a hagro of the warehouse's "
                                             "practices: Noord$"):
        from helpers.reports import COMMON, Param, ReportSpec, register, unregister
        register(ReportSpec(id="hagro_test", title_nl="H", notebook=Path("h.ipynb"), scope="hagro",
                            params=(Param("hagro", "hagro"), *COMMON)))
        try:
            validate_params("hagro_test", {"hagro": "Zuid", "quarter": "2025Q2"}, known_hagros={"Noord"})
        finally:
            unregister("hagro_test")


# -- the demo generator's flags (spiegel demo-data) -------------------------------------------


@pytest.mark.parametrize("flags,line", [
    (["--practices", "twelve"],
     "--practices: found 'twelve', expected a number of practices: a whole number from 1 to 2000"),
    (["--seed", "-5"], "--seed: found '-5', expected a seed: a whole number from 0 on; e.g. 20261123"),
    (["--practices", "1", "--regions", "2"],
     "--regions: found '2', expected a number of regions from 1 to --practices (1): every region needs a practice"),
    (["--extraction-date", "5-10-2026"], "--extraction-date: found '5-10-2026', expected a date YYYY-MM-DD; e.g. 2026-10-05"),
], ids=["practices", "seed", "regions", "date"])
def test_a_bad_demo_data_flag_is_one_problem_line(tmp_path, flags, line):
    proc = spiegel("demo-data", "--out", tmp_path / "demo", *flags)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr == f"spiegel demo-data: error: {line}\n"
    assert list(tmp_path.iterdir()) == [], "nothing written"
