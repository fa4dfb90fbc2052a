"""The status logic of findings followed over the quarters (``findings.findings_history``),
on made-up patients in a real warehouse. Quarter 2026Q3; its previous quarter 2026Q2 has
population day 2026-04-01 and last day 2026-06-30."""

from __future__ import annotations

import duckdb

from helpers.cube.findings import HISTORY_QUARTERS, _identity_sql, compute_findings, findings_history, prepare_state
from helpers.quarter import Quarter
from helpers.rules.programmes import load_programmes

Q = Quarter.parse("2026Q3")

PATIENTS = """
patient_id | birth_year | sex | registered_from | registered_until | deceased_on
p1         | 1950       | M   | 2000-01-01      |                  |
p2         | 1960       | V   | 2000-01-01      |                  |
p3         | 1970       | M   | 2000-01-01      |                  |
p4         | 1980       | V   | 2000-01-01      |                  |
"""
# p1: DM2 diagnosis for ever, never enrolled: open in every quarter of the lookback
# p2: a DM2 episode active on 2026-01-01, ended before 2026-04-01, a new one from 2026-05-01:
#     absent last quarter, so new (the earlier streak does not count)
# p3: DM2 diagnosis since 2026-02-01: open since 2026Q2, two quarters
# p4: DM2 diagnosis for ever, enrolled from 2026-08-15 (after this quarter's population day):
#     no finding now (the practice has acted); last quarter, as it stood then, it was one: resolved
EPISODES = """
patient_id | icpc   | start_date | end_date
p1         | T90.02 | 2000-01-01 |
p2         | T90.02 | 2025-12-01 | 2026-03-15
p2         | T90.02 | 2026-05-01 |
p3         | T90.02 | 2026-02-01 |
p4         | T90.02 | 2000-01-01 |
"""
ENROLMENTS = """
patient_id | programme | start_date | end_date | main_practitioner
p4         | DM2       | 2026-08-15 |          | huisarts
"""


def _history(wh, lookback=HISTORY_QUARTERS):
    rules = load_programmes()
    with wh.connect(read_only=True) as con:
        findings = compute_findings(con, prepare_state(con, Q, rules), rules)
        return findings_history(con, Q, rules, findings, lookback=lookback)


def test_status_first_seen_and_quarters_open(spec_db):
    wh = spec_db(patients=PATIENTS, episodes=EPISODES, enrolments=ENROLMENTS)
    f, resolved, counts = _history(wh)
    f = f[f["kind"] == "diagnosis_not_enrolled"].set_index("patient_id")
    assert sorted(f.index) == ["p1", "p2", "p3"]
    assert tuple(f.loc["p1", ["status", "first_seen", "quarters_open", "first_seen_bounded"]]) == \
        ("still_open", "2024Q4", HISTORY_QUARTERS, True)
    assert tuple(f.loc["p2", ["status", "first_seen", "quarters_open", "first_seen_bounded"]]) == \
        ("new", "2026Q3", 1, False)
    assert tuple(f.loc["p3", ["status", "first_seen", "quarters_open", "first_seen_bounded"]]) == \
        ("still_open", "2026Q2", 2, False)
    # oldest first
    assert list(f.index) == ["p1", "p3", "p2"]
    assert list(resolved["patient_id"]) == ["p4"] and list(resolved["kind"]) == ["diagnosis_not_enrolled"]
    dm2 = counts[(counts["programme"] == "DM2") & (counts["group"] == "registration")].iloc[0]
    assert (dm2["new"], dm2["still_open"], dm2["resolved"], dm2["oldest_first_seen"]) == (1, 2, 1, "2024Q4")
    assert bool(dm2["previous_quarter"])


def test_a_shorter_lookback_bounds_first_seen(spec_db):
    wh = spec_db(patients=PATIENTS, episodes=EPISODES, enrolments=ENROLMENTS)
    f, _, _ = _history(wh, lookback=2)
    f = f[f["kind"] == "diagnosis_not_enrolled"].set_index("patient_id")
    assert tuple(f.loc["p1", ["first_seen", "quarters_open", "first_seen_bounded"]]) == ("2026Q2", 2, True)
    assert tuple(f.loc["p3", ["first_seen", "quarters_open", "first_seen_bounded"]]) == ("2026Q2", 2, True)
    f1, _, _ = _history(wh, lookback=1)
    assert set(f1["status"]) == {"new"} and set(f1["quarters_open"]) == {1}


def test_without_a_previous_population_everything_is_new(spec_db):
    late = PATIENTS.replace("2000-01-01", "2026-05-01")
    wh = spec_db(patients=late, episodes=EPISODES, enrolments=ENROLMENTS)
    f, resolved, counts = _history(wh)
    assert len(f) and set(f["status"]) == {"new"} and set(f["first_seen"]) == {"2026Q3"}
    assert resolved.empty
    assert not counts["previous_quarter"].any()


def test_a_control_missing_then_overdue_is_one_finding():
    con = duckdb.connect()
    got = con.execute(f"SELECT {_identity_sql('k')} FROM (VALUES ('measurement_missing'), ('measurement_overdue'), "
                      f"('diagnosis_not_enrolled')) t(k)").fetchall()
    assert [g[0] for g in got] == ["measurement", "measurement", "diagnosis_not_enrolled"]
