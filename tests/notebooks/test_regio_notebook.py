"""The regional report runs in a real kernel on the demo care group, per region and for the
whole care group: every practice of the region side by side, totals that match the cube's
exact figures, and no patient and no count below the small-number rule."""

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
from helpers.cube.shared import SharedCube
from helpers.reports import REPORTS
from helpers.reports import regio
from helpers.suppression import MIN_CELL

NOTEBOOK = REPORTS["regio"].notebook


def test_parameters_cell_matches_both_specs_and_no_outputs():
    names = set(pm.inspect_notebook(str(NOTEBOOK)))
    assert names == set(REPORTS["regio"].param_names()) == set(REPORTS["regio_zorggroep"].param_names())
    assert REPORTS["regio_zorggroep"].notebook == NOTEBOOK
    for cell in json.loads(Path(NOTEBOOK).read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None


def test_regional_module_and_notebook_read_only_the_shared_cube():
    for source in (Path(NOTEBOOK).read_text(), Path(regio.__file__).read_text()):
        assert "read_slice" not in source and "findings.parquet" not in source


def _run(out: Path, parameters: dict) -> str:
    pm.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False, parameters=parameters)
    nb = nbformat.read(out, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", output
            assert output.get("name") != "stderr", output.get("text")
    html, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                           exclude_output_prompt=True).from_notebook_node(nb)
    return html


def test_inclusion_cap_rounds_down():
    assert regio.inclusion_cap(2208, 7.5) == 165      # 165.6 patients: 165 may be enrolled
    assert regio.inclusion_cap(2000, 7.5) == 150      # exactly 150
    assert regio.inclusion_cap(0, 7.5) == 0


def test_region_report_shows_its_practices_and_exact_totals(demo_warehouse, demo_cube, demo_quarter, tmp_path):
    practices = read_slice(demo_cube, "practices")
    region = sorted(practices["region"].unique())[0]
    members = practices[practices["region"] == region]
    html = _run(tmp_path / "regio.ipynb", {"region": region, "quarter": str(demo_quarter),
                                          "warehouse": str(demo_warehouse), "cube_path": str(demo_cube)})
    for heading in ("Regiorapportage ketenzorg", "1. Overzicht", "Totalen per keten", "2. Ketenzorgindicatoren",
                    "3. Inclusie en plafonds", "Methode"):
        assert heading in html, heading
    for name in members["name"]:
        assert name.replace("'", "&#x27;") in html or name in html, name
    others = set(practices["name"]) - set(members["name"])
    assert not any(n in html for n in others)
    assert "import " not in html and "Traceback" not in html

    # the region's totals are the sums of the exact (unsuppressed) practice figures
    summary = read_slice(demo_cube, "summary").merge(practices[["practice_agb", "region"]], on="practice_agb")
    exact = summary[summary["region"] == region].groupby("programme")["enrolled"].sum()
    totals = SharedCube(demo_cube).read(regio.TOTALS_TABLE)
    mine = totals[(totals["scope"] == "regio") & (totals["region"] == region)].set_index("programme")
    for programme, n in exact.items():
        assert int(mine.loc[programme, "enrolled"]) == int(n), programme


def test_care_group_report_covers_every_practice(demo_warehouse, demo_cube, demo_quarter, tmp_path):
    practices = read_slice(demo_cube, "practices")
    html = _run(tmp_path / "zg.ipynb", {"region": regio.ZORGGROEP, "quarter": str(demo_quarter),
                                       "warehouse": str(demo_warehouse), "cube_path": str(demo_cube)})
    assert "Zorggroep" in html
    for name in practices["name"]:
        assert name.replace("'", "&#x27;") in html or name in html, name
    data = regio.load(demo_cube, regio.ZORGGROEP)
    assert data.is_care_group and len(data.practices) == len(practices)


def test_shared_region_tables_hold_no_small_count_and_no_patient(demo_cube):
    findings = read_slice(demo_cube, "findings")
    shared = SharedCube(demo_cube)
    for table in (regio.PRACTICES_TABLE, regio.PROGRAMMES_TABLE, regio.INDICATORS_TABLE, regio.TOTALS_TABLE):
        df = shared.read(table)
        assert "patient_id" not in df.columns
        counts = [c for c in df.columns if f"{c}_shown" in df.columns]
        values = df[counts].stack().dropna()
        assert not ((values > 0) & (values < MIN_CELL)).any(), table
        text = " ".join(map(str, df.to_numpy().ravel()))
        assert not set(findings["patient_id"].astype(str)) & set(re.findall(r"\b\d{5,7}\b", text)), table


def test_indicator_history_covers_four_quarters(demo_cube, demo_quarter):
    ind = SharedCube(demo_cube).read(regio.INDICATORS_TABLE)
    quarters = sorted(ind["quarter"].unique())
    assert len(quarters) == regio.HISTORY_QUARTERS and quarters[-1] == str(demo_quarter)
    # the current quarter's rows are the cube's own indicators, rate for rate where shown
    own = read_slice(demo_cube, "indicators").set_index(["practice_agb", "indicator_id"])["pct"]
    now = ind[ind["quarter"] == str(demo_quarter)].dropna(subset=["pct"])
    for r in now.head(50).itertuples():
        assert r.pct == pytest.approx(own.loc[(r.practice_agb, r.indicator_id)])


def test_region_money_matches_the_money_truth_to_the_cent(demo_dataset, demo_cube, demo_quarter):
    """The regional report's money (per region, programme and quarter of the contract year:
    paid, reward, patients above the cap and the euro at stake) against the demo's ground truth."""
    from decimal import Decimal
    truth = pd.read_csv(f"{demo_dataset}.money_truth.csv", sep=";", dtype=str, keep_default_na=False)
    truth = truth[(truth["programme"] != "") & truth["quarter"].isin(regio.contract_year_quarters(demo_quarter))]
    regions = read_slice(demo_cube, "practices").set_index("practice_agb")["region"]
    truth = truth.assign(region=truth["practice_agb"].map(regions))
    totals = SharedCube(demo_cube).read(regio.MONEY_TOTALS_TABLE)
    totals = totals[totals["scope"] == "regio"].set_index(["region", "programme", "quarter"])
    cents = lambda s: sum(int(Decimal(x) * 100) for x in s)  # noqa: E731
    checked = 0
    for (region, programme, quarter), g in truth.groupby(["region", "programme", "quarter"]):
        row = totals.loc[(region, programme, quarter)]
        if pd.notna(row["awarded"]):
            assert int(row["awarded"]) == sum(map(int, g["awarded"]))
            assert round(row["paid_eur"] * 100) == cents(g["paid_eur"]), (region, programme, quarter)
            assert round(row["reward_eur"] * 100) == cents(g["reward_eur"]), (region, programme, quarter)
            checked += 1
        if pd.notna(row["over_cap"]):
            assert int(row["over_cap"]) == sum(map(int, g["over_cap"]))
            assert round(row["exposure_eur"] * 100) == cents(g["exposure_eur"]), (region, programme, quarter)
    assert checked >= 8


def test_regioprestatie_frequent_attenders_are_the_mirrors(demo_cube, demo_quarter):
    """The regional report's frequent attenders of this quarter are, practice for practice, the
    praktijkspiegel's (measure veelgebruikers_aandeel: O), and the plan is followed per region."""
    fa = SharedCube(demo_cube).read(regio.FREQUENT_TABLE)
    now = fa[fa["quarter"] == str(demo_quarter)].set_index("practice_agb")["frequent_attenders"]
    mirror = read_slice(demo_cube, "mirror")
    o = mirror[(mirror["measure"] == "veelgebruikers_aandeel") & (mirror["window"] == 0)].set_index("practice_agb")["O"]
    assert len(now) == len(o) > 0
    for agb, n in now.items():
        assert int(n) == int(o.loc[agb]), agb
    plan = SharedCube(demo_cube).read(regio.PLAN_TABLE)
    assert {"0"} < set(plan["seq"]), "the plan is followed after selection"
    assert plan["plan_patients"].dropna().ge(10).all(), "a region's plan patients reach the small-number rule"
