"""The frequent-attender monitor's notebook: its parameters cell is the registry's ReportSpec,
and it is committed without outputs (it runs end to end in tests/e2e/test_veelgebruikers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import papermill as pm

from helpers.reports import REPORTS

SPEC = REPORTS["veelgebruikers"]


def test_parameters_cell_matches_the_spec():
    assert set(pm.inspect_notebook(str(SPEC.notebook))) == set(SPEC.param_names())


def test_committed_without_outputs():
    nb = json.loads(Path(SPEC.notebook).read_text())
    assert nb["metadata"]["spiegel"]["report"] == SPEC.id
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None
