"""Two shared tables read by one report: findings_resolution's sums (previous = resolved +
still open, this quarter = new + still open) must not give back a count that regio_practices
withholds (registration findings and open controls, now and last quarter, published apart).
The case a review found: practice A had 4 registration findings last quarter (withheld in
regio_practices, with two complementary cells), 50 open controls (shown); a published
'previous' of 54 gave the 4 back, and the complementary cells likewise."""

import pandas as pd

from helpers.cube.shared import core_shared_tables, write_shared
from helpers.reports.registry import REGIO_PREPARE

PRACTICES = next(t for t in REGIO_PREPARE.shared if t.name == "regio_practices")
RESOLUTION = core_shared_tables()[0]
LINKED = ("registration_findings", "registration_findings_prev", "open_controls", "open_controls_prev")


def _frames():
    prac = pd.DataFrame({"region": ["R"] * 5, "practice_agb": list("ABCDE"), "name": list("ABCDE"),
                         "list_size": [3000, 3100, 3200, 3300, 3400], "enrolled_patients": [300, 310, 320, 330, 340],
                         "registration_findings": [30, 31, 32, 33, 34], "registration_findings_prev": [4, 40, 41, 42, 43],
                         "open_controls": [60, 61, 62, 63, 64], "open_controls_prev": [50, 51, 52, 53, 54],
                         "indicators_met": [1] * 5, "indicators_scored": [2] * 5})
    for c in ("list_size", "enrolled_patients", *LINKED):
        prac[c] = prac[c].astype("Int64")
    prev = prac["registration_findings_prev"].astype(int) + prac["open_controls_prev"].astype(int)
    now = prac["registration_findings"].astype(int) + prac["open_controls"].astype(int)
    res = pd.DataFrame({"region": "R", "practice_agb": list("ABCDE"), "name": list("ABCDE"), "previous": prev,
                        "resolved": prev - 40, "still_open": 40, "new": now - 40, "departed": 0,
                        "previous_quarter": True})
    return prac, res


def test_no_sum_in_findings_resolution_gives_back_a_withheld_regio_practices_count(tmp_path):
    prac, res = _frames()
    # findings_resolution first in the declaration: write_shared still suppresses it after its link
    write_shared(tmp_path, [RESOLUTION, PRACTICES], {RESOLUTION.name: res, PRACTICES.name: prac})
    shown_prac = pd.read_parquet(tmp_path / "regio_practices.parquet").set_index("practice_agb")
    shown_res = pd.read_parquet(tmp_path / "findings_resolution.parquet").set_index("practice_agb")
    exact = prac.set_index("practice_agb")
    hidden = [(agb, c) for agb in exact.index for c in LINKED if pd.isna(shown_prac.loc[agb, c])]
    assert ("A", "registration_findings_prev") in hidden           # the small count, withheld there
    for agb, c in hidden:
        other = {"registration_findings_prev": "open_controls_prev", "open_controls_prev": "registration_findings_prev",
                 "registration_findings": "open_controls", "open_controls": "registration_findings"}[c]
        last = c.endswith("_prev")
        # what a reader could form from findings_resolution for this practice
        total = (shown_res.loc[agb, "previous"] if pd.notna(shown_res.loc[agb, "previous"]) else
                 (shown_res.loc[agb, "resolved"] + shown_res.loc[agb, "still_open"]
                  if pd.notna(shown_res.loc[agb, "resolved"]) and pd.notna(shown_res.loc[agb, "still_open"]) else None)) \
            if last else (shown_res.loc[agb, "new"] + shown_res.loc[agb, "still_open"]
                          if pd.notna(shown_res.loc[agb, "new"]) and pd.notna(shown_res.loc[agb, "still_open"]) else None)
        if total is not None and pd.notna(shown_prac.loc[agb, other]):
            raise AssertionError(f"{agb} {c}: {total} - {shown_prac.loc[agb, other]} gives back {exact.loc[agb, c]}")
    # the practice with the withheld count shows no figure of its resolution, and the region's
    # other practices still show theirs where nothing links them
    assert shown_res.loc["A", ["previous", "resolved", "still_open", "new"]].isna().all()
    assert pd.isna(shown_res.loc["A", "resolved_pct"])
    assert shown_res[["previous"]].notna().sum().iloc[0] >= 1


def test_without_a_withheld_count_nothing_more_is_withheld(tmp_path):
    prac, res = _frames()
    prac.loc[0, "registration_findings_prev"] = 14                       # nothing small any more
    res.loc[0, ["previous", "resolved"]] = [64, 24]
    write_shared(tmp_path, [PRACTICES, RESOLUTION], {RESOLUTION.name: res, PRACTICES.name: prac})
    shown_res = pd.read_parquet(tmp_path / "findings_resolution.parquet")
    assert shown_res[["previous", "resolved", "still_open", "new"]].notna().all().all()


def test_a_small_departed_count_withholds_the_row_since_last_quarters_total_gives_it_back(tmp_path):
    """departed = (registration findings + open controls last quarter, in regio_practices) -
    previous: a withheld departed count would come back from a shown previous."""
    prac, res = _frames()
    res.loc[4, "departed"] = 3
    res.loc[4, ["previous", "resolved"]] = [94, 54]       # 97 last quarter: 94 still here, 3 left
    write_shared(tmp_path, [PRACTICES, RESOLUTION], {RESOLUTION.name: res, PRACTICES.name: prac})
    shown_prac = pd.read_parquet(tmp_path / "regio_practices.parquet").set_index("practice_agb")
    shown_res = pd.read_parquet(tmp_path / "findings_resolution.parquet").set_index("practice_agb")
    assert shown_prac.loc["E", ["registration_findings_prev", "open_controls_prev"]].notna().all()
    assert shown_res.loc["E", ["previous", "resolved", "still_open", "new", "departed"]].isna().all()
