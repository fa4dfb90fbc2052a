"""The quarter cube's tables from an open warehouse connection: ``compute_cube`` runs the
set-based SQL of findings, indicators, the summary and data quality for every practice at once
(``prepare.prepare_quarter`` decides when, and writes the result).

Each quarter's temp tables are a :class:`~helpers.cube.state.PreparedState` (the previous
quarter's under ``prev_`` names), passed to every SQL builder."""

from __future__ import annotations

import time

import duckdb
import pandas as pd

from ..quarter import Quarter
from ..rules.indicators import load_indicators
from ..rules.programmes import Rules, load_programmes
from .findings import FINDING_KINDS, compute_findings, prepare_state
from .indicators import compute_indicators
from .population import age_band_sql, list_size_sql
from .quality import data_quality
from .state import PreparedState


def _summary(con, state: PreparedState, rules: Rules, findings: pd.DataFrame) -> pd.DataFrame:
    """Per practice and programme: list size, enrolled, inclusion rate and cap, findings per kind."""
    caps = pd.DataFrame([{"programme": p.id, "max_inclusion_pct": p.max_inclusion_pct, "order": i}
                         for i, p in enumerate(rules.programmes.values())])
    con.register("caps_df", caps)
    base = con.execute(f"""
        SELECT pr.practice_agb, c.programme, c."order",
               coalesce(ls.list_size, 0) AS list_size,
               coalesce(en.enrolled, 0) AS enrolled, c.max_inclusion_pct
        FROM practices pr CROSS JOIN caps_df c
        LEFT JOIN ({list_size_sql(state)}) ls USING (practice_agb)
        LEFT JOIN (SELECT e.practice_agb, e.programme, count(*) AS enrolled
                   FROM {state.enr} e JOIN {state.pat} p USING (practice_agb, patient_id) WHERE p.in_population
                   GROUP BY 1, 2) en ON en.practice_agb = pr.practice_agb AND en.programme = c.programme
    """).df()
    con.unregister("caps_df")
    base["inclusion_pct"] = 100.0 * base["enrolled"] / base["list_size"].where(base["list_size"] > 0)
    base["over_cap"] = base["inclusion_pct"] > base["max_inclusion_pct"]
    counts = (findings.groupby(["practice_agb", "programme", "kind"]).size()
              .unstack("kind", fill_value=0).reindex(columns=list(FINDING_KINDS), fill_value=0)
              .reset_index())
    out = base.merge(counts, on=["practice_agb", "programme"], how="left")
    out[list(FINDING_KINDS)] = out[list(FINDING_KINDS)].fillna(0).astype("int64")
    out["quarter"] = str(state.quarter)
    return out.sort_values(["practice_agb", "order"]).drop(columns="order").reset_index(drop=True)


def _practices(con, state: PreparedState) -> pd.DataFrame:
    df = con.execute(f"""
        SELECT pr.*, coalesce(ls.list_size, 0) AS list_size,
               coalesce(en.enrolled_patients, 0) AS enrolled_patients FROM practices pr
        LEFT JOIN ({list_size_sql(state)}) ls USING (practice_agb)
        LEFT JOIN (SELECT e.practice_agb, count(DISTINCT e.patient_id) AS enrolled_patients
                   FROM {state.enr} e JOIN {state.pat} p USING (practice_agb, patient_id) WHERE p.in_population
                   GROUP BY 1) en USING (practice_agb)
        ORDER BY pr.practice_agb
    """).df()
    df["quarter_complete"] = pd.to_datetime(df["extraction_date"]).dt.date >= state.quarter.last_day
    return df


def _pyramid(con, state: PreparedState) -> pd.DataFrame:
    return con.execute(f"""
        SELECT practice_agb, {age_band_sql('age')} AS age_band, sex, count(*) AS patients
        FROM {state.pat} WHERE in_population GROUP BY ALL ORDER BY ALL
    """).df()


def compute_cube(con: duckdb.DuckDBPyConnection, quarter: Quarter, rules: Rules | None = None,
                 indicators=None) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """All cube tables for ``quarter`` from an open warehouse connection, with stage timings."""
    rules = rules or load_programmes()
    indicators = indicators if indicators is not None else load_indicators(rules)
    t, timings = time.perf_counter(), {}

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        timings[name] = round(now - t, 3)
        t = now

    prev = prepare_state(con, quarter.previous(), rules, prefix="prev_")
    prev_findings = compute_findings(con, prev, rules, acted_until=prev.quarter.last_day)  # as it stood then
    prev_summary = _summary(con, prev, rules, prev_findings)
    lap("previous_quarter")
    state = prepare_state(con, quarter, rules)
    lap("state")
    findings = compute_findings(con, state, rules)
    lap("findings")
    tables = {"findings": findings}
    tables["indicators"] = compute_indicators(con, state, indicators)
    lap("indicators")
    summary = _summary(con, state, rules, findings)
    keep = ["practice_agb", "programme", "enrolled", "inclusion_pct", *FINDING_KINDS]
    summary = summary.merge(prev_summary[keep].add_suffix("_prev").rename(
        columns={"practice_agb_prev": "practice_agb", "programme_prev": "programme"}),
        on=["practice_agb", "programme"], how="left")
    tables["summary"] = summary
    tables["dq_recorded"], tables["dq_issues"], tables["dq_issue_counts"] = data_quality(con, state, rules)
    tables["practices"] = _practices(con, state)
    tables["pyramid"] = _pyramid(con, state)
    lap("summary_and_quality")
    return tables, timings
