"""Findings history in the reports: the worklist's order and columns, the Dutch texts, and the
shared resolved share through the small-number rule (``together``)."""

from __future__ import annotations

import pandas as pd

from helpers.cube.shared import core_shared_tables, findings_resolution_frame, suppress_table
from helpers.reports.worklists import open_text, since_text, worklist


def _findings(rows):
    cols = ["practice_agb", "patient_id", "programme", "kind", "control", "last_date", "birth_year", "sex",
            "first_seen", "quarters_open", "first_seen_bounded", "status"]
    return pd.DataFrame(rows, columns=cols)


def test_worklist_oldest_first_then_programme_and_number():
    f = _findings([
        ("1", "a", "DM2", "measurement_missing", "hba1c", None, 1950, "M", "2026Q3", 1, False, "new"),
        ("1", "b", "CVRM", "measurement_missing", "ldl", None, 1951, "V", "2025Q4", 4, False, "still_open"),
        ("1", "c", "DM2", "measurement_missing", "ldl", None, 1952, "M", "2025Q4", 4, False, "still_open"),
        # one row per patient and programme: the oldest of its findings gives Sinds and Open
        ("1", "a", "DM2", "no_chain_contact", None, None, 1950, "M", "2024Q4", 8, True, "still_open"),
    ])
    w = worklist(f, "oproepen")
    assert list(w.columns) == ["Patiëntnummer", "Geboortejaar", "Geslacht", "Keten", "Actie", "Sinds", "Open (kwartalen)"]
    assert list(w["Patiëntnummer"]) == ["a", "c", "b"]          # 8+, then 4 (DM2 before CVRM), ...
    assert list(w["Sinds"]) == ["2024Q4 of eerder", "2025Q4", "2025Q4"]
    assert list(w["Open (kwartalen)"]) == ["8+", "4", "4"]
    assert w.loc[0, "Actie"].startswith("ontbreekt: HbA1c")


def test_texts():
    assert since_text("2026Q1", False) == "2026Q1" and open_text(1, False) == "1"
    assert since_text("2024Q4", True) == "2024Q4 of eerder" and open_text(8, True) == "8+"


def _resolution(rows):
    practices = pd.DataFrame({"practice_agb": [r[0] for r in rows], "name": [f"P{r[0]}" for r in rows],
                              "region": ["R"] * len(rows)})
    counts = pd.DataFrame({"practice_agb": [r[0] for r in rows], "previous_quarter": [True] * len(rows),
                           "new": [r[1] for r in rows], "still_open": [r[2] for r in rows],
                           "resolved": [r[3] for r in rows]})
    return suppress_table(findings_resolution_frame(practices, counts), core_shared_tables()[0])


def test_resolved_share_shown_when_counts_are_large():
    out = _resolution([("1", 20, 60, 40), ("2", 30, 75, 25), ("3", 12, 50, 50), ("4", 40, 90, 10)]).set_index("practice_agb")
    assert out.loc["1", "resolved_pct"] == 40.0 and out.loc["1", "previous"] == 100
    assert out.loc["2", "resolved_shown"] == "25" and out.loc["2", "resolved_pct"] == 25.0


def test_one_small_count_withholds_the_three_and_enough_of_the_region():
    out = _resolution([("1", 20, 60, 4), ("2", 30, 75, 25), ("3", 12, 50, 50), ("4", 40, 90, 10)]).set_index("practice_agb")
    # 4 resolved: withheld; still open and new with it (last quarter's and this quarter's findings are
    # published in regio_practices, so either would give the 4 back), and the rate
    assert out.loc["1", ["resolved", "still_open", "new"]].isna().all()
    assert pd.isna(out.loc["1", "resolved_pct"])
    assert out.loc["1", "resolved_shown"] == "<10"
    # within the region a withheld count has company (complementary suppression)
    for c in ("resolved", "still_open", "new"):
        hidden = out[c].isna().sum()
        assert hidden >= 3 or hidden == 0, (c, out[c].tolist())
    # no identity resolved = previous - still open with one member withheld
    lone = (out[["resolved", "previous", "still_open"]].isna().sum(axis=1) == 1)
    assert not lone.any()
