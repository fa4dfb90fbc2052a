"""Every report notebook runs as ``spiegel lab`` runs it: parameters cell left empty, from
``notebooks/``, in a kernel whose environment names the warehouse (``SPIEGEL_WAREHOUSE``) and
the notebook (``JPY_SESSION_NAME``, set by the Jupyter server). It takes the latest quarter and
the first practice, hagro or region, puts out no error and no warning, and only the
exploration notebook shows widgets (no progress bar of a long query, say)."""

from __future__ import annotations

import nbformat
from _papermill import execute_notebook
import pytest

from helpers.config import NOTEBOOKS_DIR
from helpers.reports import REPORTS

NOTEBOOKS = sorted({spec.notebook.name for spec in REPORTS.values() if spec.notebook.parent == NOTEBOOKS_DIR})
WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_report_notebook_runs_in_the_lab_with_empty_parameters(name, demo_warehouse, demo_cube, demo_quarter,
                                                              tmp_path, monkeypatch):
    monkeypatch.setenv("SPIEGEL_WAREHOUSE", str(demo_warehouse))
    monkeypatch.setenv("JPY_SESSION_NAME", name)
    out = tmp_path / name
    execute_notebook(str(NOTEBOOKS_DIR / name), str(out), kernel_name="python3", progress_bar=False,
                        parameters={}, cwd=str(NOTEBOOKS_DIR))
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert outputs
    for o in outputs:
        assert o["output_type"] != "error", o
        assert o.get("name") != "stderr", o.get("text")
    widgets = [o for o in outputs if WIDGET in o.get("data", {})]
    assert bool(widgets) == (name == "verkenning.ipynb"), [o["data"].get("text/plain") for o in widgets][:3]
    text = " ".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert demo_quarter.label_nl in text or str(demo_quarter) in text
