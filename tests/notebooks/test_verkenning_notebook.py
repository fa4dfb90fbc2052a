"""The exploration notebook runs in a real kernel with its parameters left empty, from
``notebooks/`` as JupyterLab runs it, on the demo care group: in the batch (no live frontend) it
is a static report of the care group, the same figures and tables the widgets show at their
defaults; in a kernel that a Jupyter server started it shows the widgets."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import nbformat
import papermill as pm
from _papermill import execute_notebook
import pytest

from helpers.config import NOTEBOOKS_DIR
from helpers.cube import read_slice
from helpers.render.html import render_html
from helpers.reports import REPORTS
from helpers.reports import verkenning as vk

SPEC = REPORTS["verkenning"]
WIDGET = "application/vnd.jupyter.widget-view+json"


def test_registered_as_a_shared_care_group_report():
    assert SPEC.scope == "zorggroep" and SPEC.shared
    assert SPEC.notebook == NOTEBOOKS_DIR / "verkenning.ipynb"
    assert set(pm.inspect_notebook(str(SPEC.notebook))) == set(SPEC.param_names())


def test_committed_without_outputs_and_thin():
    nb = json.loads(Path(SPEC.notebook).read_text())
    assert nb["metadata"]["spiegel"]["report"] == SPEC.id
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None
            assert len("".join(cell["source"]).splitlines()) <= 12   # calls, not logic
    for source in (Path(SPEC.notebook).read_text(), Path(vk.__file__).read_text()):
        assert "read_slice" not in source and "findings" not in source


def _run(out: Path, env_session: str | None, monkeypatch, warehouse: Path) -> nbformat.NotebookNode:
    monkeypatch.setenv("SPIEGEL_WAREHOUSE", str(warehouse))   # as `spiegel lab` hands it to its kernels
    if env_session:
        monkeypatch.setenv("JPY_SESSION_NAME", env_session)
    else:
        monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    execute_notebook(str(SPEC.notebook), str(out), kernel_name="python3", progress_bar=False,
                        parameters={}, cwd=str(NOTEBOOKS_DIR))
    nb = nbformat.read(out, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", output
            assert output.get("name") != "stderr", output.get("text")
    return nb


@pytest.fixture(scope="module")
def static_nb(demo_warehouse, demo_cube, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        return _run(tmp_path_factory.mktemp("vk") / "verkenning.ipynb", None, mp, demo_warehouse)


def test_empty_parameters_give_the_latest_quarter_and_a_static_report(static_nb, demo_cube, demo_quarter):
    html = render_html(static_nb, title=SPEC.title_nl, subtitle="Zorggroep")
    text = re.sub(r"<[^>]+>", " ", html)
    for heading in ("Verkenning zorggroep", "Trechter", "Trend over de kwartalen", "De tabel", "Methode"):
        assert heading in text, heading
    assert demo_quarter.label_nl in text
    # the figures: a funnel and the trend panels, as SVG or PNG
    assert len(re.findall(r"<svg\b|<img\b", html)) >= 2
    # every practice of the care group in the table, by name and AGB
    practices = read_slice(demo_cube, "practices")
    for r in practices.itertuples():
        assert r.practice_agb in text
    # the care group's deciles per quarter
    for label in ("P10", "P90", "Mediaan (P50)"):
        assert label in text
    # per practice only the two non-overlapping years, said in the text; the deciles of all eight quarters
    assert "niet-overlappende jaren" in text and "geen kleine aantallen prijsgeven" in text
    trend = re.search(r"Trend over de kwartalen(.*?)De tabel", text, re.S).group(1)
    assert len(set(re.findall(r"\b20\d\dQ[1-4]\b", trend))) == 8
    # the whole care group is no "Deze praktijk" (the funnel, the trend's legend), also in an embedded figure
    figures = [base64.b64decode(b).decode() for b in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html)]
    assert "Praktijk van het paneel" in html + "".join(figures)
    assert "Deze praktijk" not in html + "".join(figures)
    # no widget, no widget text, nothing of the lab-only cells
    assert not any(WIDGET in o.get("data", {}) for c in static_nb.cells for o in c.get("outputs", []))
    for word in ("VBox", "Dropdown", "Output(", "Een nieuwe maat", "Exporteer naar CSV"):
        assert word not in html, word
    assert "Traceback" not in html and "import " not in html


def test_in_a_lab_kernel_the_widgets_show(demo_warehouse, demo_cube, tmp_path, monkeypatch):
    nb = _run(tmp_path / "lab.ipynb", "verkenning.ipynb", monkeypatch, demo_warehouse)
    widgets = [o for c in nb.cells for o in c.get("outputs", []) if WIDGET in o.get("data", {})]
    # the controls and one live view per section (selection, funnel, trend, table)
    assert len(widgets) >= 5
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    models = [m.get("model_name") for m in state.values()]
    assert {"DropdownModel", "ToggleButtonsModel", "SelectMultipleModel", "ButtonModel"} <= set(models), models
