"""The praktijkspiegel's figures for every practice, measure and window in one set-based pass.

:func:`compute_mirror` runs one DuckDB query over the warehouse tables and hands the
strata (practice × window × age band × sex, with O and the denominator of every measure)
to :mod:`helpers.mirror.stats` for the reference rates, E, O/E, the intervals, the funnel
and the peer band. It returns aggregates only: no patient row leaves this module.

**Windows.** The rolling year that ends on the quarter's last day, and the seven rolling
years that end on the last days of the seven quarters before it (the trend): window ``k``
runs from the first day of quarter ``q-k-3`` to the last day of quarter ``q-k``. The
frequent-attender figures look back further (persistence needs the years ending 4 and 8
quarters earlier), so the query builds 16 windows and reports the first 8.

**Patient-years.** A patient counts in a window for the days he is registered *and* alive
in it, both ends included (``registered_from`` .. the earlier of ``registered_until`` and
``deceased_on``), divided by 365.25. Events (contacts, referrals, prescriptions,
measurements) count only on days the patient was registered and alive, so numerator and
denominator cover the same person-time; an event of a practice whose extraction date lies
before the window's end is not compared at all (that practice-window is left out).

**Age.** The contract holds the birth year only, so the age in window ``k`` is
``year(window end) - birth_year`` (the age reached in the window's last calendar year,
at least 0). A patient is in one age band per window, and his patient-years and events of
that window all fall in that band.

**Events, by name** (the ``event`` of a measure file, see :mod:`helpers.mirror.measures`):

- ``contacts``: contact rows of the given kinds and roles;
- ``referrals``: referral rows to the given specialisms (lower case, trimmed), or to all
  others when ``exclude_specialisms`` is true;
- ``prescription_patients``: patients with at least one prescription whose ATC code starts
  with one of the prefixes;
- ``measurements``: measurement occasions of the concepts' NHG numbers: one patient on one
  day counts once, however many results of these concepts that day holds;
- ``prevalence``: patients with an episode of one of the conditions (ICPC groups of
  codes.yaml, or a programme's inclusion groups) active on a day of the window on which
  they were registered; ``multimorbidity``: patients with ``min_conditions`` or more of
  the listed conditions so;
- ``frequent_attenders``: the top 10% by number of contacts (all kinds, all roles) within
  each age band × sex of the whole care group in the window; sex ``O`` is ranked within
  its age band over all sexes. Ties at the boundary all count: a patient is a frequent
  attender when fewer than 10% of the band have *more* contacts than he has (and he has at
  least one), which is deterministic and independent of row order, so a band may hold
  slightly more than 10%; ``frequent_attender_contacts``: the contacts of those patients;
  ``persistent_frequent_attenders``: frequent attenders in the window and in the rolling
  years ending 4 and 8 quarters earlier (three consecutive years, same practice).

Denominators: patient-years (default), patients (``denominator: patients``: heads in the
window, for the frequent-attender shares), or another measure's O (``share_of``).

>>> tables = compute_mirror(con, "2026Q3")                     # doctest: +SKIP
>>> tables["mirror"].query("measure == 'antibiotica'")         # doctest: +SKIP
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from ..quarter import Quarter, add_months
from ..rules.programmes import Rules, load_programmes
from . import stats
from .measures import Measure, load_measures

#: rolling years reported (the current one and the trend)
TREND_WINDOWS = 8
#: persistence looks back this many quarters per earlier year, for this many years in all
PERSISTENCE_STEP, PERSISTENCE_YEARS = 4, 3
#: the share of a band that makes the frequent attenders
FREQUENT_SHARE = 0.10
#: windows the query builds: the reported ones plus what persistence needs
ALL_WINDOWS = TREND_WINDOWS + PERSISTENCE_STEP * (PERSISTENCE_YEARS - 1)
_FAR = "DATE '9999-12-31'"


def windows(quarter) -> pd.DataFrame:
    """The rolling years ending on the last day of ``quarter`` and the quarters before it.

    >>> w = windows("2026Q3")
    >>> str(w.window_start[0]), str(w.window_end[0]), str(w.window_end[1]), len(w)
    ('2025-10-01', '2026-09-30', '2026-06-30', 16)
    """
    q = Quarter.parse(quarter)
    rows = []
    for k in range(ALL_WINDOWS):
        end_q = q
        for _ in range(k):
            end_q = end_q.previous()
        end = end_q.last_day
        start = add_months(end_q.first_day, -9)
        qi = end_q.year * 4 + end_q.number - 1
        rows.append({"k": k, "window_start": start, "window_end": end, "qi_lo": qi - 3, "qi_hi": qi})
    return pd.DataFrame(rows)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _in(values) -> str:
    return "(" + ", ".join("'" + str(v).replace("'", "''") + "'" for v in values) + ")"


def _atc(prefixes) -> str:
    return "(" + " OR ".join(f"atc LIKE '{p}%'" for p in prefixes) + ")"


# ---------------------------------------------------------------- named events
def contacts(m: Measure) -> str:
    """The row condition of a ``contacts`` measure on ``contacts``.

    >>> from types import SimpleNamespace as S
    >>> contacts(S(kinds=("consult",), roles=("huisarts",)))
    "(kind IN ('consult') AND role IN ('huisarts'))"
    """
    return f"(kind IN {_in(m.kinds)} AND role IN {_in(m.roles)})"


def referrals(m: Measure) -> str:
    """The row condition of a ``referrals`` measure on ``referrals``.

    >>> from types import SimpleNamespace as S
    >>> referrals(S(specialisms=("ggz",), exclude_specialisms=True))
    "(NOT lower(trim(specialism)) IN ('ggz'))"
    """
    return f"({'NOT ' if m.exclude_specialisms else ''}lower(trim(specialism)) IN {_in(m.specialisms)})"


def prescription_patients(m: Measure) -> str:
    """The row condition of a ``prescription_patients`` measure on ``prescriptions``.

    >>> from types import SimpleNamespace as S
    >>> prescription_patients(S(atc=("N05BA", "N05CD")))
    "(atc LIKE 'N05BA%' OR atc LIKE 'N05CD%')"
    """
    return _atc(m.atc)


def measurements(m: Measure) -> str:
    """The row condition of a ``measurements`` measure on ``measurements``.

    >>> from types import SimpleNamespace as S
    >>> measurements(S(nhg=(542, 90001)))
    '(nhg_code IN (542, 90001))'
    """
    return f"(nhg_code IN ({', '.join(str(int(n)) for n in m.nhg)}))"


#: event -> (warehouse table, row condition builder)
ROW_EVENTS = {
    "contacts": ("contacts", contacts),
    "referrals": ("referrals", referrals),
    "prescription_patients": ("prescriptions", prescription_patients),
    "measurements": ("measurements", measurements),
}
#: the frequent-attender events and their column of the ``base`` relation
FREQUENT_EVENTS = {"frequent_attenders": "fa", "frequent_attender_contacts": "fac",
                   "persistent_frequent_attenders": "pfa"}
_MAX_BITS = 62


def _condition_sql(groups: tuple[str, ...], rules: Rules) -> str:
    return "(" + " OR ".join(rules.codes.icpc[g].sql("e.icpc") for g in groups) + ")"


def _mask(conditions: list[str]) -> str:
    """A BIGINT with bit i set when condition i holds for the row."""
    if len(conditions) > _MAX_BITS:
        raise ValueError(f"more than {_MAX_BITS} measures on one table: split the bit mask")
    return "(" + " | ".join(f"(CASE WHEN {c} THEN {1 << i} ELSE 0 END)" for i, c in enumerate(conditions)) + ")::BIGINT"


def strata_sql(measures: dict[str, Measure], rules: Rules, first_day: date) -> str:
    """The one query: practice × window × age band × sex with patients, patient-years and
    every measure's O (``o_<id>``). Reads the relation ``mirror_windows`` (see :func:`windows`).

    Events are aggregated before they meet the windows: counts per practice × birth year ×
    sex × quarter (the stratum of a window follows from birth year and sex alone), and
    per-patient flags as one bit mask per patient and quarter, so the patient × window
    expansion is paid only for the patient-years and the frequent attenders."""
    band = lambda by: stats.age_band_sql(f"greatest(0, year(w.window_end) - {by})")  # noqa: E731
    reg = (f"e.practice_agb = p.practice_agb AND e.patient_id = p.patient_id "
           f"AND e.date BETWEEN p.rf AND p.rt AND e.date >= DATE '{first_day.isoformat()}'")
    qi = "year(e.date) * 4 + quarter(e.date) - 1"
    trend = f"w.k < {TREND_WINDOWS}"
    contact_ms = [m for m in measures.values() if m.event in ROW_EVENTS and ROW_EVENTS[m.event][0] == "contacts"]
    contact_counts = "".join(f", count(*) FILTER (WHERE {contacts(m)}) AS {_q('o_' + m.id)}" for m in contact_ms)
    parts = [f"""
p AS MATERIALIZED (
  SELECT row_number() OVER () AS pid, pt.practice_agb, pt.patient_id, pt.birth_year, pt.sex, pt.registered_from AS rf,
         least(coalesce(pt.registered_until, {_FAR}), coalesce(pt.deceased_on, {_FAR})) AS rt,
         pr.extraction_date
  FROM patients pt JOIN practices pr USING (practice_agb)
),
pw AS (
  SELECT p.pid, p.practice_agb, w.k, p.sex, {band('p.birth_year')} AS age_band,
         date_diff('day', greatest(p.rf, w.window_start), least(p.rt, w.window_end)) + 1 AS days
  FROM p JOIN mirror_windows w ON p.rf <= w.window_end AND p.rt >= w.window_start
  WHERE p.extraction_date >= w.window_end
),
q_contacts AS MATERIALIZED (
  SELECT p.pid, e.practice_agb, p.birth_year, p.sex, {qi} AS qi, count(*) AS n{contact_counts}
  FROM contacts e JOIN p ON {reg} GROUP BY ALL
),
nc AS (
  SELECT e.pid, w.k, sum(e.n) AS n
  FROM q_contacts e JOIN mirror_windows w ON e.qi BETWEEN w.qi_lo AND w.qi_hi
  GROUP BY ALL
),
pwn AS MATERIALIZED (
  SELECT pw.*, coalesce(nc.n, 0) AS n FROM pw LEFT JOIN nc USING (pid, k)
),
hist AS (SELECT k, age_band, sex, n, count(*) AS c FROM pwn GROUP BY ALL),
bands AS (
  SELECT k, age_band, sex, n, c FROM hist WHERE sex IN ('M', 'V')
  UNION ALL
  SELECT k, age_band, '{stats.POOLED_SEX}' AS sex, n, sum(c) AS c FROM hist GROUP BY ALL
),
thr AS (
  SELECT k, age_band, sex, min(n) AS thr
  FROM (SELECT *, coalesce(sum(c) OVER (PARTITION BY k, age_band, sex ORDER BY n DESC
                                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS more,
               sum(c) OVER (PARTITION BY k, age_band, sex) AS total
        FROM bands)
  WHERE n > 0 AND more < {FREQUENT_SHARE} * total
  GROUP BY ALL
),
pwf AS MATERIALIZED (
  SELECT pwn.*, CASE WHEN pwn.n > 0 AND pwn.n >= thr.thr THEN 1 ELSE 0 END AS fa
  FROM pwn LEFT JOIN thr USING (k, age_band, sex)
),
fap AS MATERIALIZED (SELECT pid, practice_agb, k, age_band, sex FROM pwf WHERE fa = 1),
persistent AS (
  SELECT a.practice_agb, a.k, a.age_band, a.sex, count(*) AS pfa
  FROM fap a
  JOIN fap b ON b.pid = a.pid AND b.k = a.k + {PERSISTENCE_STEP}
  JOIN fap c ON c.pid = a.pid AND c.k = a.k + {2 * PERSISTENCE_STEP}
  WHERE a.k < {TREND_WINDOWS}
  GROUP BY ALL
),
base AS (
  SELECT f.practice_agb, f.k, f.age_band, f.sex, count(*) AS patients,
         -- whole days summed, then divided: a sum of fractions in parallel threads differs in
         -- its last bits from run to run, a sum of integers never (same inputs, same bytes)
         sum(f.days) / 365.25 AS patient_years,
         sum(f.fa) AS fa, sum(f.fa * f.n) AS fac, coalesce(any_value(ps.pfa), 0) AS pfa
  FROM pwf f LEFT JOIN persistent ps USING (practice_agb, k, age_band, sex)
  WHERE f.k < {TREND_WINDOWS}
  GROUP BY ALL
)"""]
    by_table: dict[str, list[Measure]] = {}
    for m in measures.values():
        if m.event in ROW_EVENTS:
            by_table.setdefault(ROW_EVENTS[m.event][0], []).append(m)
    column = {}  # measure id -> SQL of its O in the final select
    for table, ms in by_table.items():
        conds = [ROW_EVENTS[m.event][1](m) for m in ms]
        names = [_q("o_" + m.id) for m in ms]
        column.update({m.id: f"s_{table}.{n}" for m, n in zip(ms, names)})
        if table == "contacts":  # counted per patient and quarter in q_contacts (the frequent attenders need it)
            parts.append(f"""
s_contacts AS (
  SELECT e.practice_agb, w.k, {band('e.birth_year')} AS age_band, e.sex, {', '.join(f'sum(e.{n}) AS {n}' for n in names)}
  FROM q_contacts e JOIN mirror_windows w ON e.qi BETWEEN w.qi_lo AND w.qi_hi AND {trend}
  GROUP BY ALL
)""")
        elif table == "referrals":  # every row counts: counts per birth year and sex
            counts = ", ".join(f"count(*) FILTER (WHERE {c}) AS {n}" for c, n in zip(conds, names))
            parts.append(f"""
s_{table} AS (
  SELECT e.practice_agb, w.k, {band('e.birth_year')} AS age_band, e.sex, {', '.join(f'sum(e.{n}) AS {n}' for n in names)}
  FROM (SELECT e.practice_agb, p.birth_year, p.sex, {qi} AS qi, {counts}
        FROM {table} e JOIN p ON {reg} GROUP BY ALL) e
  JOIN mirror_windows w ON e.qi BETWEEN w.qi_lo AND w.qi_hi AND {trend}
  GROUP BY ALL
)""")
        else:  # per patient (prescriptions) or per patient-day (measurements): a bit mask
            unit = "p.pid" + (", e.date" if table == "measurements" else "")
            mask = _mask(conds)
            if table == "measurements":
                inner = (f"SELECT e.practice_agb, p.birth_year, p.sex, {qi} AS qi, bit_or({mask}) AS mask "
                         f"FROM {table} e JOIN p ON {reg} GROUP BY e.practice_agb, p.birth_year, p.sex, {unit}")
                per_window = f"""(SELECT e.practice_agb, w.k, e.birth_year, e.sex, e.mask
                    FROM ({inner}) e JOIN mirror_windows w ON e.qi BETWEEN w.qi_lo AND w.qi_hi AND {trend})"""
            else:
                inner = (f"SELECT p.pid, e.practice_agb, p.birth_year, p.sex, {qi} AS qi, bit_or({mask}) AS mask "
                         f"FROM {table} e JOIN p ON {reg} GROUP BY ALL")
                per_window = f"""(SELECT e.practice_agb, w.k, e.birth_year, e.sex, bit_or(e.mask) AS mask
                    FROM ({inner}) e JOIN mirror_windows w ON e.qi BETWEEN w.qi_lo AND w.qi_hi AND {trend}
                    GROUP BY e.pid, e.practice_agb, w.k, e.birth_year, e.sex)"""
            sums = ", ".join(f"count(*) FILTER (WHERE e.mask & {1 << i} <> 0) AS {n}" for i, n in enumerate(names))
            parts.append(f"""
s_{table} AS (
  SELECT e.practice_agb, w.k, {band('e.birth_year')} AS age_band, e.sex, {sums}
  FROM {per_window} e JOIN mirror_windows w USING (k)
  GROUP BY ALL
)""")
    conditions = sorted({g for m in measures.values() if m.event in ("prevalence", "multimorbidity")
                         for g in m.condition_groups})
    if conditions:
        bit = {g: 1 << i for i, g in enumerate(conditions)}
        sums = []
        for m in measures.values():
            if m.event not in ("prevalence", "multimorbidity"):
                continue
            cmask = sum(bit[g] for g in m.condition_groups)
            need = 1 if m.event == "prevalence" else m.min_conditions
            sums.append(f"count(*) FILTER (WHERE bit_count(e.mask & {cmask}) >= {need}) AS {_q('o_' + m.id)}")
            column[m.id] = f"s_episodes.{_q('o_' + m.id)}"
        mask = _mask([_condition_sql(g, rules) for g in conditions])
        every = _condition_sql(tuple(sorted({x for g in conditions for x in g})), rules)
        parts.append(f"""
s_episodes AS (
  SELECT e.practice_agb, w.k, {band('e.birth_year')} AS age_band, e.sex, {', '.join(sums)}
  FROM (SELECT e.practice_agb, w.k, p.birth_year, p.sex, bit_or({mask}) AS mask
        FROM episodes e JOIN p ON e.practice_agb = p.practice_agb AND e.patient_id = p.patient_id
        JOIN mirror_windows w ON {trend} AND p.rf <= w.window_end AND p.rt >= w.window_start
             AND e.start_date <= least(p.rt, w.window_end)
             AND coalesce(e.end_date, {_FAR}) >= greatest(p.rf, w.window_start)
        WHERE {every}
        GROUP BY p.pid, e.practice_agb, w.k, p.birth_year, p.sex) e
  JOIN mirror_windows w USING (k)
  GROUP BY ALL
)""")
    for m in measures.values():
        if m.event in FREQUENT_EVENTS:
            column[m.id] = f"base.{FREQUENT_EVENTS[m.event]}"
    select = ", ".join(f"coalesce({column[m.id]}, 0) AS {_q('o_' + m.id)}" for m in measures.values())
    joins = "".join(f" LEFT JOIN s_{t} USING (practice_agb, k, age_band, sex)"
                    for t in list(by_table) + (["episodes"] if conditions else []))
    return ("WITH " + ",".join(parts) + f"""
SELECT base.practice_agb, base.k, base.age_band, base.sex, base.patients, base.patient_years{', ' + select if select else ''}
FROM base{joins}
ORDER BY base.practice_agb, base.k, base.age_band, base.sex""")   # a fixed row order: pandas sums in it


def compute_mirror(con, quarter, measures: dict[str, Measure] | None = None,
                   rules: Rules | None = None) -> dict[str, pd.DataFrame]:
    """Every mirror figure of every practice for ``quarter`` and the seven quarters before it.

    Returns ``mirror`` (practice × measure × window: O, E, denominator, patient_years,
    rate, expected_rate, ratio, lo, hi, median, p10, p90, funnel limits, position,
    beyond_chance), ``mirror_strata`` (the age/sex make-up of each practice against the
    care group, per window) and ``mirror_measures`` (the definitions and national figures).
    Aggregates only: no patient rows.
    """
    rules = rules or load_programmes()
    measures = measures if measures is not None else load_measures(rules=rules)
    w = windows(quarter)
    cur = con.cursor()  # its own session: the caller's settings and open results stay as they are
    try:
        cur.register("mirror_windows", w)
        cur.execute("SET enable_progress_bar = false")  # a batch log is no terminal
        strata = cur.execute(strata_sql(measures, rules, w["window_start"].min())).df()
    finally:
        cur.close()
    ends = dict(zip(w["k"], w["window_end"]))
    return {
        "mirror": _mirror_table(strata, measures, ends),
        "mirror_strata": _strata_table(strata, ends),
        "mirror_measures": measures_table(measures),
    }


def _long(strata: pd.DataFrame, measures: dict[str, Measure]) -> pd.DataFrame:
    """One row per measure × practice × window × stratum with O and the denominator D
    (built as arrays: one column block per measure, no per-measure frames)."""
    keys = ["practice_agb", "k", "age_band", "sex"]
    ms = list(measures.values())
    n, width = len(strata), len(ms)
    if not width:
        return pd.DataFrame(columns=keys + ["measure", "O", "D"])

    def den(m: Measure) -> str:
        return "o_" + m.share_of if m.share_of else ("patients" if m.denominator == "patients" else "patient_years")
    O = strata[["o_" + m.id for m in ms]].to_numpy(dtype="float64")
    D = strata[[den(m) for m in ms]].to_numpy(dtype="float64")
    crude = np.array([not m.standardised for m in ms])  # one stratum: the care group's crude rate
    band = np.where(crude[None, :], "all", strata["age_band"].to_numpy(dtype=object)[:, None])
    sex = np.where(crude[None, :], stats.POOLED_SEX, strata["sex"].to_numpy(dtype=object)[:, None])
    return pd.DataFrame({
        "practice_agb": np.repeat(strata["practice_agb"].to_numpy(dtype=object), width),
        "k": np.repeat(strata["k"].to_numpy(), width),
        "age_band": band.ravel(), "sex": sex.ravel(),
        "measure": np.tile(np.array([m.id for m in ms], dtype=object), n),
        "O": O.ravel(), "D": D.ravel(),
    })


def _mirror_table(strata: pd.DataFrame, measures: dict[str, Measure], ends: dict) -> pd.DataFrame:
    long = _long(strata, measures)
    out = stats.standardise(long, ["measure", "k"], ["practice_agb"])
    py = strata.groupby(["practice_agb", "k"], as_index=False)["patient_years"].sum()
    out = out.merge(py, on=["practice_agb", "k"], how="left").rename(columns={"D": "denominator"})
    mult = out["measure"].map({m.id: m.multiplier for m in measures.values()})
    den = out["denominator"].where(out["denominator"] > 0)
    out["rate"] = out["O"] / den * mult
    out["expected_rate"] = out["E"] / den * mult
    out["ratio"], out["lo"], out["hi"] = stats.ratio_interval(out["O"], out["E"])
    out = stats.add_funnel(out, ["measure", "k"])
    out = out.merge(stats.peer_band(out, ["measure", "k"]), on=["measure", "k"], how="left")
    out["O"] = out["O"].round().astype("int64")
    out.insert(2, "window_end", pd.to_datetime(out["k"].map(ends)))
    order = {mid: i for i, mid in enumerate(measures)}
    out = out.sort_values(["k", "measure", "practice_agb"], key=lambda s: s.map(order) if s.name == "measure" else s)
    out = out.rename(columns={"k": "window"})
    first = ["practice_agb", "measure", "window", "window_end"]
    return out[first + [c for c in out.columns if c not in first]].reset_index(drop=True)


def _strata_table(strata: pd.DataFrame, ends: dict) -> pd.DataFrame:
    s = strata.groupby(["practice_agb", "k", "age_band", "sex"], as_index=False)[["patients", "patient_years"]].sum()
    group = s.groupby(["k", "age_band", "sex"], as_index=False)[["patients", "patient_years"]].sum()
    group = group.rename(columns={"patients": "care_group_patients", "patient_years": "care_group_patient_years"})
    s = s.merge(group, on=["k", "age_band", "sex"], how="left")
    s["share"] = s["patient_years"] / s.groupby(["practice_agb", "k"])["patient_years"].transform("sum")
    s["care_group_share"] = s["care_group_patient_years"] / s.groupby(["practice_agb", "k"])["care_group_patient_years"].transform("sum")
    s.insert(2, "window_end", pd.to_datetime(s["k"].map(ends)))
    band_order = {b: i for i, b in enumerate(stats.AGE_BAND_LABELS)}
    s = s.sort_values(["k", "practice_agb", "sex", "age_band"], key=lambda c: c.map(band_order) if c.name == "age_band" else c)
    return s.rename(columns={"k": "window"}).reset_index(drop=True)


def measures_table(measures: dict[str, Measure]) -> pd.DataFrame:
    """The measure definitions and their national figures, one row per measure."""
    rows = []
    for m in measures.values():
        n = m.national
        rows.append({
            "measure": m.id, "title": m.title, "section": m.section, "unit": m.unit, "unit_label": m.unit_label,
            "standardised": m.standardised, "denominator": m.denominator, "trend": m.trend, "why": m.why,
            "source": m.source, "national_value": np.nan if n is None else n.value,
            "national_year": None if n is None else n.year, "national_status": None if n is None else n.status,
            "national_source": None if n is None else n.source, "national_note": None if n is None else n.note,
        })
    return pd.DataFrame(rows)
