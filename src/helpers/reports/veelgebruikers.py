"""The practice's own frequent-attender monitor (regioprestatie Veelgebruikers): who the
practice's frequent attenders are, which placeholder profile(s) they fit, which patients are
candidates for the plan, and for the plan's patients the 0-meting and every quarter since.

Declared in the registry (``REPORTS["veelgebruikers"]``). Practice scope and
patient level: it appears only in the practice's own folder, ``outputs/<q>/<agb>/
veelgebruikers.html|pdf`` with ``veelgebruikers.csv`` and ``veelgebruikers_monitor.csv``
beside it. Patient number, birth year and sex only, never a name.

**Prepare** (:func:`prepare`, in the quarter's prepare pass, set-based for every practice):
the frequent attenders of the rolling year come from ``helpers.mirror.frequent`` (the
praktijkspiegel's own rule and SQL); this module adds, per frequent attender, the contacts of
the last four quarters by kind, the chronic conditions and the profiles of
``parameters/veelgebruikers.yaml`` (each criterion compiled to SQL), the candidate order, and
for the patients of ``veelgebruikers_plan`` the 0-meting and the quarters since selection.
Cube tables (one row per ...):

- ``veelgebruikers_patienten``: practice x frequent attender of the rolling year;
- ``veelgebruikers_kwartalen``: practice x frequent attender x quarter of the rolling year;
- ``veelgebruikers_plan_monitor``: practice x plan patient x period (``0-meting``, then
  every quarter from the one of ``selected_on`` to the report's quarter);
- ``veelgebruikers_praktijk``: practice x period (``huidig``, ``0-meting``): frequent
  attenders and their contacts in the rolling year and in the regioprestatie's baseline year.

**Counting.** Contacts of every kind and role, as the praktijkspiegel counts them: in the
rolling year, on days the patient was registered and alive. Kinds are shown in four groups
(:data:`KIND_GROUPS`): consult (short and long), telefonisch, visite (short and long),
e-consult. The 0-meting of a plan patient is every contact in the twelve months before
``selected_on``; a quarter after it counts from ``selected_on`` (the first one is partial)
to the quarter's end or ``ended_on``.

**Candidates** (:data:`CANDIDATE_ORDER_NL`): frequent attenders still registered at the end
of the year and not in the plan, persistent ones first (one-year frequent attendance mostly
passes by itself: about 70% are no frequent attender the next year, shared/reference
mirror-and-frequent-attenders.md §2), then by how far their contacts exceed their own age/sex
band's threshold, then by contacts, then patient number (a total order).

>>> icpc_sql(("P", "P76", "A01-A29"), "c.icpc")
"((substr(c.icpc, 1, 1) = 'P') OR (c.icpc = 'P76' OR c.icpc LIKE 'P76.%') OR (substr(c.icpc, 1, 1) = 'A' AND TRY_CAST(substr(c.icpc, 2, 2) AS INTEGER) BETWEEN 1 AND 29))"
>>> change_text(24, 12.0)
'−50%'
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .. import escape
from ..cube import read_meta, read_slice
from ..cube.read import practice_row
from ..quarter import Quarter
from ..rules.veelgebruikers import Criterion, VeelgebruikersParams, load_veelgebruikers
from ..tables import nl_number
from .registry import VEELGEBRUIKERS_PREPARE

#: the contract's kinds in the four groups the monitor shows (column, Dutch label, kinds)
KIND_GROUPS = (("consult", "Consult", ("consult", "consult_lang")),
               ("telefonisch", "Telefonisch", ("telefonisch",)),
               ("visite", "Visite", ("visite", "visite_lang")),
               ("e_consult", "E-consult", ("e-consult",)))
KIND_COLUMNS = tuple(k for k, _, _ in KIND_GROUPS)
#: the cube tables of the prepare step, declared once in the registry
TABLES = VEELGEBRUIKERS_PREPARE.tables
SEX_NL = {"M": "man", "V": "vrouw", "O": "onbekend"}
CANDIDATE_ORDER_NL = ("nog ingeschreven en niet in het plan; eerst de persisterende veelgebruikers (drie jaar op rij), "
                      "dan naar hoe ver hun contacten boven de drempel van hun eigen leeftijds- en geslachtsgroep "
                      "liggen, dan naar aantal contacten")
_FAR = "DATE '9999-12-31'"
BASELINE, CURRENT = "0-meting", "huidig"


def _lit(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _in(values) -> str:
    return "(" + ", ".join(_lit(v) for v in values) + ")"


# ------------------------------------------------------------------ criteria as SQL
def icpc_sql(items, column: str) -> str:
    """An ICPC item list (chapter, code with sub-codes, range within a chapter) as SQL."""
    parts = []
    for it in items:
        if len(it) == 1:
            parts.append(f"(substr({column}, 1, 1) = {_lit(it)})")
        elif "-" in it:
            lo, hi = it.split("-")
            parts.append(f"(substr({column}, 1, 1) = {_lit(lo[0])} AND TRY_CAST(substr({column}, 2, 2) AS INTEGER) "
                         f"BETWEEN {int(lo[1:3])} AND {int(hi[1:3])})")
        else:
            parts.append(f"({column} = {_lit(it)} OR {column} LIKE {_lit(it + '.%')})")
    return "(" + " OR ".join(parts) + ")"


def _contact_filter(c: Criterion) -> str:
    conds = []
    if c.icpc:
        conds.append(icpc_sql(c.icpc, "c.icpc"))
    if c.kinds:
        conds.append(f"c.kind IN {_in(c.kinds)}")
    if c.roles:
        conds.append(f"c.role IN {_in(c.roles)}")
    return " AND ".join(conds) or "TRUE"


def _bounded(value: str, c: Criterion) -> str:
    out = []
    if c.at_least is not None:
        out.append(f"{value} >= {c.at_least}")
    if c.at_most is not None:
        out.append(f"{value} <= {c.at_most}")
    if c.share_at_least is not None:
        out.append(f"{value} >= {c.share_at_least} * f.contacts")
    return "(" + " AND ".join(out or ["TRUE"]) + ")"


class _Compiled:
    """The profiles of the parameters as SQL: feature columns per criterion and one boolean
    expression per profile over them (relation aliases: ``c`` contacts, ``e`` episodes,
    ``f`` the joined features)."""

    def __init__(self, params: VeelgebruikersParams, rules):
        self.params, self.rules = params, rules
        self.contact_features: list[str] = []
        self.episode_features: list[str] = []
        groups = list(params.chronic_conditions)
        for p in params.profiles:
            for c in (*p.all, *p.any):
                groups += [g for g in c.groups if g not in groups]
        self.groups = groups
        self.profiles = {p.id: self._profile(p) for p in params.profiles}

    def _criterion(self, c: Criterion) -> str:
        if c.kind == "contacts":
            name = f"fc{len(self.contact_features)}"
            self.contact_features.append(f"count(*) FILTER (WHERE {_contact_filter(c)}) AS {name}")
            return _bounded(f"coalesce(f.{name}, 0)", c)
        if c.kind == "episodes":
            name = f"fe{len(self.episode_features)}"
            self.episode_features.append(f"count(*) FILTER (WHERE {icpc_sql(c.icpc, 'e.icpc')}) AS {name}")
            return _bounded(f"coalesce(f.{name}, 0)", c)
        if c.kind == "conditions":
            return _bounded("(" + " + ".join(f"coalesce(f.cg_{g}, FALSE)::INT" for g in c.groups) + ")", c)
        if c.kind == "peak_quarter":
            return _bounded("greatest(f.q0, f.q1, f.q2, f.q3)", c)
        if c.kind == "age":
            out = []
            if c.age_at_least is not None:
                out.append(f"f.age >= {int(c.age_at_least)}")
            if c.age_below is not None:
                out.append(f"f.age < {int(c.age_below)}")
            return "(" + " AND ".join(out or ["TRUE"]) + ")"
        raise ValueError(c.kind)

    def _profile(self, p) -> str:
        parts = [self._criterion(c) for c in p.all]
        if p.any:
            parts.append("(" + " OR ".join(self._criterion(c) for c in p.any) + ")")
        return "(" + " AND ".join(parts) + ")"

    def group_columns(self) -> str:
        return ", ".join(f"bool_or({self.rules.codes.icpc[g].sql('e.icpc')}) AS cg_{g}" for g in self.groups)


def _quarters(q: Quarter, n: int) -> list[Quarter]:
    """The ``n`` quarters ending with ``q``, oldest first."""
    out = [q]
    for _ in range(n - 1):
        out.append(out[-1].previous())
    return out[::-1]


def _qi(q: Quarter) -> int:
    return q.year * 4 + q.number - 1


# ------------------------------------------------------------------ the prepare step
def prepare(con, quarter, tables: dict | None = None, params: VeelgebruikersParams | None = None,
            rules=None) -> dict[str, pd.DataFrame]:
    """The monitor's four tables for every practice (see the module docstring)."""
    from ..mirror.frequent import frequent_attenders, window_of
    from ..rules.programmes import load_programmes
    rules = rules or load_programmes()
    params = params or load_veelgebruikers(rules=rules)
    q = Quarter.parse(quarter)
    k_base = window_of(params.baseline_quarter, q)
    fa_all = frequent_attenders(con, q, ks=(0,) if k_base is None else (0, k_base))
    fa = fa_all[fa_all["k"] == 0].drop(columns=["k", "window_end"]).reset_index(drop=True)
    fa["persistent"] = fa["persistent"].fillna(False).astype(bool)
    quarters = _quarters(q, 4)
    ws, we = quarters[0].first_day.isoformat(), q.last_day.isoformat()
    comp = _Compiled(params, rules)
    cur = con.cursor()
    try:
        cur.execute("SET enable_progress_bar = false")
        cur.register("vg_fa", fa)
        base = f"""
pt AS MATERIALIZED (
  SELECT fa.*, pt.birth_year, pt.registered_from AS rf,
         least(coalesce(pt.registered_until, {_FAR}), coalesce(pt.deceased_on, {_FAR})) AS rt
  FROM vg_fa fa JOIN patients pt USING (practice_agb, patient_id)
),
c AS MATERIALIZED (
  SELECT pt.practice_agb, pt.patient_id, c.kind, c.role, c.icpc, year(c.date) * 4 + quarter(c.date) - 1 AS qi
  FROM contacts c JOIN pt ON c.practice_agb = pt.practice_agb AND c.patient_id = pt.patient_id
   AND c.date BETWEEN greatest(pt.rf, DATE '{ws}') AND least(pt.rt, DATE '{we}')
)"""
        kinds = ", ".join(f"count(*) FILTER (WHERE c.kind IN {_in(ks)}) AS {col}" for col, _, ks in KIND_GROUPS)
        per_q = ", ".join(f"count(*) FILTER (WHERE c.qi = {_qi(x)}) AS q{i}" for i, x in enumerate(quarters))
        extra = "".join(", " + s for s in comp.contact_features)
        ep_extra = "".join(", " + s for s in comp.episode_features)
        cond_list = ", ".join(f"CASE WHEN coalesce(f.cg_{g}, FALSE) THEN {_lit(g)} END" for g in params.chronic_conditions)
        n_cond = " + ".join(f"coalesce(f.cg_{g}, FALSE)::INT" for g in params.chronic_conditions) or "0"
        prof_list = ", ".join(f"CASE WHEN {expr} THEN {_lit(pid)} END" for pid, expr in comp.profiles.items())
        features = cur.execute(f"""WITH {base},
cf AS (
  SELECT c.practice_agb, c.patient_id, count(*) AS counted, {kinds},
         count(*) FILTER (WHERE c.role = 'poh-ggz') AS poh_ggz, count(*) FILTER (WHERE c.role = 'poh-s') AS poh_s,
         {per_q}{extra}
  FROM c GROUP BY ALL
),
ef AS (
  SELECT pt.practice_agb, pt.patient_id, {comp.group_columns() or 'count(*) AS n_episodes'}{ep_extra}
  FROM episodes e JOIN pt ON e.practice_agb = pt.practice_agb AND e.patient_id = pt.patient_id
   AND e.start_date <= least(pt.rt, DATE '{we}') AND coalesce(e.end_date, {_FAR}) >= greatest(pt.rf, DATE '{ws}')
  GROUP BY ALL
),
f AS (
  SELECT pt.practice_agb, pt.patient_id, pt.birth_year, pt.sex, pt.age_band,
         greatest(0, {q.year} - pt.birth_year) AS age, pt.contacts, pt.threshold, pt.persistent,
         pt.rt >= DATE '{we}' AS registered, cf.* EXCLUDE (practice_agb, patient_id), ef.* EXCLUDE (practice_agb, patient_id)
  FROM pt LEFT JOIN cf USING (practice_agb, patient_id) LEFT JOIN ef USING (practice_agb, patient_id)
)
SELECT f.practice_agb, f.patient_id, f.birth_year, f.sex, f.age, f.age_band, f.contacts::BIGINT AS contacts,
       f.threshold::BIGINT AS threshold, f.persistent, f.registered,
       {', '.join(f'coalesce(f.{k}, 0) AS {k}' for k in KIND_COLUMNS)}, coalesce(f.poh_ggz, 0) AS poh_ggz,
       coalesce(f.poh_s, 0) AS poh_s, {', '.join(f'coalesce(f.q{i}, 0) AS q{i}' for i in range(4))},
       coalesce(concat_ws(',', {cond_list or 'NULL'}), '') AS conditions, ({n_cond}) AS n_conditions,
       coalesce(concat_ws(',', {prof_list or 'NULL'}), '') AS profiles
FROM f ORDER BY f.practice_agb, f.patient_id""").df()
        per_quarter = cur.execute(f"""WITH {base}
SELECT c.practice_agb, c.patient_id, c.qi, count(*) AS contacts,
       {', '.join(f'count(*) FILTER (WHERE c.kind IN {_in(ks)}) AS {col}' for col, _, ks in KIND_GROUPS)}
FROM c GROUP BY ALL""").df()
        monitor = _plan_monitor(cur, q)
    finally:
        cur.close()
    patients = _with_plan_and_candidates(features, monitor, q)
    practices = (tables or {}).get("practices")
    regional = regional_tables(con, q, k_base, monitor, practices, params) if practices is not None else {}
    return {"veelgebruikers_patienten": patients,
            "veelgebruikers_kwartalen": _quarter_grid(patients, per_quarter, quarters),
            "veelgebruikers_plan_monitor": monitor,
            "veelgebruikers_praktijk": _practice_table(fa_all, tables, k_base),
            **regional}


#: the regional report's shared tables of the regioprestatie (declared in the registry)
REGIONAL_FA_TABLE, REGIONAL_PLAN_TABLE = (t.name for t in VEELGEBRUIKERS_PREPARE.shared)
#: the kinds the regioprestatie follows (consults, phone, visits; e-consults shown apart)
FOLLOWED = ("consult", "telefonisch", "visite", "e_consult")


def regional_tables(con, q: Quarter, k_base: int | None, monitor: pd.DataFrame, practices: pd.DataFrame,
                    params: VeelgebruikersParams) -> dict[str, pd.DataFrame]:
    """What the care group reports to the insurer, aggregated: per practice and quarter from the
    baseline quarter (the 0-meting's) to ``q``, the frequent attenders of the rolling year ending
    that quarter and their contacts in that quarter by kind; and per region and period (0-meting,
    then each quarter after selection) the plan patients' contacts by kind. A practice's own plan
    (five patients) is below the small-number rule, so the plan is shown per region; per practice
    only whether it has a plan of ``params.plan_size``."""
    from ..mirror.frequent import frequent_attenders
    last = 0 if k_base is None else k_base
    fa = frequent_attenders(con, q, ks=tuple(range(0, last + 1)))
    windows_q = {k: q for k in [0]}
    x = q
    for k in range(1, last + 1):
        x = x.previous()
        windows_q[k] = x
    fa = fa[["practice_agb", "patient_id", "k"]].assign(
        qs=[windows_q[k].first_day for k in fa["k"]], qe=[windows_q[k].last_day for k in fa["k"]])
    cur = con.cursor()
    try:
        cur.execute("SET enable_progress_bar = false")
        cur.register("vg_fa_k", fa)
        kinds = ", ".join(f"count(c.contact_id) FILTER (WHERE c.kind IN {_in(ks)}) AS {col}" for col, _, ks in KIND_GROUPS)
        counts = cur.execute(f"""
SELECT f.practice_agb, f.k, count(DISTINCT f.patient_id) AS frequent_attenders, {kinds}
FROM vg_fa_k f LEFT JOIN contacts c ON c.practice_agb = f.practice_agb AND c.patient_id = f.patient_id
  AND c.date BETWEEN f.qs AND f.qe
GROUP BY ALL""").df()
    finally:
        cur.close()
    where = practices[["practice_agb", "name", "region"]].copy()
    where["region"] = where["region"].fillna("").astype(str)
    grid = where.merge(pd.DataFrame({"k": list(windows_q), "quarter": [str(v) for v in windows_q.values()]}), how="cross")
    per_q = grid.merge(counts, on=["practice_agb", "k"], how="left")
    for c in ("frequent_attenders", *FOLLOWED):
        per_q[c] = per_q[c].fillna(0).astype("int64")
    for c in FOLLOWED:
        per_q[f"mean_{c}"] = per_q[c] / per_q["frequent_attenders"].where(per_q["frequent_attenders"] > 0)
    # a plan of five in a quarter: five patients selected by its last day and still in the plan then
    plan = monitor.drop_duplicates(["practice_agb", "patient_id"])
    sel, end = pd.to_datetime(plan["selected_on"]), pd.to_datetime(plan["ended_on"])
    active = {}
    for k, x in windows_q.items():
        last_day = pd.Timestamp(x.last_day)
        in_plan = plan[(sel <= last_day) & (end.isna() | (end > last_day))]
        active[k] = in_plan.groupby("practice_agb").size()
    per_q["plan_complete"] = [int(active[k].get(a, 0)) >= params.plan_size for a, k in zip(per_q["practice_agb"], per_q["k"])]
    per_q = per_q.sort_values(["region", "name", "k"], ascending=[True, True, False])
    fa_table = per_q[["region", "practice_agb", "name", "quarter", "frequent_attenders", *FOLLOWED,
                      *(f"mean_{c}" for c in FOLLOWED), "plan_complete"]].reset_index(drop=True)

    m = monitor.merge(where, on="practice_agb", how="inner")
    m["pid"] = m["practice_agb"].astype(str) + "/" + m["patient_id"].astype(str)   # ids are per practice
    levels = []
    for scope, frame in [("regio", m), ("zorggroep", m.assign(region="zorggroep"))]:
        # seq 0 is the 0-meting, seq n the n-th quarter from the one of selection (patients
        # selected in different quarters line up on it: before and after the plan)
        g = frame.groupby(["region", "seq"], as_index=False).agg(
            plan_patients=("pid", "nunique"), days=("days", "sum"),
            **{c: (c, "sum") for c in FOLLOWED})
        levels.append(g.assign(scope=scope))
    plan = pd.concat(levels, ignore_index=True) if levels else pd.DataFrame()
    if len(plan):
        # contacts per plan patient per quarter: the contacts over the patient-days covered, times
        # a quarter's days (the 0-meting covers twelve months, a quarter since selection its part)
        for c in FOLLOWED:
            plan[f"per_quarter_{c}"] = plan[c] / (plan["days"] / 91.3125).where(plan["days"] > 0)
        plan = plan.drop(columns="days").sort_values(["scope", "region", "seq"])
    cols = ["scope", "region", "seq", "plan_patients", *FOLLOWED, *(f"per_quarter_{c}" for c in FOLLOWED)]
    plan = plan[cols].reset_index(drop=True) if len(plan) else pd.DataFrame(columns=cols)
    for c in ("plan_patients", *FOLLOWED):
        plan[c] = plan[c].astype("Int64")
    return {REGIONAL_FA_TABLE: fa_table, REGIONAL_PLAN_TABLE: plan}


def _plan_monitor(cur, q: Quarter) -> pd.DataFrame:
    """Per plan patient the 0-meting and every quarter from the one of ``selected_on`` up to
    ``q``: days covered and contacts by kind."""
    first = cur.execute("SELECT min(selected_on) FROM veelgebruikers_plan").fetchone()[0]
    periods = [f"SELECT pl.*, {_lit(BASELINE)} AS period, 0 AS seq, "
               f"CAST(pl.selected_on - INTERVAL 12 MONTH AS DATE) AS period_start, "
               f"CAST(pl.selected_on - INTERVAL 1 DAY AS DATE) AS period_end FROM pl"]
    if first is not None and first <= q.last_day:
        qs, x = [], Quarter.containing(first)
        while x <= q:
            qs.append(x)
            x = x.next()
        values = ", ".join(f"({_lit(x)}, {i + 1}, DATE '{x.first_day}', DATE '{x.last_day}')" for i, x in enumerate(qs))
        periods.append(f"""SELECT pl.*, qq.label AS period, qq.seq,
       greatest(qq.qs, pl.selected_on) AS period_start, least(qq.qe, coalesce(pl.ended_on, {_FAR})) AS period_end
FROM pl JOIN (VALUES {values}) qq(label, seq, qs, qe)
  ON qq.qe >= pl.selected_on AND qq.qs <= coalesce(pl.ended_on, {_FAR})""")
    kinds = ", ".join(f"count(c.contact_id) FILTER (WHERE c.kind IN {_in(ks)}) AS {col}" for col, _, ks in KIND_GROUPS)
    return cur.execute(f"""WITH pl AS (
  SELECT v.practice_agb, v.patient_id, pt.birth_year, pt.sex, v.selected_on, v.ended_on, coalesce(v.profile, '') AS profile
  FROM veelgebruikers_plan v LEFT JOIN patients pt USING (practice_agb, patient_id)
),
periods AS ({' UNION ALL '.join(periods)})
SELECT p.practice_agb, p.patient_id, p.birth_year, p.sex, p.selected_on, p.ended_on, p.profile, p.period, p.seq,
       p.period_start, p.period_end, date_diff('day', p.period_start, p.period_end) + 1 AS days,
       count(c.contact_id) AS contacts, {kinds}
FROM periods p LEFT JOIN contacts c ON c.practice_agb = p.practice_agb AND c.patient_id = p.patient_id
  AND c.date BETWEEN p.period_start AND p.period_end
GROUP BY ALL
ORDER BY p.practice_agb, p.selected_on, p.patient_id, p.seq""").df()


def _with_plan_and_candidates(f: pd.DataFrame, monitor: pd.DataFrame, q: Quarter) -> pd.DataFrame:
    """``in_plan`` (in the plan on the quarter's last day or later) and ``candidate_rank``
    (1, 2, ... per practice, :data:`CANDIDATE_ORDER_NL`; empty for the others)."""
    plan = monitor.drop_duplicates(["practice_agb", "patient_id"])
    active = plan[plan["ended_on"].isna() | (pd.to_datetime(plan["ended_on"]) > pd.Timestamp(q.last_day))]
    keys = set(zip(active["practice_agb"], active["patient_id"]))
    f = f.copy()
    f["in_plan"] = [k in keys for k in zip(f["practice_agb"], f["patient_id"])]
    f["excess"] = f["contacts"] / f["threshold"].where(f["threshold"] > 0)
    cand = f[f["registered"].astype(bool) & ~f["in_plan"]].sort_values(
        ["practice_agb", "persistent", "excess", "contacts", "patient_id"], ascending=[True, False, False, False, True])
    f["candidate_rank"] = pd.Series(cand.groupby("practice_agb").cumcount() + 1, index=cand.index).reindex(f.index)
    f["candidate_rank"] = f["candidate_rank"].astype("Int64")
    return f.reset_index(drop=True)


def _quarter_grid(patients: pd.DataFrame, counts: pd.DataFrame, quarters: list[Quarter]) -> pd.DataFrame:
    """Every frequent attender x each of the four quarters (zeros included)."""
    grid = patients[["practice_agb", "patient_id"]].merge(
        pd.DataFrame({"qi": [_qi(x) for x in quarters], "quarter": [str(x) for x in quarters]}), how="cross")
    out = grid.merge(counts, on=["practice_agb", "patient_id", "qi"], how="left")
    for c in ("contacts", *KIND_COLUMNS):
        out[c] = out[c].fillna(0).astype("int64")
    return out.drop(columns="qi").sort_values(["practice_agb", "patient_id", "quarter"]).reset_index(drop=True)


def _practice_table(fa_all: pd.DataFrame, tables: dict | None, k_base: int | None) -> pd.DataFrame:
    """Per practice and period (``huidig``; ``0-meting`` when its year was built): frequent
    attenders and their contacts (every practice of the cube, 0 where none)."""
    rows = []
    agbs = sorted(set(fa_all["practice_agb"]) | set((tables or {}).get("practices", pd.DataFrame(
        {"practice_agb": []}))["practice_agb"].astype(str)))
    periods = [(CURRENT, 0)] + ([(BASELINE, k_base)] if k_base is not None else [])
    for period, k in periods:
        sub = fa_all[fa_all["k"] == k]
        g = sub.groupby("practice_agb").agg(frequent_attenders=("patient_id", "size"), contacts=("contacts", "sum"),
                                            persistent=("persistent", lambda s: int(s.fillna(False).astype(bool).sum())))
        end = sub["window_end"].iloc[0] if len(sub) else pd.NaT
        for agb in agbs:
            r = g.loc[agb] if agb in g.index else None
            rows.append({"practice_agb": agb, "period": period, "window_end": end,
                         "frequent_attenders": int(r["frequent_attenders"]) if r is not None else 0,
                         "contacts": int(r["contacts"]) if r is not None else 0,
                         "persistent": int(r["persistent"]) if r is not None else 0})
    return pd.DataFrame(rows, columns=["practice_agb", "period", "window_end", "frequent_attenders", "contacts",
                                       "persistent"])


# ------------------------------------------------------------------ loading
@dataclass
class VeelgebruikersData:
    """One practice's monitor: its rows of the four cube tables and the parameters."""
    quarter: Quarter
    practice: pd.Series
    patients: pd.DataFrame
    quarters: pd.DataFrame
    plan: pd.DataFrame
    summary: pd.DataFrame
    params: VeelgebruikersParams
    meta: dict

    @cached_property
    def quarter_labels(self) -> list[str]:
        return [str(x) for x in _quarters(self.quarter, 4)]

    @property
    def plan_patients(self) -> pd.DataFrame:
        """One row per plan patient (its 0-meting row), in plan order."""
        return self.plan[self.plan["period"] == BASELINE].reset_index(drop=True)

    @property
    def active_plan(self) -> pd.DataFrame:
        p = self.plan_patients
        return p[p["ended_on"].isna() | (pd.to_datetime(p["ended_on"]) > pd.Timestamp(self.quarter.last_day))]


def load(cube: Path | str, practice_agb: str) -> VeelgebruikersData:
    """Read one practice's monitor from the quarter cube; an unknown practice is a ParameterError."""
    cube = Path(cube)
    meta = read_meta(cube)
    practice = practice_row(cube, practice_agb)
    return VeelgebruikersData(
        quarter=Quarter.parse(meta["quarter"]), practice=practice,
        patients=read_slice(cube, "veelgebruikers_patienten", practice_agb=practice_agb),
        quarters=read_slice(cube, "veelgebruikers_kwartalen", practice_agb=practice_agb),
        plan=read_slice(cube, "veelgebruikers_plan_monitor", practice_agb=practice_agb),
        summary=read_slice(cube, "veelgebruikers_praktijk", practice_agb=practice_agb),
        params=load_veelgebruikers(), meta=meta)


# ------------------------------------------------------------------ text and tables
def _date(d) -> str:
    return "–" if d is None or pd.isna(d) else pd.Timestamp(d).strftime("%d-%m-%Y")


def _period(data: VeelgebruikersData) -> str:
    return f"{_date(_quarters(data.quarter, 4)[0].first_day)} t/m {_date(data.quarter.last_day)}"


def heading(data: VeelgebruikersData) -> str:
    name = escape.markdown(data.practice.get("name", ""))
    return (f"# Veelgebruikers {data.quarter}\n\n**{name}** (AGB {escape.markdown(data.practice['practice_agb'])}) "
            f"· alleen voor de eigen praktijk: dit rapport bevat patiëntgegevens")


def _short(title: str) -> str:
    """A title without its explanation in brackets (``SOLK (somatisch ...)`` -> ``SOLK``)."""
    return title.split(" (")[0]


def profile_titles(data: VeelgebruikersData, ids: str, short: bool = False) -> str:
    names = [data.params.profile(i).title if data.params.profile(i) else i for i in str(ids or "").split(",") if i]
    return ", ".join(_short(n) if short else n for n in names) or "–"


#: the abbreviations a GP reads in a narrow column (the CSV has codes.yaml's titles)
CONDITION_SHORT = {"dm2": "DM2", "copd": "COPD", "astma": "Astma", "hvz": "HVZ", "ckd": "Nierschade",
                   "hypertension": "Hypertensie", "heart_failure": "Hartfalen", "lipids": "Lipiden",
                   "frailty": "Kwetsbaar"}


def condition_titles(ids: str, short: bool = False) -> str:
    from ..rules.programmes import load_programmes
    icpc = load_programmes().codes.icpc
    names = [(CONDITION_SHORT.get(i) if short else None) or (icpc[i].title if i in icpc else i)
             for i in str(ids or "").split(",") if i]
    return ", ".join(names) or "–"


def intro_text(data: VeelgebruikersData) -> str:
    p = data.patients
    n, pers = len(p), int(p["persistent"].sum()) if len(p) else 0
    from ..mirror.frequent import FREQUENT_SHARE
    share = f"{round(FREQUENT_SHARE * 100)}%"
    return (f"Veelgebruikers zijn de {share} patiënten met de meeste contacten binnen hun leeftijds- en "
            f"geslachtsgroep van de hele zorggroep, over de twaalf maanden **{_period(data)}**; dezelfde "
            f"definitie als in de praktijkspiegel. Uw praktijk heeft er **{n}**, van wie **{pers}** persisterend "
            f"(drie jaar op rij veelgebruiker). Ze hadden samen {nl_number(p['contacts'].sum() if n else 0)} "
            f"contacten.\n\nDit rapport hoort bij de regioprestatie Veelgebruikers: het plan van "
            f"{data.params.plan_size} patiënten (met de 0-meting en elk kwartaal sinds de keuze), de kandidaten "
            f"voor het plan en de lijst van alle veelgebruikers. De lijst staat ook als CSV naast dit rapport "
            f"(`veelgebruikers.csv`), om in Excel te openen.")


def placeholder_text(data: VeelgebruikersData) -> str:
    """Says, in so many words, that the profiles are not the arrangement's own."""
    if all(p.verified for p in data.params.profiles) and data.params.verified:
        return ""
    names = "; ".join(f"*{escape.markdown(p.title)}*" for p in data.params.profiles)
    return (f"**Let op: voorlopige profielen.** De zes profielen van de regioprestatie zijn niet in een openbare bron "
            f"gevonden. "
            f"Dit rapport gebruikt voorlopige profielen ({names}), vastgelegd in `parameters/veelgebruikers.yaml` "
            f"en gemarkeerd als niet geverifieerd. Een patiënt kan bij meer profielen passen of bij geen. Gebruik ze "
            f"als hulp bij het gesprek, niet als oordeel.")


def plan_text(data: VeelgebruikersData) -> str:
    plan = data.plan_patients
    size = data.params.plan_size
    if plan.empty:
        return (f"Uw praktijk heeft (nog) geen plan geleverd (`veelgebruikers_plan.csv` bij de HIS-extractie). Kies "
                f"{size} patiënten, bijvoorbeeld uit de kandidaten hieronder; vanaf de volgende extractie volgt dit "
                f"rapport hen per kwartaal.")
    active = len(data.active_plan)
    first = _date(plan["selected_on"].min())
    open_slots = max(size - active, 0)
    slots = (f" U kunt er nog {open_slots} kiezen." if open_slots else "")
    return (f"In het plan: **{active} van de {size}** patiënten (gekozen vanaf {first}).{slots} De 0-meting is het "
            f"aantal contacten in de twaalf maanden vóór de dag van de keuze; daarna telt elk kwartaal (het eerste "
            f"vanaf de dag van de keuze). *Per jaar* rekent de contacten sinds de keuze om naar twaalf maanden, om ze "
            f"met de 0-meting te vergelijken.\n\nEen daling is niet vanzelf het effect van het plan: veelgebruikers "
            f"gaan ook zonder plan vaak minder gebruiken (ongeveer 70% is het jaar erna geen veelgebruiker meer). "
            f"Kijk daarom vooral naar de persisterende veelgebruikers en naar het verloop per kwartaal. "
            f"*Nu veelgebruiker*: ook in de twaalf maanden {_period(data)} veelgebruiker.")


def change_text(before, after) -> str:
    """The change from the 0-meting to the rate since selection, as a signed percentage."""
    if before is None or after is None or pd.isna(before) or pd.isna(after) or before == 0:
        return "–"
    pct = round(100 * (after - before) / before)
    return f"+{pct}%" if pct > 0 else ("0%" if pct == 0 else f"−{abs(pct)}%")


#: between the numbers of a compact cell (``6 · 10 · 6 · 6``): narrow no-break spaces, so a
#: cell never wraps inside
SEP = "\u202f·\u202f"


def _kinds_cell(r) -> str:
    return SEP.join(nl_number(getattr(r, k)) for k in KIND_COLUMNS)


def _day(d) -> str:
    """A date for a table cell that never breaks inside (non-breaking hyphens)."""
    return _date(d).replace("-", "\u2011")


def plan_baseline_table(data: VeelgebruikersData) -> pd.DataFrame:
    """Per plan patient: who, since when, the practice's profile, the 0-meting, the contacts
    since selection, their rate per year and the change against the 0-meting (the 0-meting
    by kind and every quarter: :func:`plan_quarter_table`)."""
    rows = []
    after = data.plan[data.plan["period"] != BASELINE]
    ended = data.plan_patients["ended_on"].notna().any()
    frequent = set(data.patients["patient_id"])
    for r in data.plan_patients.itertuples():
        mine = after[after["patient_id"] == r.patient_id]
        days = int(mine["days"].sum()) if len(mine) else 0
        since = int(mine["contacts"].sum()) if len(mine) else 0
        per_year = since * 365.25 / days if days >= 28 else np.nan
        row = {"Patiënt": r.patient_id, "Geb.jaar": _int(r.birth_year),
               "M/V": str(r.sex or "–").lower(), "In plan sinds": _day(r.selected_on)}
        if ended:
            row["Uit plan"] = _day(r.ended_on)
        row.update({"Profiel (praktijk)": profile_titles(data, r.profile), "0-meting": nl_number(r.contacts),
                    "Sinds keuze": nl_number(since) if days else "–",
                    "Per jaar": nl_number(per_year, 1) if pd.notna(per_year) else "–",
                    "Verschil": change_text(r.contacts, per_year),
                    "Nu veelgebruiker": "ja" if r.patient_id in frequent else "nee"})
        rows.append(row)
    return pd.DataFrame(rows)


PLAN_RIGHT = ("Geb.jaar", "0-meting", "Sinds keuze", "Per jaar", "Verschil")


def plan_quarter_table(data: VeelgebruikersData) -> pd.DataFrame:
    """Contacts per plan patient and period (0-meting, then each quarter): the total with the
    kinds in brackets; * marks a quarter not covered in full."""
    p = data.plan
    if p.empty:
        return pd.DataFrame()
    periods = [BASELINE] + sorted(x for x in p["period"].unique() if x != BASELINE)
    rows = []
    for pid, grp in p.groupby("patient_id", sort=False):
        row = {"Patiëntnummer": pid}
        by = grp.set_index("period")
        for per in periods:
            if per in by.index:
                r = by.loc[per]
                partial = "" if per == BASELINE or r["days"] >= 89 else " *"
                row[per] = f"{nl_number(r['contacts'])} ({' · '.join(nl_number(r[k]) for k in KIND_COLUMNS)}){partial}"
            else:
                row[per] = "–"
        rows.append(row)
    return pd.DataFrame(rows)


def plan_quarters_caption(data: VeelgebruikersData) -> str:
    if data.plan.empty:
        return ""
    return ("Contacten per periode: het totaal, met tussen haakjes consult · telefonisch · visite · e-consult. "
            "Een kwartaal met * is niet volledig (het kwartaal van de keuze telt vanaf die dag).")


def plan_quarter_right(data: VeelgebruikersData) -> tuple[str, ...]:
    return tuple(c for c in plan_quarter_table(data).columns if c != "Patiëntnummer")


def candidates_text(data: VeelgebruikersData) -> str:
    n = int(data.patients["candidate_rank"].notna().sum()) if len(data.patients) else 0
    shown = min(n, data.params.candidates_shown)
    return (f"{n} veelgebruikers komen in aanmerking; hieronder de eerste {shown}. Volgorde: {CANDIDATE_ORDER_NL}. "
            f"*Drempel*: het kleinste aantal contacten waarmee iemand van die leeftijd en dat geslacht in de "
            f"zorggroep veelgebruiker is. *M/V*: man of vrouw.")


def candidates_table(data: VeelgebruikersData, limit: int | None = None) -> pd.DataFrame:
    """The first candidates for the plan (:data:`CANDIDATE_ORDER_NL`) and why they are listed."""
    limit = limit or data.params.candidates_shown
    c = data.patients[data.patients["candidate_rank"].notna()].sort_values("candidate_rank").head(limit)
    rows = []
    for r in c.itertuples():
        rows.append({"Nr": str(int(r.candidate_rank)), "Patiënt": r.patient_id, "Geb.jaar": _int(r.birth_year),
                     "M/V": str(r.sex).lower(), "Contacten": nl_number(r.contacts), "Drempel": nl_number(r.threshold),
                     "Persisterend": "ja" if r.persistent else "–",
                     "Profiel": profile_titles(data, r.profiles, short=True),
                     "Chronisch": condition_titles(r.conditions, short=True)})
    return pd.DataFrame(rows)


CANDIDATES_RIGHT = ("Nr", "Geb.jaar", "Contacten", "Drempel")


def patients_table(data: VeelgebruikersData) -> pd.DataFrame:
    """Every frequent attender: the contacts per quarter and per kind, conditions, profiles.
    Plan patients first, then in candidate order, then those no longer registered."""
    p = data.patients.copy()
    if p.empty:
        return pd.DataFrame()
    q = data.quarters
    wide = q.pivot_table(index="patient_id", columns="quarter", values="contacts", aggfunc="sum", fill_value=0)
    p["order"] = np.where(p["in_plan"], -1, p["candidate_rank"].fillna(10**9).astype("int64"))
    p = p.sort_values(["order", "contacts", "patient_id"], ascending=[True, False, True])
    rows = []
    for r in p.itertuples():
        per_q = SEP.join(nl_number(wide.loc[r.patient_id, lab]) if r.patient_id in wide.index and lab in wide.columns
                           else "0" for lab in data.quarter_labels)
        status = ["in plan"] if r.in_plan else []
        status += ["persisterend"] if r.persistent else []
        status += [] if r.registered else ["uitgeschreven"]
        rows.append({"Patiënt": r.patient_id, "Geb.jaar": _int(r.birth_year), "M/V": str(r.sex).lower(),
                     "Contacten": nl_number(r.contacts), "Per kwartaal": per_q, "Per soort": _kinds_cell(r),
                     "Chronisch": condition_titles(r.conditions, short=True),
                     "Profiel": profile_titles(data, r.profiles, short=True), "Status": ", ".join(status)})
    return pd.DataFrame(rows)


PATIENTS_RIGHT = ("Geb.jaar", "Contacten", "Per kwartaal", "Per soort")


CHRONIC_NOTE = "DM2 diabetes mellitus type 2, HVZ hart- en vaatziekten, Kwetsbaar kwetsbaarheid (A05)"


def patients_caption(data: VeelgebruikersData) -> str:
    labels = " · ".join(data.quarter_labels)
    return (f"*Per kwartaal*: {labels}. *Per soort*: consult (ook lang) · telefonisch · visite (ook lang) · "
            f"e-consult. *Chronisch*: {CHRONIC_NOTE}. *Persisterend*: drie jaar op rij veelgebruiker; *uitgeschreven*: niet meer ingeschreven "
            f"of overleden op de laatste dag van de periode. Eerst de patiënten in het plan, dan de kandidaten in "
            f"volgorde, dan wie uitgeschreven is.")


def profiles_table(data: VeelgebruikersData) -> pd.DataFrame:
    """Per placeholder profile: what it means and how many frequent attenders fit."""
    p = data.patients
    rows = []
    for prof in data.params.profiles:
        n = int(p["profiles"].fillna("").str.split(",").map(lambda ids, i=prof.id: i in ids).sum()) if len(p) else 0
        rows.append({"Profiel": prof.title, "Omschrijving": prof.description, "Veelgebruikers": nl_number(n),
                     "Geverifieerd": "ja" if prof.verified else "nee (voorlopig)"})
    none = int((p["profiles"].fillna("") == "").sum()) if len(p) else 0
    rows.append({"Profiel": "Geen profiel", "Omschrijving": "Past bij geen van de profielen.",
                 "Veelgebruikers": nl_number(none), "Geverifieerd": ""})
    return pd.DataFrame(rows)


def baseline_table(data: VeelgebruikersData) -> pd.DataFrame:
    """The practice's frequent attenders now and in the regioprestatie's baseline year."""
    rows = []
    for period, label in ((BASELINE, f"0-meting (12 maanden t/m {data.params.baseline_quarter})"),
                          (CURRENT, f"Nu (12 maanden t/m {data.quarter})")):
        s = data.summary[data.summary["period"] == period]
        if s.empty:
            rows.append({"": label, "Veelgebruikers": "–", "Persisterend": "–", "Hun contacten": "–"})
            continue
        r = s.iloc[0]
        rows.append({"": label, "Veelgebruikers": nl_number(r["frequent_attenders"]),
                     "Persisterend": nl_number(r["persistent"]), "Hun contacten": nl_number(r["contacts"])})
    return pd.DataFrame(rows)


def method_text(data: VeelgebruikersData) -> str:
    from ..mirror.frequent import FREQUENT_SHARE
    return f"""
- **Veelgebruiker**: een patiënt met minstens één contact die bij de {round(FREQUENT_SHARE * 100)}% met de meeste contacten hoort binnen zijn leeftijdsgroep en geslacht in de hele zorggroep, over de twaalf maanden {_period(data)} (alle soorten contact, alle zorgverleners, alleen op dagen dat de patiënt ingeschreven was en leefde). Gelijke aantallen op de grens tellen allemaal mee. Dezelfde regel en berekening als de praktijkspiegel. *Drempel*: het kleinste aantal contacten waarmee iemand in zijn groep veelgebruiker is.
- **Persisterend**: ook veelgebruiker in de twaalf maanden tot 4 en tot 8 kwartalen eerder (drie jaar op rij, in deze praktijk).
- **Soorten contact**: consult (kort en lang), telefonisch, visite (kort en lang), e-consult, elk apart geteld; ook de contacten bij de POH-S en POH-GGZ.
- **Chronische aandoeningen**: een episode op de probleemlijst die op een dag van de periode actief was (ICPC-groepen van `parameters/codes.yaml`).
- **Profielen**: de regels in `parameters/veelgebruikers.yaml` (ICPC-hoofdstukken en -codes van contacten en episodes, chronische aandoeningen, leeftijd, contactpatroon). Voorlopig en niet geverifieerd.
- **Kandidaten**: {CANDIDATE_ORDER_NL}.
- **0-meting en monitor**: per patiënt in het plan de contacten in de twaalf maanden vóór de dag van de keuze, daarna per kwartaal; een kwartaal met * is niet volledig (het eerste, vanaf de dag van de keuze, of tot de dag van uitstroom).
- **Privacy**: alleen patiëntnummer, geboortejaar en geslacht; dit rapport en de CSV horen alleen bij de eigen praktijk.
"""




def _int(x) -> str:
    return "–" if x is None or pd.isna(x) else str(int(x))


# ------------------------------------------------------------------ a figure
def plan_chart(data: VeelgebruikersData):
    """Per plan patient: contacts in the 0-meting against the rate per year since selection
    (house style; ``helpers.plots.use_house_style`` first). None when there is no plan."""
    table = plan_baseline_table(data)
    if table.empty:
        return None
    import matplotlib.pyplot as plt

    from ..plots import MUTED, PRACTICE
    before = data.plan_patients["contacts"].astype(float).to_numpy()
    after = pd.to_numeric(table["Per jaar"].str.replace(".", "", regex=False).str.replace(",", ".", regex=False),
                          errors="coerce").to_numpy()
    labels = [escape.mpl_text(x) for x in table["Patiënt"]]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(8.0, 3.0))
    ax.bar(x - 0.2, before, width=0.4, color=MUTED, label="0-meting (12 maanden vóór de keuze)")
    ax.bar(x + 0.2, np.nan_to_num(after), width=0.4, color=PRACTICE, label="Sinds de keuze, per jaar")
    ax.set_xticks(x, labels)
    ax.set_xlabel("Patiënt in het plan")
    ax.set_ylabel("Contacten")
    ax.set_title("Contacten vóór en na de keuze voor het plan", loc="left")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, frameon=False)
    return fig


# ------------------------------------------------------------------ key figures and the CSV
def key_figures(data: VeelgebruikersData) -> dict:
    """Headline counts for the portal (stored suppressed)."""
    return {"frequent_attenders": int(len(data.patients)), "plan_patients": int(len(data.active_plan))}


def csv_table(data: VeelgebruikersData) -> pd.DataFrame:
    """Every frequent attender with the contacts per quarter and kind: the CSV beside the report."""
    p = data.patients.sort_values(["in_plan", "candidate_rank", "patient_id"], ascending=[False, True, True],
                                  na_position="last")
    out = pd.DataFrame({"patientnummer": p["patient_id"], "geboortejaar": p["birth_year"].astype("Int64"),
                        "geslacht": p["sex"].map(SEX_NL).fillna(p["sex"]), "leeftijdsgroep": p["age_band"],
                        "contacten_12_maanden": p["contacts"], "drempel": p["threshold"]})
    # one lookup per column (a reindex), not per cell: a quarter without contacts counts 0
    q = data.quarters.drop_duplicates(["patient_id", "quarter"]).set_index(["patient_id", "quarter"])
    for lab in data.quarter_labels:
        rows = pd.MultiIndex.from_arrays([p["patient_id"], [lab] * len(p)])
        for k in ("contacts", *KIND_COLUMNS):
            name = f"{lab}_{'totaal' if k == 'contacts' else k}"
            out[name] = q[k].reindex(rows).fillna(0).astype(int).to_numpy()
    for k in KIND_COLUMNS:
        out[f"{k}_12_maanden"] = p[k].to_numpy()
    out["poh_ggz_12_maanden"], out["poh_s_12_maanden"] = p["poh_ggz"].to_numpy(), p["poh_s"].to_numpy()
    out["chronische_aandoeningen"] = p["conditions"].map(condition_titles).to_numpy()
    out["profielen"] = p["profiles"].to_numpy()
    out["persisterend"] = np.where(p["persistent"], "ja", "nee")
    out["ingeschreven"] = np.where(p["registered"], "ja", "nee")
    out["in_plan"] = np.where(p["in_plan"], "ja", "nee")
    out["kandidaat_nr"] = p["candidate_rank"].astype("Int64").to_numpy()
    return out.reset_index(drop=True)


def plan_csv_table(data: VeelgebruikersData) -> pd.DataFrame:
    """The plan patients' 0-meting and quarters, one row per patient and period."""
    p = data.plan
    cols = ["patientnummer", "in_plan_sinds", "uit_plan", "profiel", "periode", "van", "tot_en_met", "dagen",
            "contacten", *KIND_COLUMNS]
    if p.empty:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame({"patientnummer": p["patient_id"], "in_plan_sinds": p["selected_on"].map(_date),
                         "uit_plan": p["ended_on"].map(lambda d: "" if pd.isna(d) else _date(d)),
                         "profiel": p["profile"], "periode": p["period"], "van": p["period_start"].map(_date),
                         "tot_en_met": p["period_end"].map(_date), "dagen": p["days"], "contacten": p["contacts"],
                         **{k: p[k] for k in KIND_COLUMNS}})[cols]


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Dutch spreadsheet dialect (';', UTF-8 with BOM), every cell escaped for Excel, atomically
    (``worklists.write_table_csv``, as every report's CSV)."""
    from .worklists import write_table_csv
    write_table_csv(df, Path(path))
    return Path(path)


def write_csvs(cube: Path, practice_agb: str, outdir: Path) -> list[Path]:
    """``veelgebruikers.csv`` (every frequent attender) and ``veelgebruikers_monitor.csv`` (the plan's
    0-meting and quarters) in the practice's output folder."""
    data = load(cube, practice_agb)
    outdir = Path(outdir)
    return [_write_csv(csv_table(data), outdir / "veelgebruikers.csv"),
            _write_csv(plan_csv_table(data), outdir / "veelgebruikers_monitor.csv")]
