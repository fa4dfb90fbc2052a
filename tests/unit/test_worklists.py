"""Worklists: one CSV per action, only patient number, birth year and sex, own practice only."""

import csv
import shutil

import pandas as pd

from helpers.cube import read_slice
from helpers.cube.findings import WORKLISTS
from helpers.reports.his_analyse import intro_text, key_figures, load, summary_table
from helpers.reports.worklists import write_worklists


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
        assert list(df.columns) == ["Patiëntnummer", "Geboortejaar", "Geslacht", "Keten", "Actie", "Sinds",
                                    "Open (kwartalen)"]
        listed |= set(df["Patiëntnummer"])
    assert listed == set(mine["patient_id"])
    assert not listed & others
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_report_sections_match_cube(demo_cube):
    summary = read_slice(demo_cube, "summary")
    agb = summary["practice_agb"].iloc[0]
    data = load(demo_cube, agb)
    k = key_figures(data)
    assert k["enrolments"] == int(summary[summary["practice_agb"] == agb]["enrolled"].sum())
    table = summary_table(data)
    assert list(table["Keten"]) == ["DM2", "CVRM", "COPD", "ASTMA"]
    assert table.index.tolist() == list(range(4))


HOSTILE_IDS = ['=HYPERLINK("http://evil.example/";"klik")', "+31612345678", "-2+3", "@SUM(A1)", "-12"]


def test_worklist_cells_cannot_become_formulas(demo_cube, tmp_path):
    cube = tmp_path / "cube"
    shutil.copytree(demo_cube, cube)
    findings = pd.read_parquet(cube / "findings.parquet")
    agb = findings["practice_agb"].iloc[0]
    mine = findings["practice_agb"] == agb
    ids = sorted(findings.loc[mine, "patient_id"].unique())
    renamed = {pid: HOSTILE_IDS[i % len(HOSTILE_IDS)] + pid for i, pid in enumerate(ids)}
    findings.loc[mine, "patient_id"] = findings.loc[mine, "patient_id"].map(renamed)
    findings.to_parquet(cube / "findings.parquet", index=False)
    cells = []
    for path in write_worklists(cube, agb, tmp_path / "out"):
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f, delimiter=";"))
        cells += [c for row in rows[1:] for c in row]
        listed = {row[0] for row in rows[1:]}
        assert listed <= {"'" + v for v in renamed.values()}
    assert cells, "the demo practice has worklist rows"
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert any(c.startswith("'=HYPERLINK(") for c in cells)
    assert any(c.isdigit() and len(c) == 4 for c in cells), "birth years stay numbers"


def test_patients_and_enrolments_counted_apart(demo_cube, demo_warehouse, demo_quarter):
    """A patient in DM2 and CVRM is one patient with two deelnames; counted from the
    warehouse rows here, independently of the cube's SQL."""
    from helpers.warehouse import Warehouse
    with Warehouse(demo_warehouse).connect(read_only=True) as con:
        patients = con.execute("SELECT practice_agb, patient_id, registered_from, registered_until, deceased_on "
                               "FROM patients").df()
        enrolments = con.execute("SELECT practice_agb, patient_id, programme, start_date, end_date "
                                 "FROM enrolments").df()
    day = pd.Timestamp(demo_quarter.first_day)
    dt = lambda s: pd.to_datetime(s)  # noqa: E731
    in_pop = patients[(dt(patients["registered_from"]) <= day)
                      & (patients["registered_until"].isna() | (dt(patients["registered_until"]) >= day))
                      & (patients["deceased_on"].isna() | (dt(patients["deceased_on"]) > day))]
    active = enrolments[(dt(enrolments["start_date"]) <= day)
                        & (enrolments["end_date"].isna() | (dt(enrolments["end_date"]) >= day))]
    active = active.merge(in_pop[["practice_agb", "patient_id"]], on=["practice_agb", "patient_id"])
    doubled = 0
    for agb in sorted(in_pop["practice_agb"].unique()):
        mine = active[active["practice_agb"] == agb]
        k = key_figures(load(demo_cube, agb))
        assert k["enrolled_patients"] == mine["patient_id"].nunique()
        assert k["enrolments"] == len(mine.drop_duplicates(["patient_id", "programme"]))
        doubled += k["enrolments"] - k["enrolled_patients"]
        text = intro_text(load(demo_cube, agb))
        assert f"van wie **{k['enrolled_patients']:,}** in ketenzorg".replace(",", ".") in text
        assert f"**{k['enrolments']:,}** deelnames".replace(",", ".") in text
    assert doubled > 0, "the demo has patients in more than one chain"
