"""Spec tests of the frequent-attender monitor's prepare step (helpers.reports.veelgebruikers):
a handful of made-up patients in two practices, 2026Q3 (rolling year 2025-10-01 .. 2026-09-30,
quarters 2025Q4 .. 2026Q3), and the expected frequent attenders, profiles, candidates,
0-meting and quarters after selection.

Band 45-64 men (born 1970): a1 and b1 have 6 contacts each, a2 two, b2 one. With fewer than
10 patients in the band, a frequent attender is whoever has the most (nobody has more): a1
and b1 (a tie: both). a3, a woman born 1940 (85+), is alone in her band: a frequent attender
with her 3 contacts. c1 (practice C, born 1970) has 6 contacts in each of the last three years:
frequent in all three (the only one in the band in the two earlier years), so persistent. c2
(born 1990) is alone in her band but left the practice on 2026-06-30: a frequent attender of
the year, no candidate.
"""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.mirror import compute_mirror
from helpers.mirror.frequent import frequent_attenders
from helpers.reports import veelgebruikers as vg

from mirror_fixtures import AGB, QUARTER, care_group  # tests/spec is on sys.path (rootdir conftest)

PATIENTS = """
| practice | patient_id | birth_year | sex | registered_from | registered_until |
| A | a1 | 1970 | M | 2015-01-01 | |
| A | a2 | 1970 | M | 2015-01-01 | |
| A | a3 | 1940 | V | 2015-01-01 | |
| B | b1 | 1970 | M | 2015-01-01 | |
| B | b2 | 1970 | M | 2015-01-01 | |
| C | c1 | 1970 | M | 2015-01-01 | |
| C | c2 | 1990 | V | 2015-01-01 | 2026-06-30 |
"""
CONTACTS = """
| practice | contact_id | patient_id | date | kind | role | icpc |
| A | 1 | a1 | 2025-09-30 | consult | huisarts | R05 |
| A | 2 | a1 | 2025-11-05 | consult | poh-ggz | P76 |
| A | 3 | a1 | 2025-12-01 | consult_lang | huisarts | P76 |
| A | 4 | a1 | 2026-01-10 | telefonisch | assistent | P74 |
| A | 5 | a1 | 2026-04-01 | e-consult | huisarts | R74 |
| A | 6 | a1 | 2026-07-01 | visite | huisarts | |
| A | 7 | a1 | 2026-09-30 | consult | poh-ggz | P76 |
| A | 8 | a2 | 2025-06-01 | consult | huisarts | L03 |
| A | 9 | a2 | 2026-05-05 | consult | huisarts | L03 |
| A | 10 | a2 | 2026-06-05 | telefonisch | assistent | |
| A | 11 | a3 | 2026-02-02 | visite | huisarts | K77 |
| A | 12 | a3 | 2026-02-20 | visite_lang | huisarts | K77 |
| A | 13 | a3 | 2026-03-03 | telefonisch | assistent | A05 |
| B | 1 | b1 | 2025-10-10 | consult | huisarts | A04 |
| B | 2 | b1 | 2025-12-10 | consult | huisarts | N01 |
| B | 3 | b1 | 2026-02-10 | consult | huisarts | A04 |
| B | 4 | b1 | 2026-05-10 | consult_lang | huisarts | L03 |
| B | 5 | b1 | 2026-06-10 | telefonisch | huisarts | N01 |
| B | 6 | b1 | 2026-08-10 | consult | huisarts | D01 |
| B | 7 | b2 | 2026-03-03 | consult | huisarts | R74 |
| C | 1 | c1 | 2023-11-01 | consult | huisarts | |
| C | 2 | c1 | 2024-01-01 | consult | huisarts | |
| C | 3 | c1 | 2024-03-01 | consult | huisarts | |
| C | 4 | c1 | 2024-05-01 | consult | huisarts | |
| C | 5 | c1 | 2024-07-01 | consult | huisarts | |
| C | 6 | c1 | 2024-09-01 | consult | huisarts | |
| C | 7 | c1 | 2024-11-01 | consult | huisarts | |
| C | 8 | c1 | 2025-01-01 | consult | huisarts | |
| C | 9 | c1 | 2025-03-01 | consult | huisarts | |
| C | 10 | c1 | 2025-05-01 | consult | huisarts | |
| C | 11 | c1 | 2025-07-01 | consult | huisarts | |
| C | 12 | c1 | 2025-09-01 | consult | huisarts | |
| C | 13 | c1 | 2025-11-01 | consult | huisarts | |
| C | 14 | c1 | 2026-01-01 | consult | huisarts | |
| C | 15 | c1 | 2026-03-01 | consult | huisarts | |
| C | 16 | c1 | 2026-05-01 | consult | huisarts | |
| C | 17 | c1 | 2026-07-01 | consult | huisarts | |
| C | 18 | c1 | 2026-09-01 | consult | huisarts | |
| C | 19 | c2 | 2026-02-01 | consult | huisarts | |
| C | 20 | c2 | 2026-08-01 | consult | huisarts | |
"""
EPISODES = """
| practice | patient_id | icpc | start_date | end_date |
| A | a1 | P76 | 2024-03-01 | |
| A | a3 | K86 | 2010-01-01 | |
| A | a3 | K77 | 2020-01-01 | |
| A | a3 | A05 | 2025-01-01 | |
| A | a3 | T90.02 | 2010-01-01 | 2015-01-01 |
| B | b1 | K86 | 2026-01-01 | |
"""
PLAN = """
| practice | patient_id | selected_on | profile | ended_on |
| A | a1 | 2026-01-15 | ggz | |
| A | a2 | 2025-10-01 | | 2026-03-31 |
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    wh = care_group(tmp_path_factory.mktemp("vg") / "w.duckdb", patients=PATIENTS, contacts=CONTACTS,
                    episodes=EPISODES, veelgebruikers_plan=PLAN)
    with wh.connect(read_only=True) as con:
        out = vg.prepare(con, QUARTER)
        mirror = compute_mirror(con, QUARTER)["mirror"]
        fa = frequent_attenders(con, QUARTER, ks=(0, 1))
    return out, mirror, fa


def _patients(out) -> pd.DataFrame:
    return out["veelgebruikers_patienten"].set_index("patient_id")


def test_the_frequent_attenders_are_the_mirrors(prepared):
    out, mirror, fa = prepared
    p = _patients(out)
    assert sorted(p.index) == ["a1", "a3", "b1", "c1", "c2"]
    assert p["persistent"].to_dict() == {"a1": False, "a3": False, "b1": False, "c1": True, "c2": False}
    # c2: the contact of 2026-08-01, after she left, does not count (as in the praktijkspiegel)
    assert not p.loc["c2", "registered"] and p.loc["c1", "registered"] and p.loc["c2", "contacts"] == 1
    assert p.loc["a1", "contacts"] == 6 and p.loc["b1", "contacts"] == 6 and p.loc["a3", "contacts"] == 3
    assert p.loc["a1", "threshold"] == 6 and p.loc["a3", "threshold"] == 3
    assert p["practice_agb"].to_dict() == {"a1": AGB["A"], "a3": AGB["A"], "b1": AGB["B"], "c1": AGB["C"], "c2": AGB["C"]}
    # the same rule as the praktijkspiegel, window by window: its count is our number of rows
    m = mirror[mirror["measure"] == "veelgebruikers_aandeel"].set_index(["practice_agb", "window"])["O"]
    per = fa.groupby(["practice_agb", "k"]).size()
    for (agb, k), n in per.items():
        assert m.loc[(agb, k)] == n
    assert m.loc[(AGB["A"], 0)] == 2 and m.loc[(AGB["B"], 0)] == 1 and m.loc[(AGB["C"], 0)] == 2
    pers = mirror[mirror["measure"] == "veelgebruikers_persistent"].set_index(["practice_agb", "window"])["O"]
    assert pers.loc[(AGB["C"], 0)] == 1 and pers.loc[(AGB["A"], 0)] == 0


def test_contacts_by_kind_and_quarter(prepared):
    out, _, _ = prepared
    p = _patients(out)
    assert p.loc["a1", ["consult", "telefonisch", "visite", "e_consult", "poh_ggz"]].tolist() == [3, 1, 1, 1, 2]
    assert p.loc["a3", ["consult", "telefonisch", "visite", "e_consult"]].tolist() == [0, 1, 2, 0]
    q = out["veelgebruikers_kwartalen"].set_index(["patient_id", "quarter"])
    assert q.loc["a1", "contacts"].tolist() == [2, 1, 1, 2]          # 2025Q4 .. 2026Q3
    assert q.loc[("a1", "2026Q3"), ["consult", "visite"]].tolist() == [1, 1]
    assert q.loc["a3", "contacts"].tolist() == [0, 3, 0, 0]
    assert q.loc["b1", "contacts"].tolist() == [2, 1, 2, 1]
    assert (out["veelgebruikers_kwartalen"].groupby("patient_id")["contacts"].sum() == p["contacts"]).all()


def test_conditions_and_profiles(prepared):
    out, _, _ = prepared
    p = _patients(out)
    assert p.loc["a3", "conditions"] == "hypertension,heart_failure,frailty"  # the DM2 episode ended in 2015
    assert p.loc["a3", "n_conditions"] == 3
    assert p.loc["a1", "conditions"] == "" and p.loc["b1", "conditions"] == "hypertension"
    # a1: P76 on the problem list, two POH-GGZ contacts; b1: symptom codes only (A04, N01, L03, D01)
    assert p.loc["a1", "profiles"] == "ggz"
    assert p.loc["b1", "profiles"] == "solk"
    # a3: 86, frail, two chronic conditions, all three contacts by phone or visit in one quarter
    assert p.loc["a3", "profiles"] == "multimorbiditeit,kwetsbare_oudere,acuut"


def test_plan_candidates_and_monitor(prepared):
    out, _, _ = prepared
    p = _patients(out)
    assert p.loc["a1", "in_plan"] and not p.loc["a3", "in_plan"]
    assert pd.isna(p.loc["a1", "candidate_rank"]) and p.loc["a3", "candidate_rank"] == 1 and p.loc["b1", "candidate_rank"] == 1
    assert p.loc["c1", "candidate_rank"] == 1 and pd.isna(p.loc["c2", "candidate_rank"])   # c2 left the practice
    m = out["veelgebruikers_plan_monitor"].set_index(["patient_id", "period"])
    # a1, selected 2026-01-15: 0-meting 2025-01-15 .. 2026-01-14 (the consult of 2025-09-30 counts)
    zero = m.loc[("a1", "0-meting")]
    assert (str(zero["period_start"].date()), str(zero["period_end"].date())) == ("2025-01-15", "2026-01-14")
    assert zero[["contacts", "consult", "telefonisch", "visite", "e_consult"]].tolist() == [4, 3, 1, 0, 0]
    assert m.loc["a1"].index.tolist() == ["0-meting", "2026Q1", "2026Q2", "2026Q3"]
    assert m.loc["a1", "contacts"].tolist() == [4, 0, 1, 2]
    assert m.loc[("a1", "2026Q1"), "days"] == 76            # 15 January .. 31 March
    assert m.loc[("a1", "2026Q3"), ["visite", "consult"]].tolist() == [1, 1]
    # a2 left the plan on 2026-03-31: two quarters, no later ones
    assert m.loc["a2"].index.tolist() == ["0-meting", "2025Q4", "2026Q1"]
    assert m.loc["a2", "contacts"].tolist() == [1, 0, 0]
    assert set(out["veelgebruikers_plan_monitor"]["practice_agb"]) == {AGB["A"]}   # B has no plan


def test_practice_summary(prepared):
    out, _, _ = prepared
    s = out["veelgebruikers_praktijk"].set_index(["practice_agb", "period"])
    assert s.loc[(AGB["A"], "huidig"), ["frequent_attenders", "contacts"]].tolist() == [2, 9]
    assert s.loc[(AGB["B"], "huidig"), ["frequent_attenders", "contacts"]].tolist() == [1, 6]
    assert (AGB["A"], "0-meting") in s.index   # 2025Q3 is 4 quarters back: its year is built


def test_the_baseline_year_is_the_regioprestaties_0_meting(prepared):
    """2025Q3 (parameters/veelgebruikers.yaml): the year 2024-10-01 .. 2025-09-30, when only c1
    had contacts enough in the band (a1 one, a2 one)."""
    out, _, _ = prepared
    s = out["veelgebruikers_praktijk"].set_index(["practice_agb", "period"])
    assert s.xs("0-meting", level="period")["frequent_attenders"].to_dict() == {AGB["A"]: 0, AGB["B"]: 0, AGB["C"]: 1}
    assert str(s.loc[(AGB["C"], "0-meting"), "window_end"].date()) == "2025-09-30"
    # in that year c1 is not persistent: he has no contacts in the year ending 2023Q3
    assert s.loc[(AGB["C"], "0-meting"), ["contacts", "persistent"]].tolist() == [6, 0]
