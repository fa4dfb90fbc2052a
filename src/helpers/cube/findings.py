"""Registration findings and controls due, for every practice of a quarter in one SQL pass.

The rules are those of docs/registration-rules.md, parameterised by programmes.yaml and
codes.yaml. Each kind has a spec test in tests/spec/test_registration_rules.py.

>>> from helpers.warehouse import Warehouse                      # doctest: +SKIP
>>> con = Warehouse("data/warehouse.duckdb").connect(read_only=True)  # doctest: +SKIP
>>> rules = load_programmes()                                      # doctest: +SKIP
>>> state = prepare_state(con, Quarter.parse("2026Q3"), rules)     # doctest: +SKIP
>>> findings = compute_findings(con, state, rules)                 # doctest: +SKIP

Every SQL builder here takes the :class:`~helpers.cube.state.PreparedState` that
``prepare_state`` returned and reads only the tables it names.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from .population import build_active_diagnoses, build_enrolment_state, build_patient_state
from .state import PreparedState
from ..rules.programmes import Rules
from ..quarter import Quarter

REGISTRATION_KINDS = (
    "diagnosis_not_enrolled",
    "enrolment_ended_with_diagnosis",
    "enrolled_without_diagnosis",
    "main_practitioner_specialist",
    "main_practitioner_unknown",
    "enrolled_deceased",
    "enrolled_deregistered",
    "enrolled_under_18",
    "enrolled_dm2_and_cvrm",
)
CONTROL_KINDS = ("measurement_missing", "measurement_overdue", "no_chain_contact")
FINDING_KINDS = REGISTRATION_KINDS + CONTROL_KINDS

# Dutch labels for the reports, and the action the POH takes (the worklist it lands on).
KIND_LABELS_NL = {
    "diagnosis_not_enrolled": "Diagnose, niet in ketenzorg",
    "enrolment_ended_with_diagnosis": "Ketenzorg beëindigd, diagnose nog actief",
    "enrolled_without_diagnosis": "In ketenzorg zonder passende diagnose",
    "main_practitioner_specialist": "In ketenzorg, specialist is hoofdbehandelaar",
    "main_practitioner_unknown": "In ketenzorg, hoofdbehandelaar onbekend",
    "enrolled_deceased": "In ketenzorg, overleden",
    "enrolled_deregistered": "In ketenzorg, uitgeschreven",
    "enrolled_under_18": "In ketenzorg, jonger dan 18",
    "enrolled_dm2_and_cvrm": "Zowel in DM2 als in CVRM",
    "measurement_missing": "Meting ontbreekt",
    "measurement_overdue": "Meting verlopen",
    "no_chain_contact": "Geen ketenzorgcontact in 12 maanden",
}
WORKLISTS = {
    "aanmelden": ("diagnosis_not_enrolled", "enrolment_ended_with_diagnosis"),
    "hoofdbehandelaar_controleren": ("main_practitioner_specialist", "main_practitioner_unknown"),
    "ketenzorg_beeindigen": ("enrolled_deceased", "enrolled_deregistered", "enrolled_under_18",
                             "enrolled_without_diagnosis", "enrolled_dm2_and_cvrm"),
    "oproepen": ("measurement_missing", "measurement_overdue", "no_chain_contact"),
}
WORKLIST_TITLES_NL = {
    "aanmelden": "Aanmelden voor ketenzorg (of reden vastleggen)",
    "hoofdbehandelaar_controleren": "Hoofdbehandelaar controleren",
    "ketenzorg_beeindigen": "Ketenzorg beëindigen of diagnose vastleggen",
    "oproepen": "Oproepen voor controle",
}

FINDING_COLUMNS = ["practice_agb", "patient_id", "programme", "kind", "control", "last_date", "birth_year", "sex"]


def build_concepts(con: duckdb.DuckDBPyConnection, state: PreparedState, rules: Rules) -> None:
    """Create ``state.concepts`` (NHG number -> concept with plausible range) and ``state.controls_def``."""
    rows = []
    for c in rules.codes.measurements.values():
        lo, hi = c.plausible if c.plausible else (None, None)
        rows.append((c.id, c.nhg, c.kind, lo, hi, [v.lower() for v in c.values] or None))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {state.concepts} (concept VARCHAR, nhg_code INTEGER, kind VARCHAR, "
                "low DOUBLE, high DOUBLE, allowed VARCHAR[])")
    con.executemany(f"INSERT INTO {state.concepts} VALUES (?, ?, ?, ?, ?, ?)", rows)
    ctl = []
    for p in rules.programmes.values():
        for order, c in enumerate(p.controls):
            for k in c.concepts:
                ctl.append((p.id, c.id, order, k, c.interval_months))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {state.controls_def} (programme VARCHAR, control VARCHAR, "
                "ord INTEGER, concept VARCHAR, interval_months INTEGER)")
    con.executemany(f"INSERT INTO {state.controls_def} VALUES (?, ?, ?, ?, ?)", ctl)


def build_measurement_validity(con: duckdb.DuckDBPyConnection, state: PreparedState) -> None:
    """Create ``state.meas``: every measurement of a configured concept up to the quarter's last day
    (read through ``state.concepts``), with the
    reason it cannot be used (``issue``) or NULL when it counts (``plausible``).

    A measurement does not count when its value is outside the concept's plausible range
    (or not one of its coded answers), or when it is dated before the birth year or after
    death; such rows are left out of every figure and listed in the data-quality section.
    """
    until = state.quarter.last_day.isoformat()
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {state.meas} AS
        SELECT *, issue IS NULL AS plausible FROM (
            SELECT m.practice_agb, m.patient_id, m.date, c.concept, m.value, m.value_num,
                   CASE
                     WHEN year(m.date) < p.birth_year THEN 'date_before_birth'
                     WHEN p.deceased_on IS NOT NULL AND m.date > p.deceased_on THEN 'date_after_death'
                     WHEN c.kind = 'numeric' AND m.value_num IS NULL THEN 'value_not_numeric'
                     WHEN c.kind = 'numeric' AND (m.value_num < c.low OR m.value_num > c.high)
                       THEN 'value_out_of_range'
                     WHEN c.kind = 'coded' AND NOT list_contains(c.allowed, lower(trim(m.value)))
                       THEN 'value_unknown_code'
                   END AS issue
            FROM measurements m JOIN {state.concepts} c USING (nhg_code)
            JOIN patients p USING (practice_agb, patient_id)
            WHERE m.date <= DATE '{until}'
        )
    """)


def prepare_state(con: duckdb.DuckDBPyConnection, quarter: Quarter, rules: Rules,
                  prefix: str = "") -> PreparedState:
    """Build every temp table the findings, indicators and data quality of ``quarter`` need
    (names: ``PreparedState.named(quarter, prefix)``) and return their state."""
    state = PreparedState.named(quarter, prefix)
    build_patient_state(con, state)
    build_active_diagnoses(con, state, rules.codes)
    build_enrolment_state(con, state)
    build_concepts(con, state, rules)
    build_measurement_validity(con, state)
    return state


def _in_list(values) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")" if values else "(NULL)"


def registration_sql(state: PreparedState, rules: Rules) -> str:
    """The registration findings as one SQL query over the tables of ``state``."""
    F = state.quarter.first_day.isoformat()
    pat, dx, enr, enr_ended = state.pat, state.dx, state.enr, state.enr_ended
    parts = []
    for p in rules.programmes.values():
        diag = _in_list(p.diagnosis_groups)
        incl = _in_list(p.inclusion)
        excl = _in_list(p.excluded_if)
        parts.append(f"""
        SELECT practice_agb, patient_id, '{p.id}' AS programme,
               CASE WHEN x.ended_pid IS NOT NULL THEN 'enrolment_ended_with_diagnosis'
                    ELSE 'diagnosis_not_enrolled' END AS kind
        FROM (
            SELECT pt.practice_agb, pt.patient_id, ee.patient_id AS ended_pid, ee.main_practitioner AS ended_mp
            FROM {pat} pt
            LEFT JOIN {enr_ended} ee ON ee.practice_agb = pt.practice_agb AND ee.patient_id = pt.patient_id
                                  AND ee.programme = '{p.id}'
            WHERE pt.in_population AND pt.age >= {rules.minimum_age}
              AND EXISTS (SELECT 1 FROM {dx} dx WHERE dx.practice_agb = pt.practice_agb
                          AND dx.patient_id = pt.patient_id AND dx.grp IN {incl})
              AND NOT EXISTS (SELECT 1 FROM {dx} dx WHERE dx.practice_agb = pt.practice_agb
                              AND dx.patient_id = pt.patient_id AND dx.grp IN {excl})
              AND NOT EXISTS (SELECT 1 FROM {enr} enr WHERE enr.practice_agb = pt.practice_agb
                              AND enr.patient_id = pt.patient_id AND enr.programme = '{p.id}')
              -- enrolled after the population day: the practice has already acted
              AND NOT EXISTS (SELECT 1 FROM enrolments en WHERE en.practice_agb = pt.practice_agb
                              AND en.patient_id = pt.patient_id AND en.programme = '{p.id}'
                              AND en.start_date > DATE '{F}')
        ) x
        WHERE x.ended_mp IS DISTINCT FROM 'specialist'
        UNION ALL
        SELECT e.practice_agb, e.patient_id, e.programme, 'enrolled_without_diagnosis'
        FROM {enr} e JOIN {pat} pt USING (practice_agb, patient_id)
        WHERE e.programme = '{p.id}' AND pt.in_population
          AND NOT EXISTS (SELECT 1 FROM {dx} dx WHERE dx.practice_agb = e.practice_agb
                          AND dx.patient_id = e.patient_id AND dx.grp IN {diag})""")
    # excluded_if of programmes.yaml, for enrolments: enrolled in a programme and also in one whose
    # inclusion covers an excluded group (CVRM excludes dm2, which DM2 includes)
    exclusions = [f"""
        SELECT c.practice_agb, c.patient_id, '{excluded}', 'enrolled_dm2_and_cvrm'
        FROM {enr} c JOIN {enr} d ON c.practice_agb = d.practice_agb AND c.patient_id = d.patient_id
        JOIN {pat} pt ON pt.practice_agb = c.practice_agb AND pt.patient_id = c.patient_id
        WHERE c.programme = '{excluded}' AND d.programme = '{covering}' AND pt.in_population"""
        for excluded, covering in rules.exclusions()]
    per_programme = " UNION ALL ".join(parts)
    return f"""
        {per_programme}
        UNION ALL
        SELECT e.practice_agb, e.patient_id, e.programme,
               CASE WHEN pt.deceased THEN 'enrolled_deceased' ELSE 'enrolled_deregistered' END
        FROM {enr} e JOIN {pat} pt USING (practice_agb, patient_id)
        WHERE pt.deceased OR pt.deregistered
        UNION ALL
        SELECT e.practice_agb, e.patient_id, e.programme, 'enrolled_under_18'
        FROM {enr} e JOIN {pat} pt USING (practice_agb, patient_id)
        WHERE pt.in_population AND pt.age < {rules.minimum_age}
        UNION ALL
        SELECT e.practice_agb, e.patient_id, e.programme,
               CASE WHEN e.main_practitioner = 'specialist' THEN 'main_practitioner_specialist'
                    ELSE 'main_practitioner_unknown' END
        FROM {enr} e JOIN {pat} pt USING (practice_agb, patient_id)
        WHERE pt.in_population AND (e.main_practitioner IS NULL OR e.main_practitioner = 'specialist')
        {"".join("UNION ALL" + x for x in exclusions)}
    """


def controls_sql(state: PreparedState, rules: Rules) -> str:
    """Controls due: per enrolled patient and control, the last plausible measurement."""
    quarter = state.quarter
    L = quarter.last_day.isoformat()
    prog_order = "CASE t.programme " + " ".join(
        f"WHEN '{p}' THEN {i}" for i, p in enumerate(rules.programmes)) + " END"
    roles = _in_list(rules.chain_contact_roles)
    contact_from = quarter.months_back_start(rules.chain_contact_months).isoformat()
    return f"""
        WITH target AS (
            SELECT e.practice_agb, e.patient_id, e.programme
            FROM {state.enr} e JOIN {state.pat} pt USING (practice_agb, patient_id) WHERE pt.in_population
        ),
        last AS (
            SELECT t.practice_agb, t.patient_id, t.programme, cd.control, cd.ord, cd.interval_months,
                   max(m.date) AS last_date
            FROM target t
            JOIN {state.controls_def} cd ON cd.programme = t.programme
            LEFT JOIN {state.meas} m ON m.practice_agb = t.practice_agb AND m.patient_id = t.patient_id
                            AND m.concept = cd.concept AND m.plausible
            GROUP BY ALL
        )
        SELECT practice_agb, patient_id, programme,
               CASE WHEN last_date IS NULL THEN 'measurement_missing' ELSE 'measurement_overdue' END AS kind,
               control, last_date
        FROM last
        WHERE last_date IS NULL
           OR last_date < CAST(DATE '{L}' + INTERVAL 1 DAY - to_months(interval_months) AS DATE)
        UNION ALL
        SELECT practice_agb, patient_id, programme, 'no_chain_contact', NULL, NULL FROM (
            SELECT t.*, row_number() OVER (PARTITION BY t.practice_agb, t.patient_id
                                           ORDER BY {prog_order}) AS rn
            FROM target t
            WHERE NOT EXISTS (
                SELECT 1 FROM contacts c WHERE c.practice_agb = t.practice_agb AND c.patient_id = t.patient_id
                  AND c.role IN {roles} AND c.date BETWEEN DATE '{contact_from}' AND DATE '{L}')
        ) WHERE rn = 1
    """


def compute_findings(con: duckdb.DuckDBPyConnection, state: PreparedState, rules: Rules) -> pd.DataFrame:
    """Every finding of every practice for ``state.quarter``: one row per patient, programme, kind
    (and control, for measurement kinds). Columns: FINDING_COLUMNS."""
    sql = f"""
        SELECT f.*, p.birth_year, p.sex FROM (
            SELECT practice_agb, patient_id, programme, kind, NULL::VARCHAR AS control, NULL::DATE AS last_date
            FROM ({registration_sql(state, rules)})
            UNION ALL
            SELECT practice_agb, patient_id, programme, kind, control, last_date
            FROM ({controls_sql(state, rules)})
        ) f JOIN {state.pat} p USING (practice_agb, patient_id)
        ORDER BY practice_agb, programme, kind, patient_id, control
    """
    return con.execute(sql).df()[FINDING_COLUMNS]
