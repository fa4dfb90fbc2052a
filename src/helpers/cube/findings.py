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

import dataclasses

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


def registration_sql(state: PreparedState, rules: Rules, acted_until=None) -> str:
    """The registration findings as one SQL query over the tables of ``state``.

    A patient enrolled after the population day is no finding (the practice has already acted):
    any such enrolment in the extraction counts, or with ``acted_until`` (a date) only one that
    started by then, which is how an earlier quarter is seen as it stood at its end
    (``findings_history``)."""
    F = state.quarter.first_day.isoformat()
    acted = f" AND en.start_date <= DATE '{acted_until.isoformat()}'" if acted_until is not None else ""
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
                              AND en.start_date > DATE '{F}'{acted})
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


def compute_findings(con: duckdb.DuckDBPyConnection, state: PreparedState, rules: Rules,
                     acted_until=None) -> pd.DataFrame:
    """Every finding of every practice for ``state.quarter``: one row per patient, programme, kind
    (and control, for measurement kinds). Columns: FINDING_COLUMNS. ``acted_until``: see
    ``registration_sql``."""
    sql = f"""
        SELECT f.*, p.birth_year, p.sex FROM (
            SELECT practice_agb, patient_id, programme, kind, NULL::VARCHAR AS control, NULL::DATE AS last_date
            FROM ({registration_sql(state, rules, acted_until)})
            UNION ALL
            SELECT practice_agb, patient_id, programme, kind, control, last_date
            FROM ({controls_sql(state, rules)})
        ) f JOIN {state.pat} p USING (practice_agb, patient_id)
        ORDER BY practice_agb, programme, kind, patient_id, control
    """
    return con.execute(sql).df()[FINDING_COLUMNS]


# ------------------------------------------------------------------ history over the quarters
#: how many quarters the history looks at, the current one included: a finding open in all of
#: them is shown as open "since <the earliest> or earlier" (``first_seen_bounded``)
HISTORY_QUARTERS = 8
#: a finding's status against the previous quarter (identifiers), and their Dutch labels:
#: ``new`` and ``still_open`` for this quarter's findings; of last quarter's findings gone now,
#: ``resolved`` when the patient is still in the practice's population and ``departed`` when
#: the patient left it since (deregistered or deceased: every rule covers the population only,
#: so that finding is gone without the practice having acted)
STATUSES = ("new", "still_open", "resolved", "departed")
STATUS_LABELS_NL = {"new": "nieuw", "still_open": "nog open", "resolved": "opgelost", "departed": "vertrokken"}
HISTORY_COLUMNS = ["first_seen", "quarters_open", "first_seen_bounded", "status"]
#: the two groups the HIS-analyse counts per programme
GROUP_OF_KIND = {**{k: "registration" for k in REGISTRATION_KINDS}, **{k: "control" for k in CONTROL_KINDS}}
HISTORY_COUNT_COLUMNS = ["practice_agb", "programme", "group", "previous_quarter", "new", "still_open",
                         "resolved", "departed", "oldest_first_seen"]
RESOLVED_COLUMNS = ["practice_agb", "patient_id", "programme", "kind", "control", "birth_year", "sex"]


def _identity_sql(kind: str = "kind") -> str:
    """The kind part of a finding's identity: a control that is missing one quarter and overdue
    the next (or the other way round) is the same open control."""
    return f"CASE WHEN {kind} IN ('measurement_missing', 'measurement_overdue') THEN 'measurement' ELSE {kind} END"


def findings_history(con: duckdb.DuckDBPyConnection, quarter: Quarter, rules: Rules, findings: pd.DataFrame,
                     lookback: int = HISTORY_QUARTERS) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Follow every finding of ``quarter`` back over the quarters before it, for every practice
    at once: one set-based SQL pass over the warehouse per earlier quarter (``lookback``, by
    default HISTORY_QUARTERS = 8 quarters, the current one included), then the streaks in SQL.
    "First seen" is the earliest quarter from which the finding was present in every quarter up
    to now; a finding present in all of the lookback is "first seen <the earliest> or earlier".

    Returns ``(findings, resolved, counts)``: ``findings`` with HISTORY_COLUMNS added (the
    quarter it was first seen, the quarters it has been open, the current one included, whether
    that reaches the lookback bound, and ``new`` / ``still_open``), sorted oldest first within
    the existing order; ``resolved``: the previous quarter's findings that are gone now while
    their patient is still in the practice's population (RESOLVED_COLUMNS, patient-level: the
    practice's own report only); ``counts``: per practice, programme and group (registration /
    control) the new, still open, resolved and departed findings and whether the practice has a
    previous quarter at all (HISTORY_COUNT_COLUMNS).

    ``departed`` (*vertrokken*): a previous quarter's finding that is gone because its patient
    left the population since (in it on the previous population day, not on this one:
    deregistered or deceased). Every rule covers the population only, so such a finding would
    otherwise count as resolved though the practice did nothing. A finding of a patient already
    outside the population then (``enrolled_deceased``, ``enrolled_deregistered``) that is gone
    now is resolved: the practice ended the enrolment. Last quarter's findings = resolved +
    still open + departed.

    A finding is the same finding in two quarters when practice, patient pseudonym, programme,
    kind and control agree (a control missing or overdue counts as one kind, ``_identity_sql``).

    Why computed from the warehouse and not read from the previous quarter's cube: the
    warehouse holds each practice's latest extraction, which covers the earlier quarters too
    (it is how the summary's previous quarter and the regional report's indicator history are
    computed), so the earlier quarters are evaluated with the same rules, codes and code on the
    same data. The result then depends only on what the cube key covers (the data, the rules,
    the code): same inputs, same bytes, whether or not an earlier cube was ever prepared, in
    which order the quarters were prepared, or with which older delivery. A previous cube may
    be missing, stale (prepared from an older extraction or older rules) or prepared after this
    one, and would make the history depend on the build's history.

    Each earlier quarter is seen as it stood at its end: measurements and contacts up to its
    last day, the population and enrolments on its first day, and an enrolment counts as "the
    practice has already acted" only when it started by that quarter's last day (so enrolling a
    patient this quarter resolves last quarter's finding rather than erasing it). What cannot be
    seen from one extraction is a change made with an earlier date (a measurement entered
    later with the date it was taken): the history shows the HIS as it is now.

    A practice without patients in a quarter's population has no data for that quarter: its
    history stops there, and without a previous quarter (``previous_quarter`` false) every
    finding is ``new`` and the report says there is no previous quarter.
    """
    quarter = Quarter.parse(quarter)
    now = findings[["practice_agb", "patient_id", "programme", "kind", "control"]].copy()
    con.register("hist_now_df", now)
    con.execute("CREATE OR REPLACE TEMP TABLE hist_f AS SELECT 0 AS k, practice_agb, patient_id, programme, kind, "
                "coalesce(control, '') AS control FROM hist_now_df")
    con.unregister("hist_now_df")
    con.execute("CREATE OR REPLACE TEMP TABLE hist_pop (k INTEGER, practice_agb VARCHAR)")
    quarters = [quarter]
    q = quarter
    # the measurements with their validity once, up to this quarter's end; an earlier quarter
    # reads them up to its own last day (the same rows build_measurement_validity would make)
    base = PreparedState.named(quarter, "hist0_")
    build_concepts(con, base, rules)
    build_measurement_validity(con, base)
    # this quarter's population, and the patients in the previous one who left it since
    build_patient_state(con, base)
    con.execute(f"CREATE OR REPLACE TEMP TABLE hist_left AS SELECT practice_agb, patient_id FROM {base.pat} WHERE false")
    for k in range(1, lookback):
        q = q.previous()
        quarters.append(q)
        state = dataclasses.replace(PreparedState.named(q, f"hist{k}_"), concepts=base.concepts,
                                    controls_def=base.controls_def)
        build_patient_state(con, state)
        con.execute(f"INSERT INTO hist_pop SELECT DISTINCT {k}, practice_agb FROM {state.pat} WHERE in_population")
        if k == 1:
            con.execute(f"INSERT INTO hist_left SELECT p.practice_agb, p.patient_id FROM {state.pat} p "
                        f"WHERE p.in_population AND NOT EXISTS (SELECT 1 FROM {base.pat} n WHERE n.in_population "
                        f"AND n.practice_agb = p.practice_agb AND n.patient_id = p.patient_id)")
        if k >= 2:
            # beyond the previous quarter only the streaks of this quarter's findings matter: their
            # patients only (every rule is per patient, so their findings are the same)
            con.execute(f"DELETE FROM {state.pat} p WHERE NOT EXISTS (SELECT 1 FROM hist_f n WHERE n.k = 0 "
                        f"AND n.practice_agb = p.practice_agb AND n.patient_id = p.patient_id)")
        build_active_diagnoses(con, state, rules.codes)
        build_enrolment_state(con, state)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {state.meas} AS SELECT * FROM {base.meas} "
                    f"WHERE date <= DATE '{q.last_day.isoformat()}'")
        con.execute(f"""
            INSERT INTO hist_f
            SELECT DISTINCT {k}, practice_agb, patient_id, programme, kind, coalesce(control, '') FROM (
                SELECT practice_agb, patient_id, programme, kind, NULL::VARCHAR AS control
                FROM ({registration_sql(state, rules, acted_until=q.last_day)})
                UNION ALL
                SELECT practice_agb, patient_id, programme, kind, control FROM ({controls_sql(state, rules)})
            )""")
        con.execute(f"DROP VIEW {state.meas}")
        for t in (state.pat, state.dx, state.enr, state.enr_ended):
            con.execute(f"DROP TABLE {t}")
    labels = ", ".join(f"({k}, '{q}')" for k, q in enumerate(quarters))
    ident = _identity_sql()
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE hist_run AS
        WITH f AS (SELECT DISTINCT k, practice_agb, patient_id, programme, {ident} AS ident, control FROM hist_f),
        cur0 AS (SELECT * FROM f WHERE k = 0),
        -- per finding of now: the first earlier quarter in which it is absent (or the practice has no data)
        gap AS (
            SELECT n.practice_agb, n.patient_id, n.programme, n.ident, n.control, min(r.k) AS k
            FROM cur0 n CROSS JOIN range(1, {lookback}) r(k)
            LEFT JOIN f p ON p.k = r.k AND p.practice_agb = n.practice_agb AND p.patient_id = n.patient_id
                         AND p.programme = n.programme AND p.ident = n.ident AND p.control = n.control
            LEFT JOIN hist_pop d ON d.k = r.k AND d.practice_agb = n.practice_agb
            WHERE p.k IS NULL OR d.k IS NULL
            GROUP BY ALL
        )
        SELECT n.practice_agb, n.patient_id, n.programme, n.ident, n.control,
               coalesce(g.k, {lookback}) AS quarters_open, g.k IS NULL AS first_seen_bounded
        FROM cur0 n LEFT JOIN gap g USING (practice_agb, patient_id, programme, ident, control)
    """)
    out = con.execute(f"""
        SELECT h.practice_agb, h.patient_id, h.programme, h.kind, h.control, r.quarters_open,
               r.first_seen_bounded, l.q AS first_seen,
               CASE WHEN r.quarters_open > 1 THEN 'still_open' ELSE 'new' END AS status
        FROM hist_f h JOIN hist_run r ON r.practice_agb = h.practice_agb AND r.patient_id = h.patient_id
             AND r.programme = h.programme AND r.ident = {_identity_sql('h.kind')} AND r.control = h.control
        JOIN (VALUES {labels}) l(k, q) ON l.k = r.quarters_open - 1
        WHERE h.k = 0
    """).df()
    out["control"] = out["control"].replace("", None)
    keys = ["practice_agb", "patient_id", "programme", "kind", "control"]
    merged = findings.merge(out, on=keys, how="left", validate="one_to_one")
    merged["quarters_open"] = merged["quarters_open"].astype("int64")
    merged["first_seen_bounded"] = merged["first_seen_bounded"].astype(bool)
    # oldest first, then the order the findings had
    merged = merged.sort_values(["practice_agb", "quarters_open"], ascending=[True, False], kind="stable")
    merged = merged.reset_index(drop=True)[FINDING_COLUMNS + HISTORY_COLUMNS]

    # last quarter's findings gone now: resolved, or departed when the patient left the population
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE hist_gone AS
        SELECT DISTINCT p.practice_agb, p.patient_id, p.programme, p.kind, p.control,
               CASE WHEN l.patient_id IS NULL THEN 'resolved' ELSE 'departed' END AS status
        FROM hist_f p LEFT JOIN hist_left l USING (practice_agb, patient_id)
        WHERE p.k = 1 AND NOT EXISTS (
            SELECT 1 FROM hist_f n WHERE n.k = 0 AND n.practice_agb = p.practice_agb AND n.patient_id = p.patient_id
              AND n.programme = p.programme AND {_identity_sql('n.kind')} = {_identity_sql('p.kind')}
              AND n.control = p.control)
    """)
    resolved = con.execute("""
        SELECT p.practice_agb, p.patient_id, p.programme, p.kind, nullif(p.control, '') AS control,
               pt.birth_year, pt.sex
        FROM hist_gone p JOIN patients pt USING (practice_agb, patient_id)
        WHERE p.status = 'resolved'
        ORDER BY p.practice_agb, p.programme, p.kind, p.patient_id, control
    """).df()[RESOLVED_COLUMNS]

    groups = ", ".join(f"('{k}', '{g}')" for k, g in GROUP_OF_KIND.items())
    programmes = ", ".join(f"('{p}', {i})" for i, p in enumerate(rules.programme_ids))
    con.register("hist_out_df", merged[["practice_agb", "programme", "kind", "status", "first_seen"]])
    counts = con.execute(f"""
        WITH g(kind, grp) AS (VALUES {groups}), pr(programme, ord) AS (VALUES {programmes}),
        grid AS (SELECT p.practice_agb, pr.programme, pr.ord, x.grp
                 FROM practices p CROSS JOIN pr CROSS JOIN (VALUES ('registration', 0), ('control', 1)) x(grp, gord)),
        cur AS (SELECT practice_agb, programme, grp, count(*) FILTER (WHERE status = 'new') AS new,
                       count(*) FILTER (WHERE status = 'still_open') AS still_open, min(first_seen) AS oldest_first_seen
                FROM hist_out_df JOIN g USING (kind) GROUP BY ALL),
        res AS (SELECT practice_agb, programme, grp, count(*) FILTER (WHERE status = 'resolved') AS resolved,
                       count(*) FILTER (WHERE status = 'departed') AS departed
                FROM hist_gone JOIN g USING (kind) GROUP BY ALL)
        SELECT grid.practice_agb, grid.programme, grid.grp AS "group",
               grid.practice_agb IN (SELECT practice_agb FROM hist_pop WHERE k = 1) AS previous_quarter,
               coalesce(cur.new, 0) AS new, coalesce(cur.still_open, 0) AS still_open,
               coalesce(res.resolved, 0) AS resolved, coalesce(res.departed, 0) AS departed, cur.oldest_first_seen
        FROM grid LEFT JOIN cur USING (practice_agb, programme, grp) LEFT JOIN res USING (practice_agb, programme, grp)
        ORDER BY grid.practice_agb, grid.ord, grid.grp DESC
    """).df()[HISTORY_COUNT_COLUMNS]
    con.unregister("hist_out_df")
    for t in ("hist_f", "hist_pop", "hist_run", "hist_left", "hist_gone", base.pat, base.meas, base.concepts,
              base.controls_def):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    for c in ("new", "still_open", "resolved", "departed"):
        counts[c] = counts[c].astype("int64")
    return merged, resolved, counts
