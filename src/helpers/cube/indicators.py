"""Computing the quality indicators for every practice of a quarter in one query.

The definitions are data (:mod:`helpers.rules.indicators`); each named denominator and
numerator they refer to is a SQL builder here (``DENOMINATORS``, ``NUMERATORS``), run over the
temp tables of :func:`helpers.cube.findings.prepare_state`. Care-group figures use only
publishable rates (``suppression.PEER_RULE``).
"""

from __future__ import annotations

import duckdb
import pandas as pd

from ..quarter import Quarter
from ..rules.indicators import DENOMINATOR_NAMES, NUMERATOR_NAMES, Indicator
from ..rules.programmes import Rules
from ..suppression import MIN_PRACTICES_FOR_PEERS, peer_rates


# ---------------------------------------------------------------- named denominators
def _patient_conditions(alias: str, min_age: int | None, max_age: int | None, group: str | None) -> list[str]:
    """SQL conditions on a patient row ``alias`` (with ``age``): age bounds and an active ICPC group."""
    cond = []
    if min_age is not None:
        cond.append(f"{alias}.age >= {min_age}")
    if max_age is not None:
        cond.append(f"{alias}.age <= {max_age}")
    if group:
        cond.append(f"EXISTS (SELECT 1 FROM dx WHERE dx.practice_agb = {alias}.practice_agb "
                    f"AND dx.patient_id = {alias}.patient_id AND dx.grp = '{group}')")
    return cond


def _den_enrolled(ind: Indicator, W: str, L: str) -> str:
    """Patients enrolled in the chain on the population day and in the population."""
    cond = [f"e.programme = '{ind.chain}'", "pt.in_population",
            *_patient_conditions("pt", ind.min_age, ind.max_age, ind.group)]
    return (f"SELECT e.practice_agb, e.patient_id, pt.age FROM enr e JOIN pat pt USING (practice_agb, patient_id) "
            f"WHERE {' AND '.join(cond)}")


def _measured_exists(ind: Indicator, W: str, L: str, alias: str = "d") -> str:
    concepts = ", ".join(f"'{c}'" for c in ind.concepts)
    return (f"EXISTS (SELECT 1 FROM meas m WHERE m.practice_agb = {alias}.practice_agb "
            f"AND m.patient_id = {alias}.patient_id AND m.plausible AND m.concept IN ({concepts}) "
            f"AND m.date BETWEEN DATE '{W}' AND DATE '{L}')")


def _den_measured(ind: Indicator, W: str, L: str) -> str:
    """Enrolled patients with at least one plausible measurement of the concept in the window."""
    return f"SELECT * FROM ({_den_enrolled(ind, W, L)}) d WHERE {_measured_exists(ind, W, L)}"


DENOMINATORS = {"enrolled": _den_enrolled, "measured": _den_measured}


# ---------------------------------------------------------------- named numerators
def _last_value(ind: Indicator, W: str, L: str, column: str) -> str:
    concepts = ", ".join(f"'{c}'" for c in ind.concepts)
    # two readings on the same day (common for blood pressure): the higher value counts, so
    # the result never depends on row order
    return (f"(SELECT first(m.{column} ORDER BY m.date DESC, m.value_num DESC NULLS LAST, m.value DESC) "
            f"FROM meas m WHERE m.practice_agb = d.practice_agb "
            f"AND m.patient_id = d.patient_id AND m.plausible AND m.concept IN ({concepts}) "
            f"AND m.date BETWEEN DATE '{W}' AND DATE '{L}')")


def _threshold_expr(ind: Indicator) -> str:
    """The cut-off per patient: the first threshold whose conditions the patient meets."""
    whens = []
    for t in ind.thresholds:
        cond = ["TRUE", *_patient_conditions("d", t.min_age, t.max_age, t.group)]
        whens.append(f"WHEN {' AND '.join(cond)} THEN {t.value}")
    return "CASE " + " ".join(whens) + " END"


def _compare(op: str):
    def numerator(ind: Indicator, W: str, L: str) -> str:
        return f"{_last_value(ind, W, L, 'value_num')} {op} {_threshold_expr(ind)}"
    numerator.__doc__ = f"The last plausible value in the window is {op} the threshold."
    return numerator


def _num_measured(ind: Indicator, W: str, L: str) -> str:
    """At least one plausible measurement of any of the concepts in the window."""
    return _measured_exists(ind, W, L)


def _num_last_value_in(ind: Indicator, W: str, L: str) -> str:
    """The last plausible coded value in the window is one of ``values``."""
    vals = ", ".join(f"'{v.lower()}'" for v in ind.values)
    return f"lower(trim({_last_value(ind, W, L, 'value')})) IN ({vals})"


def _num_prescribed(ind: Indicator, W: str, L: str, rules: Rules | None = None) -> str:
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


def indicator_sql(ind: Indicator, quarter: Quarter) -> str:
    """Numerator and denominator per practice for one indicator (temp tables of prepare_state)."""
    W = quarter.months_back_start(ind.window_months).isoformat()
    L = quarter.last_day.isoformat()
    den = DENOMINATORS[ind.denominator](ind, W, L)
    num = NUMERATORS[ind.numerator](ind, W, L)
    return f"""
        SELECT pr.practice_agb, '{ind.id}' AS indicator_id,
               coalesce(x.numerator, 0) AS numerator, coalesce(x.denominator, 0) AS denominator
        FROM practices pr LEFT JOIN (
            SELECT d.practice_agb, count(*) AS denominator, count(*) FILTER (WHERE {num}) AS numerator
            FROM ({den}) d GROUP BY 1
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


def compute_indicators(con: duckdb.DuckDBPyConnection, quarter: Quarter, indicators: dict[str, Indicator]) -> pd.DataFrame:
    """Every indicator for every practice in one query; adds pct and the peer position.

    Peer figures (median, P10, P90, rank): ``peer_statistics``.
    """
    sql = " UNION ALL ".join(indicator_sql(i, quarter) for i in indicators.values())
    df = con.execute(sql).df()
    df["numerator"] = df["numerator"].astype("int64")
    df["denominator"] = df["denominator"].astype("int64")
    df["pct"] = (100.0 * df["numerator"] / df["denominator"].where(df["denominator"] > 0)).astype(float)
    meta = pd.DataFrame([{"indicator_id": i.id, "order": n, "chain": i.chain, "title": i.title, "type": i.type,
                          "target_pct": i.target_pct, "low_is_good": i.low_is_good}
                         for n, i in enumerate(indicators.values())])
    df = peer_statistics(df.merge(meta, on="indicator_id"))
    df = df.sort_values(["order", "practice_agb"]).reset_index(drop=True)
    df["meets_target"] = df.apply(
        lambda r: pd.NA if pd.isna(r["pct"]) or pd.isna(r["target_pct"]) else
        (r["pct"] <= r["target_pct"] if r["low_is_good"] else r["pct"] >= r["target_pct"]), axis=1)
    return df
