"""One spec test per registration rule and control (docs/registration-rules.md).

Each test states the findings expected of every made-up patient (none, when a patient is not
named); a failure names the patient, the rule and what was found instead.

Quarter 2026Q3: population day F = 2026-07-01, last day L = 2026-09-30,
twelve-month window 2025-10-01 .. 2026-09-30.
"""

from __future__ import annotations

import dataclasses

import pytest

from helpers.cube.findings import CONTROL_KINDS, compute_findings, prepare_state
from helpers.rules.programmes import load_programmes
from helpers.quarter import Quarter

Q = Quarter.parse("2026Q3")

# Adults registered long before F, alive: the default population.
PATIENTS = """
patient_id | birth_year | sex | registered_from | registered_until | deceased_on
p1         | 1950       | M   | 2000-01-01      |                  |
p2         | 1960       | V   | 2000-01-01      |                  |
p3         | 1970       | M   | 2000-01-01      |                  |
p4         | 1980       | V   | 2000-01-01      |                  |
p5         | 1990       | M   | 2000-01-01      |                  |
"""


def _found(wh, kinds: str, rules=None) -> tuple[set[tuple], list[str]]:
    """The quarter's findings of ``kinds`` ("registration" or "controls") as (patient, programme,
    kind[, control]) rows, and the id of every made-up patient."""
    rules = rules or load_programmes()
    with wh.connect(read_only=True) as con:
        f = compute_findings(con, prepare_state(con, Q, rules), rules)
        patients = [r[0] for r in con.execute("SELECT patient_id FROM patients ORDER BY 1").fetchall()]
    if kinds == "registration":
        return {(r.patient_id, r.programme, r.kind) for r in f[~f["kind"].isin(CONTROL_KINDS)].itertuples()}, patients
    return {(r.patient_id, r.programme, r.kind, r.control)
            for r in f[f["kind"].isin(CONTROL_KINDS)].itertuples()}, patients


def _per_patient(rows, patients) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {p: [] for p in patients}
    for patient, *rest in rows:
        out.setdefault(patient, []).append(tuple(rest))
    return {p: sorted(v, key=str) for p, v in out.items()}


def expect(per_patient, wh, rule: str, expected: set[tuple], kinds: str = "registration", rules=None) -> None:
    """Assert the findings of each patient under ``rule`` (``expected``: (patient, programme, kind[,
    control]) rows; a patient not named expects none)."""
    found, patients = _found(wh, kinds, rules)
    per_patient(rule, _per_patient(expected, patients), _per_patient(found, patients))


def test_diagnosis_not_enrolled(spec_db, per_patient):
    wh = spec_db(patients=PATIENTS, episodes="""
        patient_id | icpc   | start_date | end_date
        p1         | T90.02 | 2015-01-01 |             
        p2         | T90.02 | 2026-07-01 |             
        p3         | T90.02 | 2026-07-02 |             
        p4         | T90.02 | 2015-01-01 | 2026-06-30  
        p5         | K74    | 2020-01-01 |             
    """)
    # p1 active; p2 starts on F (counts); p3 starts after F; p4 ended before F; p5 HVZ -> CVRM
    expect(per_patient, wh, "diagnosis_not_enrolled", {
        ("p1", "DM2", "diagnosis_not_enrolled"),
        ("p2", "DM2", "diagnosis_not_enrolled"),
        ("p5", "CVRM", "diagnosis_not_enrolled"),
    })


def test_diagnosis_not_enrolled_exclusions(spec_db, per_patient):
    wh = spec_db(patients="""
        patient_id | birth_year | sex | registered_from | registered_until | deceased_on
        kid        | 2010       | V   | 2010-01-01      |                  |
        adult18    | 2008       | M   | 2010-01-01      |                  |
        dm         | 1950       | M   | 2000-01-01      |                  |
        hyper      | 1950       | M   | 2000-01-01      |                  |
        sub        | 1950       | M   | 2000-01-01      |                  |
        astma01    | 1950       | M   | 2000-01-01      |                  |
    """, episodes="""
        patient_id | icpc   | start_date | end_date
        kid        | T90.02 | 2024-01-01 |
        adult18    | R96    | 2024-01-01 |
        dm         | T90.02 | 2015-01-01 |
        dm         | K75    | 2018-01-01 |
        hyper      | K86    | 2018-01-01 |
        sub        | K90.03 | 2018-01-01 |
        astma01    | R96.01 | 2018-01-01 |
    """, enrolments="""
        patient_id | programme | start_date | end_date | main_practitioner
        dm         | DM2       | 2015-02-01 |          | huisarts
    """)
    # kid: under 18; adult18: turns 18 in 2026 -> counts; dm: in DM2, CVRM excluded by DM2;
    # hyper: hypertension alone only supports CVRM; sub: K90.03 is a listed HVZ sub-code;
    # astma01: R96.01 is excluded from astma
    expect(per_patient, wh, "diagnosis_not_enrolled_exclusions", {
        ("adult18", "ASTMA", "diagnosis_not_enrolled"),
        ("sub", "CVRM", "diagnosis_not_enrolled"),
    })


def test_enrolled_during_the_quarter_is_not_flagged(spec_db, per_patient):
    wh = spec_db(patients=PATIENTS, episodes="""
        patient_id | icpc   | start_date | end_date
        p1         | T90.02 | 2015-01-01 |
        p2         | T90.02 | 2015-01-01 |
    """, enrolments="""
        patient_id | programme | start_date | end_date | main_practitioner
        p1         | DM2       | 2026-08-15 |          | huisarts
    """)
    # p1 was enrolled during the quarter: the practice already acted; p2 was not
    expect(per_patient, wh, "enrolled_during_the_quarter_is_not_flagged", {("p2", "DM2", "diagnosis_not_enrolled")})


def test_enrolled_without_diagnosis(spec_db, per_patient):
    wh = spec_db(patients=PATIENTS, episodes="""
        patient_id | icpc   | start_date | end_date
        p2         | T90.02 | 2015-01-01 |
        p3         | K86    | 2015-01-01 |
        p4         | T90.02 | 2015-01-01 | 2026-06-30
    """, enrolments="""
        patient_id | programme | start_date | end_date   | main_practitioner
        p1         | DM2       | 2016-01-01 |            | huisarts
        p2         | DM2       | 2016-01-01 |            | huisarts
        p3         | CVRM      | 2016-01-01 |            | huisarts
        p4         | DM2       | 2016-01-01 |            | huisarts
        p5         | COPD      | 2026-07-02 |            | huisarts
    """)
    # p3: hypertension supports CVRM; p5's enrolment starts after F: not enrolled
    expect(per_patient, wh, "enrolled_without_diagnosis", {
        ("p1", "DM2", "enrolled_without_diagnosis"),
        ("p4", "DM2", "enrolled_without_diagnosis"),
    })


def test_main_practitioner(spec_db, per_patient):
    wh = spec_db(patients=PATIENTS, episodes="""
        patient_id | icpc   | start_date | end_date
        p1         | R95    | 2015-01-01 |
        p2         | R95    | 2015-01-01 |
        p3         | R95    | 2015-01-01 |
    """, enrolments="""
        patient_id | programme | start_date | end_date   | main_practitioner
        p1         | COPD      | 2016-01-01 |            | specialist
        p2         | COPD      | 2016-01-01 |            |
        p3         | COPD      | 2016-01-01 | 2020-01-01 | huisarts
        p3         | COPD      | 2020-01-02 |            | specialist
    """)
    # p3: the latest running enrolment decides
    expect(per_patient, wh, "main_practitioner", {
        ("p1", "COPD", "main_practitioner_specialist"),
        ("p2", "COPD", "main_practitioner_unknown"),
        ("p3", "COPD", "main_practitioner_specialist"),
    })


def test_enrolled_deceased_deregistered_minor(spec_db, per_patient):
    wh = spec_db(patients="""
        patient_id | birth_year | sex | registered_from | registered_until | deceased_on
        dead       | 1940       | M   | 2000-01-01      | 2026-03-01       | 2026-03-01
        deadonF    | 1940       | M   | 2000-01-01      |                  | 2026-07-01
        deadafter  | 1940       | V   | 2000-01-01      |                  | 2026-07-02
        moved      | 1950       | V   | 2000-01-01      | 2026-06-30       |
        movedonF   | 1950       | V   | 2000-01-01      | 2026-07-01       |
        minor      | 2012       | M   | 2012-01-01      |                  |
    """, episodes="""
        patient_id | icpc   | start_date | end_date
        dead       | T90.02 | 2015-01-01 |
        deadonF    | T90.02 | 2015-01-01 |
        deadafter  | T90.02 | 2015-01-01 |
        moved      | R95    | 2015-01-01 |
        movedonF   | R95    | 2015-01-01 |
        minor      | R96    | 2020-01-01 |
    """, enrolments="""
        patient_id | programme | start_date | end_date | main_practitioner
        dead       | DM2       | 2016-01-01 |          | huisarts
        deadonF    | DM2       | 2016-01-01 |          | huisarts
        deadafter  | DM2       | 2016-01-01 |          | huisarts
        moved      | COPD      | 2016-01-01 |          | huisarts
        movedonF   | COPD      | 2016-01-01 |          | huisarts
        minor      | ASTMA     | 2021-01-01 |          | huisarts
    """)
    # deceased on F is not alive on F; deregistered on F was still registered on F
    expect(per_patient, wh, "enrolled_deceased_deregistered_minor", {
        ("dead", "DM2", "enrolled_deceased"),
        ("deadonF", "DM2", "enrolled_deceased"),
        ("moved", "COPD", "enrolled_deregistered"),
        ("minor", "ASTMA", "enrolled_under_18"),
    })


def test_enrolled_dm2_and_cvrm(spec_db, per_patient):
    wh = spec_db(patients=PATIENTS, episodes="""
        patient_id | icpc   | start_date | end_date
        p1         | T90.02 | 2015-01-01 |
        p1         | K75    | 2015-01-01 |
        p2         | T90.02 | 2015-01-01 |
        p2         | K75    | 2015-01-01 |
    """, enrolments="""
        patient_id | programme | start_date | end_date   | main_practitioner
        p1         | DM2       | 2016-01-01 |            | huisarts
        p1         | CVRM      | 2016-01-01 |            | huisarts
        p2         | DM2       | 2016-01-01 |            | huisarts
        p2         | CVRM      | 2014-01-01 | 2015-12-31 | huisarts
    """)
    # p2 moved from CVRM to DM2: fine (and not 'ended with diagnosis': DM2 excludes CVRM)
    expect(per_patient, wh, "enrolled_dm2_and_cvrm", {("p1", "CVRM", "enrolled_dm2_and_cvrm")})
    # the rule is data: without CVRM's excluded_if in programmes.yaml, p1 is no finding and p2's
    # ended CVRM enrolment with an active HVZ is one
    rules = load_programmes()
    cvrm = dataclasses.replace(rules.programmes["CVRM"], excluded_if=())
    without = dataclasses.replace(rules, programmes={**rules.programmes, "CVRM": cvrm})
    expect(per_patient, wh, "enrolled_dm2_and_cvrm without excluded_if",
           {("p2", "CVRM", "enrolment_ended_with_diagnosis")}, rules=without)


def test_enrolment_ended_with_diagnosis(spec_db, per_patient):
    wh = spec_db(patients=PATIENTS, episodes="""
        patient_id | icpc | start_date | end_date
        p1         | R95  | 2015-01-01 |
        p2         | R95  | 2015-01-01 |
        p3         | R95  | 2015-01-01 |
        p4         | R95  | 2015-01-01 | 2026-01-01
    """, enrolments="""
        patient_id | programme | start_date | end_date   | main_practitioner
        p1         | COPD      | 2016-01-01 | 2026-06-30 | huisarts
        p2         | COPD      | 2016-01-01 | 2026-06-30 | specialist
        p3         | COPD      | 2016-01-01 | 2026-07-01 | huisarts
        p4         | COPD      | 2016-01-01 | 2026-01-01 | huisarts
    """)
    # p2: specialist took over (a recorded reason); p3 still enrolled on F (ends on F);
    # p4: the diagnosis ended too
    expect(per_patient, wh, "enrolment_ended_with_diagnosis", {("p1", "COPD", "enrolment_ended_with_diagnosis")})


DM2_PATIENT = """
patient_id | birth_year | sex | registered_from | registered_until | deceased_on
d1         | 1950       | M   | 2000-01-01      |                  |
"""
DM2_EPISODE = """
patient_id | icpc   | start_date | end_date
d1         | T90.02 | 2015-01-01 |
"""
DM2_ENROLMENT = """
patient_id | programme | start_date | end_date | main_practitioner
d1         | DM2       | 2016-01-01 |          | huisarts
"""
POH_CONTACT = """
contact_id | patient_id | date       | kind    | role  | icpc
c1         | d1         | 2026-05-01 | consult | poh-s | T90.02
"""


def _all_dm2_measured_except(skip: set[str], dates: dict[str, str] | None = None,
                             values: dict[str, str] | None = None) -> str:
    defaults = {"hba1c": (2816, "53"), "sbp": (1744, "135"), "ldl": (542, "2,4"), "egfr": (3583, "80"),
                "acr": (40, "1,2"), "weight": (357, "82"), "smoking": (1739, "nee"), "foot": (2196, "0"),
                "fundus": (2129, "normaal")}
    rows = ["patient_id | date | nhg_code | value"]
    for concept, (nhg, value) in defaults.items():
        if concept in skip:
            continue
        d = (dates or {}).get(concept, "2026-03-01")
        v = (values or {}).get(concept, value)
        rows.append(f"d1 | {d} | {nhg} | {v}")
    return "\n".join(rows)


def test_controls_all_met_gives_nothing(spec_db, per_patient):
    wh = spec_db(patients=DM2_PATIENT, episodes=DM2_EPISODE, enrolments=DM2_ENROLMENT,
                 contacts=POH_CONTACT, measurements=_all_dm2_measured_except(set()))
    expect(per_patient, wh, "controls_all_met_gives_nothing", set(), kinds="controls")
    expect(per_patient, wh, "controls_all_met_gives_nothing", set())


def test_measurement_missing(spec_db, per_patient):
    wh = spec_db(patients=DM2_PATIENT, episodes=DM2_EPISODE, enrolments=DM2_ENROLMENT,
                 contacts=POH_CONTACT, measurements=_all_dm2_measured_except({"acr", "weight"}))
    # weight is missing but BMI is not there either: the bmi_or_weight control is missing
    expect(per_patient, wh, "measurement_missing", {("d1", "DM2", "measurement_missing", "acr"),
                            ("d1", "DM2", "measurement_missing", "bmi_or_weight")}, kinds="controls")


def test_measurement_window_edges(spec_db, per_patient):
    wh = spec_db(patients=DM2_PATIENT, episodes=DM2_EPISODE, enrolments=DM2_ENROLMENT,
                 contacts=POH_CONTACT, measurements=_all_dm2_measured_except(set(), dates={
                     "hba1c": "2025-10-01",   # first day of the window: counts
                     "sbp": "2025-09-30",     # one day before: overdue
                     "ldl": "2026-09-30",     # last day: counts
                     "egfr": "2026-10-01",    # after the quarter: does not count -> missing
                     "fundus": "2023-10-01",  # 36-month window starts 2023-10-01: counts
                     "foot": "2024-01-01",    # 12-month interval: overdue
                 }))
    expect(per_patient, wh, "measurement_window_edges", {("d1", "DM2", "measurement_overdue", "sbp"),
                            ("d1", "DM2", "measurement_missing", "egfr"),
                            ("d1", "DM2", "measurement_overdue", "foot")}, kinds="controls")


def test_implausible_value_does_not_count(spec_db, per_patient):
    wh = spec_db(patients=DM2_PATIENT, episodes=DM2_EPISODE, enrolments=DM2_ENROLMENT,
                 contacts=POH_CONTACT,
                 measurements=_all_dm2_measured_except(set(), values={"hba1c": "530", "smoking": "soms"}))
    expect(per_patient, wh, "implausible_value_does_not_count", {("d1", "DM2", "measurement_missing", "hba1c"),
                            ("d1", "DM2", "measurement_missing", "smoking")}, kinds="controls")


def test_no_chain_contact(spec_db, per_patient):
    wh = spec_db(patients=DM2_PATIENT, episodes=DM2_EPISODE + "d1 | K75 | 2015-01-01 |",
                 enrolments=DM2_ENROLMENT + "d1 | CVRM | 2016-01-01 | | huisarts",
                 contacts="""
                    contact_id | patient_id | date       | kind    | role     | icpc
                    c1         | d1         | 2025-09-30 | consult | poh-s    | T90.02
                    c2         | d1         | 2026-05-01 | consult | huisarts | T90.02
                 """,
                 measurements=_all_dm2_measured_except(set()))
    found = {c for c in _found(wh, "controls")[0] if c[2] == "no_chain_contact"}
    # once per patient, under the first programme in programmes.yaml order (DM2)
    assert found == {("d1", "DM2", "no_chain_contact", None)}


def test_deceased_patient_gets_no_controls(spec_db, per_patient):
    wh = spec_db(patients="""
        patient_id | birth_year | sex | registered_from | registered_until | deceased_on
        d1         | 1950       | M   | 2000-01-01      |                  | 2026-02-01
    """, episodes=DM2_EPISODE, enrolments=DM2_ENROLMENT)
    expect(per_patient, wh, "deceased_patient_gets_no_controls", set(), kinds="controls")
    expect(per_patient, wh, "deceased_patient_gets_no_controls", {("d1", "DM2", "enrolled_deceased")})
