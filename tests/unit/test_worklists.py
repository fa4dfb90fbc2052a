"""Worklists: one CSV per action, only patient number, birth year and sex, own practice only."""

import pandas as pd

from helpers.cube import read_slice
from helpers.findings import WORKLISTS
from helpers.his_analyse import key_figures, load, summary_table
from helpers.worklists import write_worklists


def test_worklists_written_per_action(demo_cube, tmp_path):
    findings = read_slice(demo_cube, "findings")
    agb = findings["practice_agb"].iloc[0]
    paths = write_worklists(demo_cube, agb, tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"werklijst_{a}.csv" for a in WORKLISTS)
    mine = findings[findings["practice_agb"] == agb]
    others = set(findings[findings["practice_agb"] != agb]["patient_id"]) - set(mine["patient_id"])
    listed = set()
    for p in paths:
        raw = p.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to read UTF-8"
        df = pd.read_csv(p, sep=";", dtype=str, encoding="utf-8-sig")
        assert list(df.columns) == ["Patiëntnummer", "Geboortejaar", "Geslacht", "Keten", "Actie"]
        listed |= set(df["Patiëntnummer"])
    assert listed == set(mine["patient_id"])
    assert not listed & others
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_report_sections_match_cube(demo_cube):
    summary = read_slice(demo_cube, "summary")
    agb = summary["practice_agb"].iloc[0]
    data = load(demo_cube, agb)
    k = key_figures(data)
    assert k["enrolled"] == int(summary[summary["practice_agb"] == agb]["enrolled"].sum())
    table = summary_table(data)
    assert list(table["Keten"]) == ["DM2", "CVRM", "COPD", "ASTMA"]
    assert table.index.tolist() == list(range(4))
