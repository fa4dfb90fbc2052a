"""The frequent-attender monitor (helpers.reports.veelgebruikers) end to end: a built-in report
of the registry, its prepare step runs in the quarter's prepare pass, and
``spiegel build`` writes the HTML with the patient table, and the CSVs, into the practice's
own folder only."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from conftest import build, counts, manifest
from helpers.config import cube_dir
from helpers.cube import read_slice
from helpers.reports import REPORTS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def monitor():
    return (REPORTS["veelgebruikers"],)


def test_the_monitor_builds_for_one_practice(tiny_group, monitor):
    plans = {p.parent.name: len(pd.read_csv(p, sep=";", dtype=str))
             for p in (tiny_group.dataset / "extracts").glob("*/veelgebruikers_plan.csv")}
    agb = max(sorted(plans), key=plans.get)       # a practice with a full plan
    batch = tiny_group.batch("veelgebruikers", reports=["veelgebruikers"], formats=["html"], practices=[agb])
    code, out = build(batch)
    assert code == 0, out
    assert counts(out) == {"runs": 1, "done": 1, "skipped": 0, "failed": 0}
    q = re.search(r"quarters (\d{4}Q[1-4])", out).group(1)
    outputs = tiny_group.root / "out-veelgebruikers"
    folder = outputs / q / agb
    html = (folder / "veelgebruikers.html").read_text()
    patients = read_slice(cube_dir(tiny_group.warehouse, q), "veelgebruikers_patienten", practice_agb=agb)
    assert len(patients) > 0
    # the patient table: its heading and every frequent attender's number
    assert "Alle veelgebruikers" in html and "Patiëntnummer" in html.replace("&#x27;", "'")
    assert all(f">{pid}<" in html for pid in patients["patient_id"])
    # the plan's monitor: each plan patient with a 0-meting and quarters after selection
    plan = read_slice(cube_dir(tiny_group.warehouse, q), "veelgebruikers_plan_monitor", practice_agb=agb)
    assert plan["patient_id"].nunique() == plans[agb]
    after = plan[plan["period"] != "0-meting"]
    assert len(after) and after["contacts"].sum() > 0, "the demo's plan patients have contacts after selection"
    assert "0-meting" in html and "voorlopige profielen" in html
    assert "vg.load" not in html and "notebook_defaults" not in html   # no code in the output
    # the CSVs beside it, in the practice's folder only
    listed = pd.read_csv(folder / "veelgebruikers.csv", sep=";", dtype=str, encoding="utf-8-sig")
    assert sorted(listed["patientnummer"]) == sorted(patients["patient_id"])
    assert (folder / "veelgebruikers_monitor.csv").exists()
    entry = manifest(outputs, q)["runs"][f"{agb}-veelgebruikers"]
    assert entry["status"] == "done" and entry["scope"] == "practice"
    assert set(entry["figures"]) == {"frequent_attenders", "plan_patients"}   # for the portal, suppressed
    assert sorted(x["path"].rsplit("/", 1)[-1] for x in entry["extras"]) == ["veelgebruikers.csv",
                                                                            "veelgebruikers_monitor.csv"]
    others = [p for p in (outputs / q).rglob("veelgebruikers*") if p.parent != folder]
    assert others == []
