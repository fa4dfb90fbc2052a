"""Computing the quality indicators for every practice of a quarter in one query.

The definitions are data (:mod:`helpers.rules.indicators`); each named denominator and
numerator they refer to is a SQL builder here (``DENOMINATORS``, ``NUMERATORS``), run over the
tables a :class:`~helpers.cube.state.PreparedState` names (built by
:func:`helpers.cube.findings.prepare_state`). Care-group figures use only publishable rates
(``suppression.PEER_RULE``).

>>> from helpers.rules.indicators import load_indicators
>>> sql = indicator_sql(load_indicators()["dm2_hba1c_measured"], Quarter.parse("2026Q3"))
>>> "FROM enr e JOIN pat pt" in sql and "DATE '2025-10-01' AND DATE '2026-09-30'" in sql
True
"""

from __future__ import annotations

import duckdb
import pandas as pd

from ..quarter import Quarter
from ..rules.indicators import DENOMINATOR_NAMES, NUMERATOR_NAMES, Indicator
from ..suppression import MIN_PRACTICES_FOR_PEERS, peer_rates
from .state import PreparedState


# ---------------------------------------------------------------- named denominators
def _patient_conditions(state: PreparedState, alias: str, min_age: int | None, max_age: int | None,
                        group: str | None) -> list[str]:
    """SQL conditions on a patient row ``alias`` (with ``age``): age bounds and an active ICPC group."""
    cond = []
    if min_age is not None:
        cond.append(f"{alias}.age >= {min_age}")
    if max_age is not None:
        cond.append(f"{alias}.age <= {max_age}")
    if group:
        cond.append(f"EXISTS (SELECT 1 FROM {state.dx} dx WHERE dx.practice_agb = {alias}.practice_agb "
                    f"AND dx.patient_id = {alias}.patient_id AND dx.grp = '{group}')")
    return cond


def _den_enrolled(ind: Indicator, state: PreparedState, W: str, L: str) -> str:
    """Patients enrolled in the programme on the population day and in the population."""
    cond = [f"e.programme = '{ind.programme}'", "pt.in_population",
            *_patient_conditions(state, "pt", ind.min_age, ind.max_age, ind.group)]
    return (f"SELECT e.practice_agb, e.patient_id, pt.age FROM {state.enr} e "
            f"JOIN {state.pat} pt USING (practice_agb, patient_id) WHERE {' AND '.join(cond)}")


def _measured_exists(ind: Indicator, state: PreparedState, W: str, L: str, alias: str = "d") -> str:
    concepts = ", ".join(f"'{c}'" for c in ind.concepts)
    return (f"EXISTS (SELECT 1 FROM {state.meas} m WHERE m.practice_agb = {alias}.practice_agb "
            f"AND m.patient_id = {alias}.patient_id AND m.plausible AND m.concept IN ({concepts}) "
            f"AND m.date BETWEEN DATE '{W}' AND DATE '{L}')")


def _den_measured(ind: Indicator, state: PreparedState, W: str, L: str) -> str:
    """Enrolled patients with at least one plausible measurement of the concept in the window."""
    return f"SELECT * FROM ({_den_enrolled(ind, state, W, L)}) d WHERE {_measured_exists(ind, state, W, L)}"


DENOMINATORS = {"enrolled": _den_enrolled, "measured": _den_measured}


# ---------------------------------------------------------------- named numerators
def _last_value(ind: Indicator, state: PreparedState, W: str, L: str, column: str) -> str:
    concepts = ", ".join(f"'{c}'" for c in ind.concepts)
    # two readings on the same day (common for blood pressure): the higher value counts, so
    # the result never depends on row order
    return (f"(SELECT first(m.{column} ORDER BY m.date DESC, m.value_num DESC NULLS LAST, m.value DESC) "
            f"FROM {state.meas} m WHERE m.practice_agb = d.practice_agb "
            f"AND m.patient_id = d.patient_id AND m.plausible AND m.concept IN ({concepts}) "
            f"AND m.date BETWEEN DATE '{W}' AND DATE '{L}')")


def _threshold_expr(ind: Indicator, state: PreparedState) -> str:
    """The cut-off per patient: the first threshold whose conditions the patient meets."""
    whens = []
    for t in ind.thresholds:
        cond = ["TRUE", *_patient_conditions(state, "d", t.min_age, t.max_age, t.group)]
        whens.append(f"WHEN {' AND '.join(cond)} THEN {t.value}")
    return "CASE " + " ".join(whens) + " END"


def _compare(op: str):
    def numerator(ind: Indicator, state: PreparedState, W: str, L: str) -> str:
        return f"{_last_value(ind, state, W, L, 'value_num')} {op} {_threshold_expr(ind, state)}"
    numerator.__doc__ = f"The last plausible value in the window is {op} the threshold."
    return numerator


def _num_measured(ind: Indicator, state: PreparedState, W: str, L: str) -> str:
    """At least one plausible measurement of any of the concepts in the window."""
    return _measured_exists(ind, state, W, L)


def _num_last_value_in(ind: Indicator, state: PreparedState, W: str, L: str) -> str:
    """The last plausible coded value in the window is one of ``values``."""
    vals = ", ".join(f"'{v.lower()}'" for v in ind.values)
    return f"lower(trim({_last_value(ind, state, W, L, 'value')})) IN ({vals})"


def _num_prescribed(ind: Indicator, state: PreparedState, W: str, L: str) -> str:
    """A prescription of the ATC group in the window."""
    group = ind.atc_group
    return (f"EXISTS (SELECT 1 FROM prescriptions r WHERE r.practice_agb = d.practice_agb "
            f"AND r.patient_id = d.patient_id AND {group.sql('r.atc')} "
            f"AND r.date BETWEEN DATE '{W}' AND DATE '{L}')")


NUMERATORS = {
    "measured": _num_measured,
    "last_value_at_most": _compare("<="),
    "last_value_below": _compare("<"),
    "last_value_at_least": _compare(">="),
    "last_value_above": _compare(">"),
    "last_value_in": _num_last_value_in,
    "prescribed": _num_prescribed,
}


def indicator_patients_sql(ind: Indicator, state: PreparedState) -> str:
    """One row per patient in the denominator of ``ind``: ``practice_agb``, ``patient_id`` and
    ``in_numerator`` (NULL when the numerator cannot be told, e.g. no threshold applies: not counted)."""
    W = state.quarter.months_back_start(ind.window_months).isoformat()
    L = state.quarter.last_day.isoformat()
    den = DENOMINATORS[ind.denominator](ind, state, W, L)
    num = NUMERATORS[ind.numerator](ind, state, W, L)
    return f"SELECT d.practice_agb, d.patient_id, ({num}) AS in_numerator FROM ({den}) d"


def indicator_sql(ind: Indicator, quarter: Quarter, state: PreparedState | None = None) -> str:
    """The full SQL of one indicator: numerator and denominator per practice, over the tables of
    ``state`` (default: the standard names of ``PreparedState.named(quarter)``, as ``spiegel
    prepare`` builds them)."""
    state = state if state is not None else PreparedState.named(quarter)
    if state.quarter != quarter:
        raise ValueError(f"indicator_sql: state of {state.quarter} given for quarter {quarter}")
    return f"""
        SELECT pr.practice_agb, '{ind.id}' AS indicator_id,
               coalesce(x.numerator, 0) AS numerator, coalesce(x.denominator, 0) AS denominator
        FROM practices pr LEFT JOIN (
            SELECT d.practice_agb, count(*) AS denominator, count(*) FILTER (WHERE d.in_numerator) AS numerator
            FROM ({indicator_patients_sql(ind, state)}) d GROUP BY 1
        ) x USING (practice_agb)
    """


def peer_statistics(df: pd.DataFrame) -> pd.DataFrame:
    """Add the care-group figures to one row per practice and indicator (numerator,
    denominator, pct, low_is_good): peer_median, peer_p10, peer_p90, peer_n and rank, all
    over the publishable rates only (``suppression.PEER_RULE``). A practice whose rate is
    withheld is neither in the figures nor ranked."""
    df = df.copy()
    df["_peer_pct"] = peer_rates(df["numerator"], df["denominator"])
    peers = df.groupby("indicator_id")["_peer_pct"]
    stats = pd.DataFrame({
        "peer_median": peers.median(), "peer_p10": peers.quantile(0.1), "peer_p90": peers.quantile(0.9),
        "peer_n": peers.count(),
    }).reset_index()
    df = df.merge(stats, on="indicator_id", how="left")
    too_few = df["peer_n"].fillna(0) < MIN_PRACTICES_FOR_PEERS
    df.loc[too_few, ["peer_median", "peer_p10", "peer_p90"]] = float("nan")
    # rank 1 = best; ties share the better rank
    df["rank"] = pd.NA
    for _iid, grp in df[df["_peer_pct"].notna()].groupby("indicator_id"):
        asc = bool(grp["low_is_good"].iloc[0])
        df.loc[grp.index, "rank"] = grp["_peer_pct"].rank(ascending=asc, method="min")
    df["rank"] = df["rank"].astype("Int64")
    return df.drop(columns="_peer_pct")


def indicator_patients(con: duckdb.DuckDBPyConnection, state: PreparedState, ind: Indicator) -> pd.DataFrame:
    """The patients in the denominator of ``ind`` with ``in_numerator`` (spec tests, ``spiegel explain``)."""
    sql = f"SELECT * FROM ({indicator_patients_sql(ind, state)}) ORDER BY practice_agb, patient_id"
    return con.execute(sql).df()


def compute_indicators(con: duckdb.DuckDBPyConnection, state: PreparedState,
                       indicators: dict[str, Indicator]) -> pd.DataFrame:
    """Every indicator for every practice in one query over ``state``; adds pct and the peer position.

    Peer figures (median, P10, P90, rank): ``peer_statistics``.
    """
    sql = " UNION ALL ".join(indicator_sql(i, state.quarter, state) for i in indicators.values())
    df = con.execute(sql).df()
    df["numerator"] = df["numerator"].astype("int64")
    df["denominator"] = df["denominator"].astype("int64")
    df["pct"] = (100.0 * df["numerator"] / df["denominator"].where(df["denominator"] > 0)).astype(float)
    meta = pd.DataFrame([{"indicator_id": i.id, "order": n, "programme": i.programme, "title": i.title, "type": i.type,
                          "target_pct": i.target_pct, "low_is_good": i.low_is_good}
                         for n, i in enumerate(indicators.values())])
    df = peer_statistics(df.merge(meta, on="indicator_id"))
    df = df.sort_values(["order", "practice_agb"]).reset_index(drop=True)
    df["meets_target"] = df.apply(
        lambda r: pd.NA if pd.isna(r["pct"]) or pd.isna(r["target_pct"]) else
        (r["pct"] <= r["target_pct"] if r["low_is_good"] else r["pct"] >= r["target_pct"]), axis=1)
    return df
