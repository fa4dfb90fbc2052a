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


# p5: DM2 diagnosis for ever, never enrolled, deregistered on 2026-05-20 (after last quarter's
#     population day 2026-04-01, before this quarter's 2026-07-01): last quarter's finding is gone
#     because p5 left, not because the practice acted
# p6: likewise, deceased on 2026-06-10
# p7: enrolled in DM2, deregistered before last quarter's population day: 'enrolled_deregistered'
#     then; the enrolment ended on 2026-06-01, so gone now: the practice acted (resolved)
LEFT_PATIENTS = PATIENTS + """p5         | 1955       | M   | 2000-01-01      | 2026-05-20       |
p6         | 1945       | V   | 2000-01-01      |                  | 2026-06-10
p7         | 1965       | M   | 2000-01-01      | 2026-03-01       |
"""
LEFT_EPISODES = EPISODES + """p5         | T90.02 | 2000-01-01 |
p6         | T90.02 | 2000-01-01 |
p7         | T90.02 | 2000-01-01 |
"""
LEFT_ENROLMENTS = ENROLMENTS + """p7         | DM2       | 2010-01-01 | 2026-06-01 | huisarts
"""


def test_a_patient_who_left_is_departed_not_resolved(spec_db):
    wh = spec_db(patients=LEFT_PATIENTS, episodes=LEFT_EPISODES, enrolments=LEFT_ENROLMENTS)
    f, resolved, counts = _history(wh)
    assert not {"p5", "p6"} & set(f["patient_id"]), "outside the population now: no finding"
    got = sorted(zip(resolved["patient_id"], resolved["kind"]))
    assert got == [("p4", "diagnosis_not_enrolled"), ("p7", "enrolled_deregistered")]
    dm2 = counts[(counts["programme"] == "DM2") & (counts["group"] == "registration")].iloc[0]
    assert (dm2["new"], dm2["still_open"], dm2["resolved"], dm2["departed"]) == (1, 2, 2, 2)
    other = counts[~((counts["programme"] == "DM2") & (counts["group"] == "registration"))]
    assert int(other["departed"].sum()) == 0


def test_departed_findings_stay_out_of_the_resolved_share(spec_db):
    from helpers.cube.shared import findings_resolution_frame
    wh = spec_db(patients=LEFT_PATIENTS, episodes=LEFT_EPISODES, enrolments=LEFT_ENROLMENTS)
    _, _, counts = _history(wh)
    with wh.connect(read_only=True) as con:
        practices = con.execute("SELECT practice_agb, name, region FROM practices").df()
    row = findings_resolution_frame(practices, counts).iloc[0]
    # share = opgelost / (opgelost + nog open): the two who left are in neither
    assert (row["resolved"], row["still_open"], row["previous"]) == (2, 2, 4)
