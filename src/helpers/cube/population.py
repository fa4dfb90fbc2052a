"""The quarter population and per-patient state on the population day, in one set-based pass.

Every practice of the warehouse is handled at once: the functions here create DuckDB
temp tables on a connection under the names of a :class:`~helpers.cube.state.PreparedState`;
later steps (findings, indicators) read them through the same state.

Definitions (docs/registration-rules.md): a patient counts in a quarter's population when
registered on its first day (F), alive on F and not deregistered before F.
"""

from __future__ import annotations

import duckdb

from ..rules.codes import Codes
from .state import PreparedState

AGE_BANDS = [(0, 4), (5, 17), (18, 44), (45, 64), (65, 74), (75, 84), (85, 200)]


def age_band_sql(age: str = "age") -> str:
    """SQL CASE mapping an age to the Nivel age bands (``0-4`` .. ``85+``)."""
    parts = [f"WHEN {age} BETWEEN {lo} AND {hi} THEN '{lo}-{hi}'" for lo, hi in AGE_BANDS[:-1]]
    lo = AGE_BANDS[-1][0]
    return "CASE " + " ".join(parts) + f" WHEN {age} >= {lo} THEN '{lo}+' END"


def build_patient_state(con: duckdb.DuckDBPyConnection, state: PreparedState) -> None:
    """Create ``state.pat``: one row per patient with its state on the quarter's first day."""
    quarter = state.quarter
    F = quarter.first_day.isoformat()
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {state.pat} AS
        SELECT practice_agb, patient_id, birth_year, sex,
               {quarter.first_day.year} - birth_year AS age,
               (deceased_on IS NOT NULL AND deceased_on <= DATE '{F}') AS deceased,
               (NOT (deceased_on IS NOT NULL AND deceased_on <= DATE '{F}')
                AND registered_until IS NOT NULL AND registered_until < DATE '{F}') AS deregistered,
               (registered_from <= DATE '{F}'
                AND (registered_until IS NULL OR registered_until >= DATE '{F}')
                AND (deceased_on IS NULL OR deceased_on > DATE '{F}')) AS in_population
        FROM patients
    """)


def build_active_diagnoses(con: duckdb.DuckDBPyConnection, state: PreparedState, codes: Codes) -> None:
    """Create ``state.dx``: (practice, patient, ICPC group) for every episode active on day F."""
    F = state.quarter.first_day.isoformat()
    selects = [
        f"SELECT DISTINCT practice_agb, patient_id, '{g.id}' AS grp FROM episodes "
        f"WHERE {g.sql('icpc')} AND start_date <= DATE '{F}' AND (end_date IS NULL OR end_date >= DATE '{F}')"
        for g in codes.icpc.values()
    ]
    con.execute(f"CREATE OR REPLACE TEMP TABLE {state.dx} AS " + " UNION ALL ".join(selects))


def _latest_enrolment_sql(table: str, date_column: str, order: str, where: str) -> str:
    """Create ``table``: per patient and programme the latest enrolment row (by ``order``) of
    those that meet ``where``, with its main practitioner and ``date_column``."""
    return f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT practice_agb, patient_id, programme, main_practitioner, {date_column} FROM (
            SELECT *, row_number() OVER (PARTITION BY practice_agb, patient_id, programme
                                         ORDER BY {order}) AS rn
            FROM enrolments WHERE {where}
        ) WHERE rn = 1
    """


def build_enrolment_state(con: duckdb.DuckDBPyConnection, state: PreparedState) -> None:
    """Create ``state.enr`` (enrolled on day F; main practitioner from the latest row) and
    ``state.enr_ended`` (latest enrolment that ended before F, per patient and programme)."""
    F = state.quarter.first_day.isoformat()
    con.execute(_latest_enrolment_sql(
        state.enr, "start_date", "start_date DESC, end_date DESC NULLS FIRST",
        f"start_date <= DATE '{F}' AND (end_date IS NULL OR end_date >= DATE '{F}')"))
    con.execute(_latest_enrolment_sql(
        state.enr_ended, "end_date", "end_date DESC, start_date DESC",
        f"end_date IS NOT NULL AND end_date < DATE '{F}'"))


def list_size_sql(state: PreparedState) -> str:
    """Per practice: patients in the quarter population.

    >>> from helpers.quarter import Quarter
    >>> list_size_sql(PreparedState.named(Quarter.parse("2026Q3")))
    'SELECT practice_agb, count(*) FILTER (WHERE in_population) AS list_size FROM pat GROUP BY 1'
    """
    return f"SELECT practice_agb, count(*) FILTER (WHERE in_population) AS list_size FROM {state.pat} GROUP BY 1"
