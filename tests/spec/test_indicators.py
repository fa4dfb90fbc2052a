"""One spec test per indicator in parameters/indicators/: a handful of made-up patients and
the expected answer for each (``NUM``: in the numerator, ``DEN``: in the denominator only,
``OUT``: not in the denominator), and so the expected numerator and denominator, with the edges (first and last day of the window,
a patient enrolled mid-quarter, a deceased patient, an implausible value).

Quarter 2026Q3: F = 2026-07-01, L = 2026-09-30; 12-month window from 2025-10-01,
36-month window from 2023-10-01.
"""

from __future__ import annotations

import pytest

from helpers.cube.findings import prepare_state
from helpers.cube.indicators import compute_indicators, indicator_patients
from helpers.rules.indicators import load_indicators
from helpers.rules.programmes import load_programmes
from helpers.quarter import Quarter

Q = Quarter.parse("2026Q3")
RULES = load_programmes()
INDICATORS = load_indicators(RULES)
NHG = {c.id: c.nhg for c in RULES.codes.measurements.values()}
GOOD_VALUE = {"hba1c": "50", "sbp": "130", "ldl": "2,0", "egfr": "80", "acr": "1,5", "foot": "0",
              "fundus": "normaal", "bmi": "27,5", "weight": "80", "smoking": "nee", "mrc": "2", "ccq": "1,5",
              "exacerbations": "0", "fev1_pct": "65", "acq": "0,5", "act": "22"}
BAD_VALUE = {"hba1c": "530", "sbp": "13", "ldl": "99", "egfr": "900", "acr": "999", "foot": "7",
             "fundus": "onbekend", "bmi": "270", "weight": "8000", "smoking": "soms", "mrc": "9",
             "ccq": "9", "exacerbations": "99", "fev1_pct": "400", "acq": "9", "act": "99"}

HEAD_P = "patient_id | birth_year | sex | registered_from | registered_until | deceased_on"
HEAD_E = "patient_id | programme | start_date | end_date | main_practitioner"
HEAD_M = "patient_id | date | nhg_code | value"
NUM, DEN, OUT = "numerator", "denominator only", "not in the denominator"


def check(spec_db, per_patient, indicator_id: str, expected: dict[str, str], patients: list[str],
          enrolments: list[str], measurements: list[str], episodes: list[str] = (),
          prescriptions: list[str] = ()) -> None:
    """Run one indicator over the made-up patients; assert each patient's answer (``expected``:
    patient -> NUM, DEN or OUT), then the practice's numerator and denominator that follow."""
    tables = {
        "patients": "\n".join([HEAD_P, *patients]),
        "enrolments": "\n".join([HEAD_E, *enrolments]),
        "measurements": "\n".join([HEAD_M, *measurements]),
        "episodes": "\n".join(["patient_id | icpc | start_date | end_date", *episodes]),
        "prescriptions": "\n".join(["patient_id | date | atc | duration_days", *prescriptions]),
    }
    wh = spec_db(**tables)
    ind = INDICATORS[indicator_id]
    with wh.connect(read_only=True) as con:
        state = prepare_state(con, Q, RULES)
        rows = indicator_patients(con, state, ind)
        df = compute_indicators(con, state, {indicator_id: ind})
    found = {p.split("|")[0].strip(): OUT for p in patients}
    found.update({r.patient_id: NUM if r.in_numerator is True else DEN for r in rows.itertuples()})
    per_patient(indicator_id, expected, found)
    row = df.iloc[0]
    totals = (sum(v == NUM for v in expected.values()), sum(v in (NUM, DEN) for v in expected.values()))
    assert (int(row["numerator"]), int(row["denominator"])) == totals, f"{indicator_id}: (numerator, denominator)"


def adult(pid: str, birth_year: int = 1955, deceased: str = "") -> str:
    return f"{pid} | {birth_year} | M | 2000-01-01 | {deceased} | {deceased}"


PROCESS = [i for i in INDICATORS.values() if i.numerator == "measured"]


@pytest.mark.parametrize("ind", PROCESS, ids=[i.id for i in PROCESS])
def test_process_indicator(spec_db, per_patient, ind):
    """measured: a at the window's first day and b at its last day count; c one day too early
    does not; d (enrolled mid-quarter) and e (deceased) are outside the denominator; f has an
    implausible value only."""
    concept = ind.concepts[-1]
    start = Q.months_back_start(ind.window_months)
    day_before = start.fromordinal(start.toordinal() - 1)
    programme = ind.programme
    patients = [adult("a"), adult("b"), adult("c"), adult("d"), adult("e", deceased="2026-05-01"), adult("f")]
    enrol = ([f"{p} | {programme} | 2016-01-01 | | huisarts" for p in "abcef"]
             + [f"d | {programme} | 2026-08-01 | | huisarts"])
    code, good, bad = NHG[concept], GOOD_VALUE[concept], BAD_VALUE[concept]
    meas = [f"a | {start} | {code} | {good}", f"b | {Q.last_day} | {code} | {good}",
            f"c | {day_before} | {code} | {good}", f"d | 2026-08-15 | {code} | {good}",
            f"e | 2026-03-01 | {code} | {good}", f"f | 2026-03-01 | {code} | {bad}"]
    expected = {"a": NUM, "b": NUM, "c": DEN, "d": OUT, "e": OUT, "f": DEN}
    check(spec_db, per_patient, ind.id, expected, patients, enrol, meas)


def _outcome_case(spec_db, per_patient, ind_id: str, concept: str, values: list[tuple[str, str]],
                  expected: dict[str, str], birth_years: dict[str, int] | None = None, episodes=()):
    """values: (patient, value) measured on 2026-03-01; an extra patient 'z' without any
    measurement stays out of a 'measured' denominator. A later value beats an earlier one."""
    ind = INDICATORS[ind_id]
    pids = sorted({p for p, _ in values} | {"z"})
    patients = [adult(p, (birth_years or {}).get(p, 1955)) for p in pids]
    enrol = [f"{p} | {ind.programme} | 2016-01-01 | | huisarts" for p in pids]
    meas = [f"{p} | 2026-03-01 | {NHG[concept]} | {v}" for p, v in values]
    check(spec_db, per_patient, ind_id, {"z": OUT, **expected}, patients, enrol, meas, episodes=list(episodes))


def test_dm2_hba1c_on_target(spec_db, per_patient):
    # 53 counts (≤), 54 does not; d's implausible 530 is ignored, its 58 counts; z unmeasured
    _outcome_case(spec_db, per_patient, "dm2_hba1c_on_target", "hba1c",
                  [("a", "53"), ("c", "54"), ("d", "530"), ("d", "58")], {"a": NUM, "c": DEN, "d": DEN})


def test_dm2_hba1c_last_value_wins(spec_db, per_patient):
    patients = [adult("a"), adult("b")]
    enrol = [f"{p} | DM2 | 2016-01-01 | | huisarts" for p in "ab"]
    # a: 60 then 50 (on target); b: 50 then 60 (not)
    meas = ["a | 2026-01-01 | 2816 | 60", "a | 2026-06-01 | 2816 | 50",
            "b | 2026-01-01 | 2816 | 50", "b | 2026-06-01 | 2816 | 60"]
    check(spec_db, per_patient, "dm2_hba1c_on_target", {"a": NUM, "b": DEN}, patients, enrol, meas)


def test_same_day_readings_the_higher_counts(spec_db, per_patient):
    patients = [adult("a"), adult("b")]
    enrol = [f"{p} | DM2 | 2016-01-01 | | huisarts" for p in "ab"]
    # a: 150 and 130 on the same day -> 150 counts (not on target), in either row order
    meas = ["a | 2026-06-01 | 1744 | 130", "a | 2026-06-01 | 1744 | 150",
            "b | 2026-06-01 | 1744 | 150", "b | 2026-06-01 | 1744 | 130"]
    check(spec_db, per_patient, "dm2_sbp_on_target", {"a": DEN, "b": DEN}, patients, enrol, meas)


def test_dm2_sbp_on_target_age_dependent(spec_db, per_patient):
    # under 80: ≤ 140; from 80 (born 1946 -> 80 in 2026): ≤ 160
    _outcome_case(spec_db, per_patient, "dm2_sbp_on_target", "sbp",
                  [("a", "140"), ("b", "141"), ("c", "155"), ("d", "161")],
                  {"a": NUM, "b": DEN, "c": NUM, "d": DEN}, birth_years={"c": 1946, "d": 1946})


def test_dm2_ldl_on_target(spec_db, per_patient):
    _outcome_case(spec_db, per_patient, "dm2_ldl_on_target", "ldl", [("a", "2,5"), ("b", "2,6"), ("c", "1,1")],
                  {"a": NUM, "b": DEN, "c": NUM})


def test_cvrm_sbp_on_target(spec_db, per_patient):
    _outcome_case(spec_db, per_patient, "cvrm_sbp_on_target", "sbp", [("a", "139"), ("b", "140")],
                  {"a": NUM, "b": DEN})


def test_cvrm_ldl_on_target_stricter_for_hvz_under_70(spec_db, per_patient):
    # a: HVZ, 60 years, 2.0 -> misses 1.8; b: HVZ, 60, 1.7 -> ok; c: HVZ, 75, 2.0 -> ok (2.6);
    # d: no HVZ (hypertension), 60, 2.0 -> ok
    eps = ["a | K75 | 2015-01-01 |", "b | K75 | 2015-01-01 |", "c | K75 | 2015-01-01 |", "d | K86 | 2015-01-01 |"]
    _outcome_case(spec_db, per_patient, "cvrm_ldl_on_target", "ldl",
                  [("a", "2,0"), ("b", "1,7"), ("c", "2,0"), ("d", "2,0")],
                  {"a": DEN, "b": NUM, "c": NUM, "d": NUM},
                  birth_years={"a": 1966, "b": 1966, "c": 1951, "d": 1966}, episodes=eps)


@pytest.mark.parametrize("ind_id", ["cvrm_smokers", "copd_smokers"])
def test_smokers(spec_db, per_patient, ind_id):
    # last status counts: b stopped after smoking; case-insensitive; z not measured
    _outcome_case(spec_db, per_patient, ind_id, "smoking", [("a", "ja"), ("c", "JA"), ("b", "gestopt")],
                  {"a": NUM, "b": DEN, "c": NUM})


def test_astma_with_exacerbation(spec_db, per_patient):
    _outcome_case(spec_db, per_patient, "astma_with_exacerbation", "exacerbations",
                  [("a", "0"), ("b", "1"), ("c", "3")], {"a": DEN, "b": NUM, "c": NUM})


def test_cvrm_statin_hvz(spec_db, per_patient):
    patients = [adult(p) for p in "abcd"]
    enrol = [f"{p} | CVRM | 2016-01-01 | | huisarts" for p in "abcd"]
    eps = ["a | K75 | 2015-01-01 |", "b | K75 | 2015-01-01 |", "c | K75 | 2015-01-01 |", "d | K86 | 2015-01-01 |"]
    # a: statin in window; b: statin before the window; c: other drug; d: not HVZ
    rx = ["a | 2026-02-01 | C10AA05 | 90", "b | 2025-09-30 | C10AA07 | 90", "c | 2026-02-01 | C09AA05 | 90",
          "d | 2026-02-01 | C10AA05 | 90"]
    check(spec_db, per_patient, "cvrm_statin_hvz", {"a": NUM, "b": DEN, "c": DEN, "d": OUT},
          patients, enrol, [], episodes=eps, prescriptions=rx)


def test_a_wrong_answer_names_the_patient_and_the_indicator(per_patient):
    with pytest.raises(AssertionError) as exc:
        per_patient("dm2_hba1c_on_target", {"a": NUM, "b": DEN, "c": OUT}, {"a": NUM, "b": NUM, "c": OUT})
    assert "dm2_hba1c_on_target: patient b: expected 'denominator only', found 'numerator'" in str(exc.value)
    assert "patient a" not in str(exc.value) and "patient c" not in str(exc.value)


def test_every_indicator_has_a_spec():
    outcome_tests = {"dm2_hba1c_on_target", "dm2_sbp_on_target", "dm2_ldl_on_target", "cvrm_sbp_on_target",
                     "cvrm_ldl_on_target", "cvrm_smokers", "copd_smokers", "astma_with_exacerbation",
                     "cvrm_statin_hvz"}
    covered = {i.id for i in PROCESS} | outcome_tests
    assert set(INDICATORS) == covered, f"indicators without a spec test: {set(INDICATORS) - covered}"
