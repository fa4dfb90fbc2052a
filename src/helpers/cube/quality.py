"""Data quality of a quarter for every practice: which controls' measurements were recorded
(``dq_recorded``), the implausible measurements (``dq_issues``) and the counts of dates that cannot
be right (``dq_issue_counts``). Reads the temp tables of :func:`helpers.cube.findings.prepare_state`."""

from __future__ import annotations

import pandas as pd

from ..quarter import Quarter
from ..rules.programmes import Rules


def data_quality(con, quarter: Quarter, rules: Rules) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three data-quality tables (recorded, issues, issue counts) of ``quarter``."""
    W, L = quarter.window_start.isoformat(), quarter.last_day.isoformat()
    concepts = []
    for p in rules.programmes.values():
        for c in p.controls:
            for k in c.concepts:
                concepts.append((p.id, k))
    con.register("dq_concepts", pd.DataFrame(concepts, columns=["programme", "concept"]))
    recorded = con.execute(f"""
        WITH target AS (SELECT e.practice_agb, e.patient_id, e.programme FROM enr e
                        JOIN pat p USING (practice_agb, patient_id) WHERE p.in_population)
        SELECT t.practice_agb, t.programme, dc.concept, count(*) AS enrolled,
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM meas m WHERE m.practice_agb = t.practice_agb
                   AND m.patient_id = t.patient_id AND m.concept = dc.concept AND m.plausible
                   AND m.date BETWEEN DATE '{W}' AND DATE '{L}')) AS recorded
        FROM target t JOIN dq_concepts dc USING (programme)
        GROUP BY ALL ORDER BY 1, 2, 3
    """).df()
    con.unregister("dq_concepts")
    recorded["recorded_pct"] = 100.0 * recorded["recorded"] / recorded["enrolled"]
    issues = con.execute(f"""
        SELECT practice_agb, patient_id, date, concept, value, issue FROM meas
        WHERE NOT plausible AND date BETWEEN DATE '{W}' AND DATE '{L}'
        ORDER BY practice_agb, concept, date, patient_id, value, issue
    """).df()
    other = con.execute(f"""
        SELECT c.practice_agb, 'contacts' AS source, 'date_after_death' AS issue, count(*) AS n
        FROM contacts c JOIN patients p USING (practice_agb, patient_id)
        WHERE p.deceased_on IS NOT NULL AND c.date > p.deceased_on GROUP BY 1
        UNION ALL
        SELECT c.practice_agb, 'contacts', 'date_before_birth', count(*)
        FROM contacts c JOIN patients p USING (practice_agb, patient_id)
        WHERE year(c.date) < p.birth_year GROUP BY 1
        UNION ALL
        SELECT r.practice_agb, 'prescriptions', 'date_after_death', count(*)
        FROM prescriptions r JOIN patients p USING (practice_agb, patient_id)
        WHERE p.deceased_on IS NOT NULL AND r.date > p.deceased_on GROUP BY 1
        UNION ALL
        SELECT e.practice_agb, 'episodes', 'date_before_birth', count(*)
        FROM episodes e JOIN patients p USING (practice_agb, patient_id)
        WHERE year(e.start_date) < p.birth_year GROUP BY 1
        UNION ALL
        SELECT practice_agb, 'measurements:' || concept, issue, count(*) FROM meas
        WHERE NOT plausible AND date BETWEEN DATE '{W}' AND DATE '{L}' GROUP BY ALL
        ORDER BY practice_agb, source, issue
    """).df()
    return recorded, issues, other
