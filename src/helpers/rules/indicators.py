"""Quality indicators: one YAML file per indicator in ``parameters/indicators/``.

Definitions refer to numerators and denominators *by name*; the names are the functions
in ``NUMERATORS`` and ``DENOMINATORS`` below, so every definition is plain data and every
piece of logic is a tested function (OpenPrescribing's lesson: no SQL in data files).

>>> defs = load_indicators()
>>> defs["dm2_hba1c_on_target"].thresholds[0].value
53.0
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from .codes import read_yaml
from ..config import INDICATORS_DIR
from ..errors import IndicatorError
from .programmes import PROGRAMME_IDS, Rules
from ..quarter import Quarter

TYPES = ("process", "outcome", "structure")
CHAIN_ORDER = ("DM2", "CVRM", "COPD", "ASTMA")  # the order reports show the chains in
REQUIRED = ("id", "title", "chain", "type", "numerator", "denominator", "target_pct", "low_is_good",
            "source", "reviewed_by", "reviewed_on")


@dataclass(frozen=True)
class Threshold:
    """A cut-off that applies when the patient matches (first matching threshold wins)."""
    value: float
    min_age: int | None = None
    max_age: int | None = None
    group: str | None = None


@dataclass(frozen=True)
class Indicator:
    id: str
    title: str
    chain: str
    type: str
    numerator: str
    denominator: str
    concepts: tuple[str, ...]
    window_months: int
    thresholds: tuple[Threshold, ...]
    values: tuple[str, ...]
    atc: str | None
    group: str | None
    min_age: int | None
    max_age: int | None
    target_pct: float | None
    low_is_good: bool
    source: str
    why: str
    denominator_note: str
    reviewed_by: str
    reviewed_on: str


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
    group = _ATC_GROUPS[ind.atc]
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
_NEEDS_THRESHOLD = {"last_value_at_most", "last_value_below", "last_value_at_least", "last_value_above"}
_ATC_GROUPS: dict = {}


# ---------------------------------------------------------------- loading
def parse_indicator(data: dict, source: str, rules: Rules) -> tuple[Indicator | None, list[str]]:
    """Validate one definition; return it (or None) and its problems."""
    problems = []
    where = source
    for key in REQUIRED:
        if key not in data:
            problems.append(f"{where}: {key} is missing")
    if problems:
        return None, problems
    iid = str(data["id"])
    if Path(source).stem != iid:
        problems.append(f"{where}: id {iid!r} must equal the file name ({Path(source).stem!r})")
    if data["chain"] not in PROGRAMME_IDS:
        problems.append(f"{where}: chain {data['chain']!r} is not one of {', '.join(PROGRAMME_IDS)}")
    if data["type"] not in TYPES:
        problems.append(f"{where}: type {data['type']!r} is not one of {', '.join(TYPES)}")
    if data["numerator"] not in NUMERATORS:
        problems.append(f"{where}: numerator {data['numerator']!r} is not a known name ({', '.join(NUMERATORS)})")
    if data["denominator"] not in DENOMINATORS:
        problems.append(f"{where}: denominator {data['denominator']!r} is not a known name ({', '.join(DENOMINATORS)})")
    concepts = tuple(data.get("concepts") or ())
    for c in concepts:
        if c not in rules.codes.measurements:
            problems.append(f"{where}: concept {c!r} is not in codes.yaml")
    if (data["numerator"] != "prescribed" or data["denominator"] == "measured") and not concepts:
        problems.append(f"{where}: name the measurement concepts")
    thresholds = []
    for t in data.get("thresholds") or []:
        try:
            thresholds.append(Threshold(float(t["value"]), t.get("min_age"), t.get("max_age"), t.get("group")))
        except (KeyError, TypeError, ValueError):
            problems.append(f"{where}: threshold {t!r} needs a numeric value")
            continue
        if t.get("group") and t["group"] not in rules.codes.icpc:
            problems.append(f"{where}: threshold group {t['group']!r} is not an ICPC group in codes.yaml")
    if data["numerator"] in _NEEDS_THRESHOLD and not thresholds:
        problems.append(f"{where}: numerator {data['numerator']} needs thresholds")
    if thresholds and any(t.min_age or t.max_age or t.group for t in thresholds[-1:]):
        problems.append(f"{where}: the last threshold must be unconditional (it is the default)")
    if data["numerator"] == "last_value_in" and not data.get("values"):
        problems.append(f"{where}: numerator last_value_in needs values")
    if data["numerator"] == "prescribed" and data.get("atc") not in rules.codes.atc:
        problems.append(f"{where}: atc {data.get('atc')!r} is not an ATC group in codes.yaml")
    if data.get("group") and data["group"] not in rules.codes.icpc:
        problems.append(f"{where}: group {data['group']!r} is not an ICPC group in codes.yaml")
    wm = data.get("window_months", 12)
    if not isinstance(wm, int) or not 1 <= wm <= 120:
        problems.append(f"{where}: window_months {wm!r} must be 1..120")
    tp = data["target_pct"]
    if tp is not None and (not isinstance(tp, (int, float)) or not 0 <= tp <= 100):
        problems.append(f"{where}: target_pct {tp!r} must be a percentage")
    if not isinstance(data["low_is_good"], bool):
        problems.append(f"{where}: low_is_good must be true or false")
    if problems:
        return None, problems
    reviewed_on = data["reviewed_on"]
    if isinstance(reviewed_on, date):
        reviewed_on = reviewed_on.isoformat()
    return Indicator(
        iid, str(data["title"]), data["chain"], data["type"], data["numerator"], data["denominator"],
        concepts, int(wm), tuple(thresholds), tuple(str(v) for v in data.get("values") or ()),
        data.get("atc"), data.get("group"), data.get("min_age"), data.get("max_age"),
        None if tp is None else float(tp), data["low_is_good"], str(data["source"]), str(data.get("why", "")),
        str(data.get("denominator_note", "")), str(data["reviewed_by"]), str(reviewed_on),
    ), []


def load_indicators(rules: Rules | None = None, directory: Path = INDICATORS_DIR) -> dict[str, Indicator]:
    """Load every ``*.yaml`` in ``directory``; one IndicatorError lists all problems of all files."""
    from .programmes import load_programmes
    rules = rules or load_programmes()
    _ATC_GROUPS.update(rules.codes.atc)
    problems, out = [], {}
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise IndicatorError(f"{directory}: no indicator files (*.yaml) found")
    for f in files:
        try:
            data = read_yaml(f)
        except Exception as exc:  # ConfigError with the YAML problem
            problems.append(str(exc))
            continue
        ind, probs = parse_indicator(data, f.name, rules)
        problems += probs
        if ind:
            out[ind.id] = ind
    if problems:
        body = "\n".join(f"  - {p}" for p in problems)
        raise IndicatorError(f"{directory}: {len(problems)} problem(s) in the indicator definitions\n{body}")
    # report order: chain, then grouped by measurement (as listed in codes.yaml), process first
    concept_order = {c: i for i, c in enumerate(rules.codes.measurements)}
    type_order = {t: i for i, t in enumerate(TYPES)}

    def key(ind: Indicator):
        first = concept_order.get(ind.concepts[0], 99) if ind.concepts else 99
        return (CHAIN_ORDER.index(ind.chain), first, type_order[ind.type], ind.id)
    return {i.id: i for i in sorted(out.values(), key=key)}


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
    from ..suppression import MIN_PRACTICES_FOR_PEERS, peer_rates

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
