"""The HIS-analyse notebook runs for a demo practice in a real kernel, and its HTML (no
code) holds the expected headings and the numbers of the quarter cube."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from nbconvert import HTMLExporter

from helpers.cube import read_slice
from helpers.reports import REPORTS
from helpers.tables import nl_number

NOTEBOOK = REPORTS["his_analyse"].notebook


def test_parameters_cell_matches_registry():
    params = pm.inspect_notebook(str(NOTEBOOK))
    assert set(params) == set(REPORTS["his_analyse"].param_names())


def test_committed_without_outputs():
    nb = json.loads(Path(NOTEBOOK).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None


@pytest.fixture(scope="module")
def executed(demo_warehouse, demo_cube, demo_quarter, tmp_path_factory):
    practices = read_slice(demo_cube, "practices")
    # the practice with the most findings makes the richest report
    findings = read_slice(demo_cube, "findings")
    agb = findings["practice_agb"].value_counts().index[0]
    out = tmp_path_factory.mktemp("nb") / "his_analyse.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False,
                        parameters={"practice_agb": agb, "quarter": str(demo_quarter),
                                    "warehouse": str(demo_warehouse), "cube_path": str(demo_cube)})
    nb = nbformat.read(out, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", output
            assert output.get("name") != "stderr", output.get("text")
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(nb)
    return agb, practices.set_index("practice_agb").loc[agb], findings[findings["practice_agb"] == agb], html


def test_html_has_headings_and_no_code(executed):
    agb, practice, _, html = executed
    for heading in ("HIS-analyse ketenzorg", "1. Samenvatting", "2. Registratiebevindingen",
                    "3. Controles: de oproeplijst", "4. Kwaliteitsindicatoren", "5. Werklijsten voor de POH",
                    "6. Datakwaliteit", "Verantwoording", practice["name"]):
        assert heading in html, heading
    assert "his.resolve(" not in html and "import " not in html
    assert "Traceback" not in html and "ParameterError" not in html


def test_html_numbers_match_the_cube(executed):
    agb, practice, findings, html = executed
    assert nl_number(practice["list_size"]) in html
    reg = findings[~findings["kind"].isin(["measurement_missing", "measurement_overdue", "no_chain_contact"])]
    assert f"<strong>{nl_number(len(reg))}</strong> registratiebevindingen" in html
    # every patient with a finding appears (own report only)
    for pid in findings["patient_id"].unique()[:20]:
        assert pid in html


def test_no_other_practice_patients(executed, demo_cube):
    agb, _, _, html = executed
    others = read_slice(demo_cube, "findings")
    others = others[others["practice_agb"] != agb]
    mine = set(read_slice(demo_cube, "findings", practice_agb=agb)["patient_id"])
    leaked = [p for p in set(others["patient_id"]) - mine if f">{p}<" in html]
    assert not leaked, leaked[:5]
