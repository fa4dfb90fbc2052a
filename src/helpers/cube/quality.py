"""Data quality of a quarter for every practice: which controls' measurements were recorded
(``dq_recorded``), the implausible measurements (``dq_issues``) and the counts of dates that cannot
be right (``dq_issue_counts``). Reads the tables of a :class:`~helpers.cube.state.PreparedState`."""

from __future__ import annotations

import pandas as pd

from ..rules.programmes import Rules
from .state import PreparedState

#: Dates that cannot be right, counted per practice: (source table, its date column, issue).
DATE_CHECKS = (
    ("contacts", "date", "date_after_death"),
    ("contacts", "date", "date_before_birth"),
    ("prescriptions", "date", "date_after_death"),
    ("episodes", "start_date", "date_before_birth"),
)
_DATE_ISSUE_SQL = {
    "date_after_death": "p.deceased_on IS NOT NULL AND s.{col} > p.deceased_on",
    "date_before_birth": "year(s.{col}) < p.birth_year",
}


def date_check_sql(source: str, column: str, issue: str) -> str:
    """Per practice, the rows of ``source`` whose ``column`` is a date that cannot be right.

    >>> print(date_check_sql("episodes", "start_date", "date_before_birth"))
    SELECT s.practice_agb, 'episodes' AS source, 'date_before_birth' AS issue, count(*) AS n FROM episodes s JOIN patients p USING (practice_agb, patient_id) WHERE year(s.start_date) < p.birth_year GROUP BY 1
    """
    return (f"SELECT s.practice_agb, '{source}' AS source, '{issue}' AS issue, count(*) AS n "
            f"FROM {source} s JOIN patients p USING (practice_agb, patient_id) "
            f"WHERE {_DATE_ISSUE_SQL[issue].format(col=column)} GROUP BY 1")


def _implausible_sql(state: PreparedState) -> str:
    """The measurements of the quarter's window that do not count (``meas.plausible`` false)."""
    W, L = state.quarter.window_start.isoformat(), state.quarter.last_day.isoformat()
    return f"SELECT * FROM {state.meas} WHERE NOT plausible AND date BETWEEN DATE '{W}' AND DATE '{L}'"


def data_quality(con, state: PreparedState, rules: Rules) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three data-quality tables (recorded, issues, issue counts) of ``state.quarter``."""
    W, L = state.quarter.window_start.isoformat(), state.quarter.last_day.isoformat()
    concepts = [(p.id, k) for p in rules.programmes.values() for c in p.controls for k in c.concepts]
    con.register("dq_concepts", pd.DataFrame(concepts, columns=["programme", "concept"]))
    recorded = con.execute(f"""
        WITH target AS (SELECT e.practice_agb, e.patient_id, e.programme FROM {state.enr} e
                        JOIN {state.pat} p USING (practice_agb, patient_id) WHERE p.in_population)
        SELECT t.practice_agb, t.programme, dc.concept, count(*) AS enrolled,
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM {state.meas} m WHERE m.practice_agb = t.practice_agb
                   AND m.patient_id = t.patient_id AND m.concept = dc.concept AND m.plausible
                   AND m.date BETWEEN DATE '{W}' AND DATE '{L}')) AS recorded
        FROM target t JOIN dq_concepts dc USING (programme)
        GROUP BY ALL ORDER BY 1, 2, 3
    """).df()
    con.unregister("dq_concepts")
    recorded["recorded_pct"] = 100.0 * recorded["recorded"] / recorded["enrolled"]
    issues = con.execute(f"""
        SELECT practice_agb, patient_id, date, concept, value, issue FROM ({_implausible_sql(state)})
        ORDER BY practice_agb, concept, date, patient_id, value, issue
    """).df()
    dates = " UNION ALL ".join(date_check_sql(*check) for check in DATE_CHECKS)
    other = con.execute(f"""
        {dates}
        UNION ALL
        SELECT practice_agb, 'measurements:' || concept, issue, count(*) FROM ({_implausible_sql(state)})
        GROUP BY ALL
        ORDER BY practice_agb, source, issue
    """).df()
    return recorded, issues, other
