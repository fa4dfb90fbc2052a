"""Findings followed from quarter to quarter, on a real two-quarter delivery
(``tests/fixtures/two_quarters``, its README says who is who): loaded, 2026Q3 prepared alone
(the previous quarter is computed from the same extraction), and the HIS-analyse and the
regional report built.

Practice 11111111: A (P3) had a DM2 finding in 2026Q2 and is enrolled now (resolved), B (P2)
still has one (open since 2026Q1), C (P1) has a new one; D (P4) has a COPD control overdue
since 2026Q1 and one resolved; E (P5) had a DM2 finding in 2026Q2 and deregistered since
(departed, not resolved). Practice 22222222 has no previous quarter."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import build, counts, write_batch
from helpers.cube import prepare_quarter, read_shared, read_slice
from helpers.reports import his_analyse as his
from helpers.reports import regio
from helpers.reports.worklists import write_worklists
from helpers.warehouse import Warehouse

DATASET = Path(__file__).resolve().parents[1] / "fixtures" / "two_quarters"
OLD, NEW = "11111111", "22222222"


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> Path:
    wh = tmp_path_factory.mktemp("two_quarters") / "warehouse.duckdb"
    report = Warehouse(wh).ingest(DATASET)
    assert report.ok, report.summary()
    return prepare_quarter(wh, "2026Q3")


def _row(df, patient, programme, kind, control=None):
    sel = df[(df["patient_id"] == patient) & (df["programme"] == programme) & (df["kind"] == kind)]
    if control is not None:
        sel = sel[sel["control"] == control]
    assert len(sel) == 1, (patient, programme, kind, control, df)
    return sel.iloc[0]


def test_statuses_first_seen_and_age(cube):
    f = read_slice(cube, "findings", practice_agb=OLD)
    b = _row(f, "P2", "DM2", "diagnosis_not_enrolled")
    assert (b["status"], b["first_seen"], b["quarters_open"], b["first_seen_bounded"]) == ("still_open", "2026Q1", 3, False)
    c = _row(f, "P1", "DM2", "diagnosis_not_enrolled")
    assert (c["status"], c["first_seen"], c["quarters_open"]) == ("new", "2026Q3", 1)
    d = _row(f, "P4", "COPD", "measurement_overdue", "smoking")
    assert (d["status"], d["first_seen"], d["quarters_open"]) == ("still_open", "2026Q1", 3)
    assert "P3" not in set(f["patient_id"]), "A is enrolled and every control is done: no finding now"
    assert "P5" not in set(f["patient_id"]), "E is no longer registered: no finding now"
    assert len(f) == 3
    resolved = read_slice(cube, "findings_resolved", practice_agb=OLD)
    assert sorted(zip(resolved["patient_id"], resolved["programme"], resolved["kind"], resolved["control"].fillna(""))) == [
        ("P3", "DM2", "diagnosis_not_enrolled", ""), ("P4", "COPD", "measurement_overdue", "dyspnoea")]


def test_no_previous_quarter_means_everything_is_new(cube):
    f = read_slice(cube, "findings", practice_agb=NEW)
    assert list(f["status"]) == ["new"] and list(f["first_seen"]) == ["2026Q3"]
    data = his.load(cube, NEW)
    assert not his.has_previous_quarter(data)
    assert "Geen vorig kwartaal" in his.history_text(data)
    assert "Geen vorig kwartaal in de gegevens: alle bevindingen zijn nieuw." in his.intro_text(data)
    t = his.history_table(data)
    dm2 = t[(t["Keten"] == "DM2") & (t["Soort"] == "Registratiebevindingen")].iloc[0]
    assert (dm2["Opgelost"], dm2["Vertrokken"], dm2["Nieuw"], dm2["Nog open"]) == ("–", "–", "1", "–")
    assert his.resolved_list(data).empty


def test_per_programme_counts_match_the_summary(cube):
    data = his.load(cube, OLD)
    assert his.has_previous_quarter(data)
    t = his.history_table(data).set_index(["Keten", "Soort"])
    cols = ["Opgelost", "Vertrokken", "Nieuw", "Nog open", "Open sinds"]
    assert tuple(t.loc[("DM2", "Registratiebevindingen"), cols]) == ("1", "1", "1", "1", "2026Q1")
    assert tuple(t.loc[("COPD", "Openstaande controles"), cols[:4]]) == ("1", "0", "0", "1")
    assert tuple(t.loc[("CVRM", "Registratiebevindingen"), cols]) == ("0", "0", "0", "0", "–")
    assert list(t.index.get_level_values(0).unique()) == ["DM2", "CVRM", "COPD", "ASTMA"]
    # last quarter's findings in the summary = resolved + still open + departed; this quarter's = new + still open
    h = data.findings_history
    s = data.summary.set_index("programme")
    dm2 = h[(h["programme"] == "DM2") & (h["group"] == "registration")].iloc[0]
    assert s.loc["DM2", "diagnosis_not_enrolled_prev"] == dm2["resolved"] + dm2["still_open"] + dm2["departed"] == 3
    assert s.loc["DM2", "diagnosis_not_enrolled"] == dm2["new"] + dm2["still_open"] == 2
    assert int(h["departed"].sum()) == 1
    assert ("Sinds het vorige kwartaal **2** bevindingen en controles opgelost, **1** nieuw, 2 nog open; "
            "1 vervallen doordat de patiënt is vertrokken (niet meer ingeschreven of overleden).") in his.intro_text(data)
    assert "**vertrokken**" in his.history_text(data)
    resolved = his.resolved_list(data)
    assert list(resolved["Patiëntnummer"]) == ["P3", "P4"]
    assert list(resolved["Opgelost"]) == ["Diagnose, niet in ketenzorg", "Meting verlopen: MRC-dyspnoescore of CCQ-totaalscore"]


def test_worklists_oldest_first(cube, tmp_path):
    data = his.load(cube, OLD)
    tables = his.worklist_tables(data)
    _, aanmelden = tables["aanmelden"]
    # B (3 quarters open) before C (new), though C's number comes first
    assert list(aanmelden["Patiëntnummer"]) == ["P2", "P1"]
    assert list(aanmelden["Sinds"]) == ["2026Q1", "2026Q3"]
    assert list(aanmelden["Open (kwartalen)"]) == ["3", "1"]
    _, oproepen = tables["oproepen"]
    assert list(oproepen[["Patiëntnummer", "Sinds", "Open (kwartalen)"]].itertuples(index=False, name=None)) == \
        [("P4", "2026Q1", "3")]
    listed = his.finding_list(data, "diagnosis_not_enrolled")
    assert list(listed["Patiëntnummer"]) == ["P2", "P1"] and list(listed["Sinds"]) == ["2026Q1", "2026Q3"]
    paths = {p.name: p for p in write_worklists(cube, OLD, tmp_path)}
    csv = pd.read_csv(paths["werklijst_aanmelden.csv"], sep=";", dtype=str, encoding="utf-8-sig")
    assert list(csv["Patiëntnummer"]) == ["P2", "P1"] and list(csv["Open (kwartalen)"]) == ["3", "1"]


def test_regional_resolved_share_is_shared_and_suppressed(cube):
    r = read_shared(cube, "findings_resolution").set_index("practice_agb")
    assert "patient_id" not in r.columns
    # 4 findings last quarter of patients still registered (E, who left, is in none), 2 resolved:
    # below the small-number rule, so withheld
    assert r.loc[OLD, "previous_shown"] == "<10" and pd.isna(r.loc[OLD, "resolved"])
    assert pd.isna(r.loc[OLD, "resolved_pct"])
    assert bool(r.loc[OLD, "previous_quarter"]) and not bool(r.loc[NEW, "previous_quarter"])
    data = regio.load(cube, "Regio Test", "2026Q3")
    t = regio.resolution_table(data).set_index("Praktijk")
    assert t.loc["Praktijk Twee Kwartalen", "Opgelost"] == "<10"
    assert t.loc["Praktijk Twee Kwartalen", "Opgelost (%)"] == "–"
    assert t.loc["Praktijk Nieuw", "Opgelost (%)"] == "geen vorig kwartaal"
    assert t.loc["Praktijk Nieuw", "Opgelost"] == "–"


def test_same_inputs_same_bytes(cube, tmp_path):
    again = prepare_quarter(cube.parent.parent / "warehouse.duckdb", "2026Q3", force=True)
    assert again == cube
    for name in ("findings", "findings_resolved", "findings_history"):
        a = read_slice(cube, name)
        assert a.equals(read_slice(again, name))
    wh = tmp_path / "warehouse.duckdb"
    assert Warehouse(wh).ingest(DATASET).ok
    other = prepare_quarter(wh, "2026Q3")
    for name in ("findings.parquet", "findings_resolved.parquet", "findings_history.parquet",
                 "shared/findings_resolution.parquet"):
        assert (cube / name).read_bytes() == (other / name).read_bytes(), name


@pytest.mark.slow
def test_reports_show_the_history(cube, tmp_path):
    batch = write_batch(tmp_path / "batch.yaml", dataset=str(DATASET), warehouse=str(tmp_path / "wh.duckdb"),
                        quarters=["2026Q3"], practices="all", reports=["his_analyse", "regio"], formats=["html"],
                        workers=1)
    code, out = build(batch, "--outputs", str(tmp_path / "out"))
    assert code == 0, out
    assert counts(out)["failed"] == 0
    q = tmp_path / "out" / "2026Q3"
    html = (q / OLD / "his_analyse.html").read_text()
    assert "Sinds het vorige kwartaal" in html and "Opgelost sinds het vorige kwartaal (2)" in html
    assert "Open (kwartalen)" in html
    # the aanmelden worklist lists B before C
    section = html[html.index("Aanmelden voor ketenzorg"):]
    assert section.index(">P2<") < section.index(">P1<")
    new = (q / NEW / "his_analyse.html").read_text()
    assert "Geen vorig kwartaal" in new
    regional = next(q.glob("regio/*/regio.html")).read_text()
    assert "Opgelost sinds het vorige kwartaal" in regional and "geen vorig kwartaal" in regional
    assert not re.search(r">P[1-9]<", regional), "no patient number in a shared report"
