"""The praktijkspiegel and the spiegelbijeenkomst run in a real kernel on the demo care group:
the mirror's first page names the planted deviation of a planted practice, the older practice
gets no attention point after standardisation, and the hagro pack names its practices but
holds no patient and no count below the small-number rule."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest
from nbconvert import HTMLExporter

from helpers.cube import read_slice
from helpers.reports import REPORTS
from helpers.reports import praktijkspiegel as ps

SPIEGEL = REPORTS["praktijkspiegel"].notebook
PACK = REPORTS["spiegelbijeenkomst"].notebook


@pytest.mark.parametrize("report", ["praktijkspiegel", "spiegelbijeenkomst"])
def test_parameters_cell_matches_registry_and_no_outputs(report):
    path = REPORTS[report].notebook
    assert set(pm.inspect_notebook(str(path))) == set(REPORTS[report].param_names())
    for cell in json.loads(Path(path).read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None


def test_pack_notebook_reads_only_the_shared_cube():
    source = Path(PACK).read_text()
    assert "SharedCube" in source and "read_slice" not in source


def _run(notebook: Path, out: Path, parameters: dict) -> str:
    pm.execute_notebook(str(notebook), str(out), kernel_name="python3", progress_bar=False, parameters=parameters)
    nb = nbformat.read(out, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", output
            assert output.get("name") != "stderr", output.get("text")
    html, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                           exclude_output_prompt=True).from_notebook_node(nb)
    return html


@pytest.fixture(scope="module")
def truth(demo_dataset) -> pd.DataFrame:
    return pd.read_csv(Path(f"{demo_dataset}.mirror_truth.csv"), sep=";", dtype=str)


def _common(demo_warehouse, demo_cube, demo_quarter) -> dict:
    return {"quarter": str(demo_quarter), "warehouse": str(demo_warehouse), "cube_path": str(demo_cube)}


def test_mirror_names_the_planted_dermatology_referrals(demo_warehouse, demo_cube, demo_quarter, truth, tmp_path):
    planted = truth[(truth["measure"] == "verwijzing_dermatologie") & (truth["direction"] == "higher")]
    assert len(planted) == 1, "the demo plants one practice that refers more to dermatology"
    agb = planted["practice_agb"].iloc[0]
    html = _run(SPIEGEL, tmp_path / "ps.ipynb", {"practice_agb": agb, **_common(demo_warehouse, demo_cube, demo_quarter)})
    for heading in ("Praktijkspiegel", "Aandachtspunten", "1. Populatie", "2. Contacten", "3. Verwijzingen",
                    "4. Voorschrijven", "5. Diagnostiek", "6. Veelgebruikers", "7. Trend", "8. Methode"):
        assert heading in html, heading
    assert "import " not in html and "Traceback" not in html
    data = ps.load(demo_cube, agb)
    row = data.current.set_index("measure").loc["verwijzing_dermatologie"]
    expected = ps.sentence(row["title"], row["ratio"], row["lo"], row["hi"])
    assert expected in ps.attention_points(data)
    assert expected.split(" (O/E")[0] in html
    assert "hoger dan verwacht" in html and "rood" not in html


def test_older_practice_has_no_attention_point_on_its_crude_rates(demo_cube, truth):
    older = truth[(truth["direction"] == "none")]["practice_agb"].unique()
    assert len(older) == 1
    data = ps.load(demo_cube, older[0])
    titles = set(data.measures.set_index("measure").loc[
        truth[(truth["practice_agb"] == older[0]) & (truth["direction"] == "none")]["measure"], "title"])
    for point in ps.attention_points(data):
        assert point.split(":")[0] not in titles, point


def test_hagro_pack_names_its_practices_and_hides_small_counts(demo_warehouse, demo_cube, demo_quarter, tmp_path):
    practices = read_slice(demo_cube, "practices")
    hagro = sorted(practices["hagro"].dropna().unique())[0]
    members = practices[practices["hagro"] == hagro]
    html = _run(PACK, tmp_path / "sb.ipynb", {"hagro": hagro, **_common(demo_warehouse, demo_cube, demo_quarter)})
    for heading in ("Spiegelbijeenkomst", "Gespreksonderwerpen", "De cijfers naast elkaar",
                    "Verslag van de bijeenkomst", "Presentielijst", "Handtekening"):
        assert heading in html, heading
    for name in members["name"]:
        assert name.replace("'", "&#x27;") in html or name in html, name
    others = practices[practices["hagro"] != hagro]["name"]
    assert not any(n in html for n in others if n not in set(members["name"]))
    # no patient number of the hagro's practices appears, and no whole number below the rule
    text = re.sub(r"<[^>]+>", " ", html)
    assert "patient_id" not in html
    assert not re.search(r"(?<![\d,.])[1-9](?![\d,.])\s*(patiënt|patiënten)", text)
