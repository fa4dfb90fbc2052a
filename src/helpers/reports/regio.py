"""The regional report (regio): every practice of a region side by side, and one report for
the whole care group (zorggroep).

Sections: Overzicht (list size, enrolled per programme, inclusion against the agreed maximum,
registration findings, open controls, indicators meeting their target, the change since the
previous quarter, with region and care-group totals), Ketenzorgindicatoren (each indicator
per practice over the last four quarters, with the region's and the care group's median and
P10-P90, and a practice-by-indicator overview) and Inclusie (enrolled on day 1 against the
agreed maximum per programme, the patients above it, and the inclusion over the quarters of
the contract year).

A shared-scope report: it reads only the cube's shared tables (``helpers.cube.SharedCube``),
written by :func:`prepare` through the small-number rule, with complementary suppression
within each region (``SharedTable.margins``) because the region's totals are published. Peer
figures are computed over the publishable rates of at least
``suppression.MIN_PRACTICES_FOR_PEERS`` practices (``suppression.PEER_RULE``).

>>> inclusion_cap(2_208, 7.5)
165
>>> nl_pct_or_dash(None)
'–'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import escape
from ..cube.findings import CONTROL_KINDS, REGISTRATION_KINDS, prepare_state
from ..cube.indicators import compute_indicators
from ..cube.population import list_size_sql
from ..cube.shared import FINDINGS_RESOLUTION_TABLE, SharedCube
from ..errors import ParameterError
from ..quarter import Quarter
from ..rules.indicators import load_indicators
from ..rules.programmes import load_programmes
from ..suppression import MIN_PRACTICES_FOR_PEERS, PEER_RULE, RULE_TEXT
from ..tables import nl_number, nl_pct
from .registry import REGIO_PREPARE, VEELGEBRUIKERS_PREPARE

#: the quarters of indicator history the report shows (the current one included)
HISTORY_QUARTERS = 4
#: the name the care group's own report (scope zorggroep) uses for "all regions"
ZORGGROEP = "zorggroep"

#: the shared tables, declared once in the registry (``REGIO_PREPARE``)
(PRACTICES_TABLE, PROGRAMMES_TABLE, INDICATORS_TABLE, TOTALS_TABLE, MONEY_PRACTICE_TABLE, MONEY_INSURER_TABLE,
 MONEY_TOTALS_TABLE, MONEY_ROUNDS_TABLE, REGIOPRESTATIE_TABLE) = (t.name for t in REGIO_PREPARE.shared)
PRACTICE_COUNTS, PROGRAMME_COUNTS, _, TOTAL_COUNTS, MONEY_COUNTS = (t.counts for t in REGIO_PREPARE.shared[:5])
#: the regioprestatie's frequent attenders, prepared by the veelgebruikers report's step
FREQUENT_TABLE, PLAN_TABLE = (t.name for t in VEELGEBRUIKERS_PREPARE.shared)


def inclusion_cap(list_size: int, max_inclusion_pct: float) -> int:
    """The most patients a practice may enrol in a programme: the agreed maximum share of its
    list, rounded down (a patient is enrolled or not)."""
    if list_size is None or max_inclusion_pct is None or pd.isna(list_size) or pd.isna(max_inclusion_pct):
        return 0
    return int(math.floor(float(list_size) * float(max_inclusion_pct) / 100.0 + 1e-9))


def nl_pct_or_dash(x, decimals: int = 1) -> str:
    return nl_pct(x, decimals) if x is not None and pd.notna(x) else "–"


# ------------------------------------------------------------------ prepare (the cube)
def _quarter_counts(con, state, rules) -> pd.DataFrame:
    """Per practice and programme: list size and enrolled on the quarter's first day."""
    programmes = ", ".join(f"('{p}')" for p in rules.programme_ids)
    return con.execute(f"""
        SELECT pr.practice_agb, g.programme, coalesce(ls.list_size, 0) AS list_size, coalesce(en.enrolled, 0) AS enrolled
        FROM practices pr CROSS JOIN (VALUES {programmes}) g(programme)
        LEFT JOIN ({list_size_sql(state)}) ls USING (practice_agb)
        LEFT JOIN (SELECT e.practice_agb, e.programme, count(*) AS enrolled
                   FROM {state.enr} e JOIN {state.pat} p USING (practice_agb, patient_id) WHERE p.in_population
                   GROUP BY 1, 2) en ON en.practice_agb = pr.practice_agb AND en.programme = g.programme
    """).df()


def prepare(con, quarter, tables: dict) -> dict[str, pd.DataFrame]:
    """The region tables of every practice (shared, written through the small-number rule):
    practices, programmes (with the inclusion cap), indicators over the last four quarters,
    and the totals per region and for the care group."""
    quarter = Quarter.parse(quarter)
    rules = load_programmes()
    indicators = load_indicators(rules)
    practices = tables["practices"][["practice_agb", "name", "region", "list_size", "enrolled_patients"]].copy()
    practices["region"] = practices["region"].fillna("").astype(str)
    summary = tables["summary"].copy()
    summary["registration_findings"] = summary[list(REGISTRATION_KINDS)].sum(axis=1)
    summary["open_controls"] = summary[list(CONTROL_KINDS)].sum(axis=1)
    summary["registration_findings_prev"] = summary[[f"{k}_prev" for k in REGISTRATION_KINDS]].sum(axis=1, min_count=1)
    summary["open_controls_prev"] = summary[[f"{k}_prev" for k in CONTROL_KINDS]].sum(axis=1, min_count=1)
    summary["cap"] = [inclusion_cap(n, m) for n, m in zip(summary["list_size"], summary["max_inclusion_pct"])]
    summary["above_cap"] = (summary["enrolled"] - summary["cap"]).clip(lower=0)

    # indicators: this quarter from the cube, the three before it computed here
    history = [tables["indicators"].assign(quarter=str(quarter))]
    q = quarter
    for k in range(1, HISTORY_QUARTERS):
        q = q.previous()
        state = prepare_state(con, q, rules, prefix=f"regio{k}_")
        history.append(compute_indicators(con, state, indicators).assign(quarter=str(q)))
    ind = pd.concat(history, ignore_index=True)
    ind = ind.merge(practices[["practice_agb", "name", "region"]], on="practice_agb")
    ind_now = ind[ind["quarter"] == str(quarter)]
    met = (ind_now.assign(met=ind_now["meets_target"].fillna(False).astype(bool),
                          scored=ind_now["meets_target"].notna())
           .groupby("practice_agb")[["met", "scored"]].sum().rename(columns={"met": "indicators_met",
                                                                              "scored": "indicators_scored"}))

    per_practice = summary.groupby("practice_agb")[["registration_findings", "registration_findings_prev",
                                                    "open_controls", "open_controls_prev"]].sum(min_count=1)
    prac = practices.merge(per_practice, on="practice_agb", how="left").merge(met, on="practice_agb", how="left")
    prac[["indicators_met", "indicators_scored"]] = prac[["indicators_met", "indicators_scored"]].fillna(0).astype("int64")
    for c in PRACTICE_COUNTS:
        prac[c] = prac[c].astype("Int64")

    order = {p: i for i, p in enumerate(rules.programme_ids)}
    prog = summary.merge(practices[["practice_agb", "name", "region"]], on="practice_agb")
    prog = prog.assign(order=prog["programme"].map(order)).sort_values(["region", "name", "order"])
    prog = prog[["region", "practice_agb", "name", "programme", *PROGRAMME_COUNTS, "max_inclusion_pct", "cap"]]

    totals = []
    for scope, frame in [("regio", prog), (ZORGGROEP, prog.assign(region=ZORGGROEP))]:
        g = frame.groupby(["region", "programme"], as_index=False).agg(
            practices=("practice_agb", "nunique"), list_size=("list_size", "sum"), enrolled=("enrolled", "sum"),
            enrolled_prev=("enrolled_prev", lambda s: s.sum(min_count=1)), above_cap=("above_cap", "sum"),
            registration_findings=("registration_findings", "sum"), open_controls=("open_controls", "sum"))
        totals.append(g.assign(scope=scope))
    totals = pd.concat(totals, ignore_index=True)
    totals = totals[["scope", "region", "programme", "practices", *TOTAL_COUNTS]]
    for frame, cols in ((prog, PROGRAMME_COUNTS), (totals, TOTAL_COUNTS)):
        for c in cols:
            frame[c] = frame[c].astype("Int64")

    ind["remainder"] = ind["denominator"] - ind["numerator"]   # withheld with them when small
    ind = ind[["region", "practice_agb", "name", "indicator_id", "quarter", "numerator", "denominator", "remainder"]]
    return {PRACTICES_TABLE: prac[["region", "practice_agb", "name", *PRACTICE_COUNTS, "indicators_met",
                                   "indicators_scored"]].reset_index(drop=True),
            PROGRAMMES_TABLE: prog.reset_index(drop=True),
            INDICATORS_TABLE: ind.reset_index(drop=True),
            TOTALS_TABLE: totals.reset_index(drop=True),
            **money_prepare(con, quarter, practices)}


def contract_year_quarters(quarter: Quarter) -> list[str]:
    """The quarters of the contract (calendar) year up to and including ``quarter``."""
    return [f"{quarter.year}Q{n}" for n in range(1, quarter.number + 1)]


MONEY_SUMS = dict(list_size=("list_size", "sum"), enrolled=("enrolled", "sum"), declared=("declared", "sum"),
                  awarded=("awarded", "sum"), rejected=("rejected", "sum"), over_cap=("over_cap", "sum"),
                  missed=("missed", "sum"), paid_cents=("paid_cents", "sum"), reward_cents=("reward_cents", "sum"),
                  outstanding_cents=("outstanding_cents", "sum"), exposure_cents=("exposure_cents", "sum"),
                  missed_cents=("missed_cents", "sum"), max_patients=("max_patients", "sum"))


def _euro(frame: pd.DataFrame) -> pd.DataFrame:
    """Cents columns as euro (float, exact to the cent for these sums) under the shared names."""
    out = frame.copy()
    for c in ("paid", "reward", "outstanding", "exposure", "missed"):
        out[f"{c}_eur"] = out.pop(f"{c}_cents") / 100.0
    return out


def money_prepare(con, quarter: Quarter, practices: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The chain-care money of every practice over the quarters of the contract year
    (``helpers.money`` through ``betaalspecificatie.money_tables``), aggregated for the region
    tables: per practice x programme x quarter, per region x programme x quarter x insurer
    (with its contract's cap and reward), the totals, and the payment rounds per insurer."""
    from .betaalspecificatie import money_tables
    rounds, cells = money_tables(con, contract_year_quarters(quarter))
    where = practices[["practice_agb", "name", "region"]]
    cells = cells.merge(where, on="practice_agb", how="inner")
    rounds = rounds.merge(where, on="practice_agb", how="inner")
    per_practice = cells.groupby(["region", "practice_agb", "name", "programme", "quarter"], as_index=False).agg(
        **MONEY_SUMS, rounds=("rounds", "max"))
    levels = []
    for scope, frame in [("regio", cells), (ZORGGROEP, cells.assign(region=ZORGGROEP))]:
        g = frame.groupby(["region", "programme", "quarter", "insurer"], as_index=False).agg(
            **MONEY_SUMS, reward_pct=("reward_pct", "first"), annual_tariff_eur=("annual_tariff_eur", "first"),
            practices=("practice_agb", "nunique"))
        levels.append(g.assign(scope=scope))
    per_insurer = pd.concat(levels, ignore_index=True)
    totals = per_insurer.groupby(["scope", "region", "programme", "quarter"], as_index=False).agg(**MONEY_SUMS)
    r_levels = []
    for scope, frame in [("regio", rounds), (ZORGGROEP, rounds.assign(region=ZORGGROEP))]:
        # the invoice range in number order (year, chain, sequence numbers), not text order
        frame = frame.assign(_key=[(r.invoice_year, r.chain_number, r.seq1, r.seq2) if pd.notna(r.invoice_year)
                                   else (0, 0, 0, 0) for r in frame.itertuples()])
        frame = frame.sort_values("_key", kind="stable")
        g = frame.groupby(["region", "programme", "quarter", "insurer", "paid_on"], as_index=False, dropna=False).agg(
            declared=("patients_declared", "sum"), awarded=("patients_awarded", "sum"),
            amount_cents=("amount_cents", "sum"), invoices=("invoice_number", "nunique"),
            first_invoice=("invoice_number", "first"), last_invoice=("invoice_number", "last"),
            bank_description=("bank_description", "first"))
        r_levels.append(g.assign(scope=scope))
    per_round = pd.concat(r_levels, ignore_index=True)
    per_round["amount_eur"] = per_round.pop("amount_cents") / 100.0
    per_round["paid_on"] = pd.to_datetime(per_round["paid_on"]).dt.strftime("%Y-%m-%d").fillna("")
    for frame in (per_practice, per_insurer, totals, per_round):
        for c in frame.columns:
            if c in MONEY_COUNTS or c in ("declared", "awarded"):
                frame[c] = frame[c].astype("Int64")
    return {MONEY_PRACTICE_TABLE: _euro(per_practice), MONEY_INSURER_TABLE: _euro(per_insurer),
            MONEY_TOTALS_TABLE: _euro(totals), MONEY_ROUNDS_TABLE: per_round,
            REGIOPRESTATIE_TABLE: regioprestatie_prepare(con, quarter, where)}


def regioprestatie_prepare(con, quarter: Quarter, where: pd.DataFrame) -> pd.DataFrame:
    """Per practice and quarter of the contract year: its registered patients of the insurer that
    pays the regioprestatie Veelgebruikers (VGZ) on the first day, and the regioprestatie in euro
    (``helpers.money.regioprestatie``); practices without such patients get 0."""
    from ..money import regioprestatie
    patients = con.execute("SELECT practice_agb, patient_id, insurer_uzovi, registered_from, registered_until, "
                           "deceased_on FROM patients").df()
    patients["insurer_uzovi"] = patients["insurer_uzovi"].fillna("").astype(str)
    quarters = contract_year_quarters(quarter)
    rp = regioprestatie(patients, quarters).groupby(["practice_agb", "quarter"], as_index=False).agg(
        registered=("registered", "sum"), regioprestatie_cents=("regioprestatie_cents", "sum"))
    grid = where.merge(pd.DataFrame({"quarter": quarters}), how="cross")
    out = grid.merge(rp, on=["practice_agb", "quarter"], how="left")
    out["registered"] = out["registered"].fillna(0).astype("Int64")
    out["regioprestatie_eur"] = out.pop("regioprestatie_cents").fillna(0) / 100.0
    return out[["region", "practice_agb", "name", "quarter", "registered", "regioprestatie_eur"]]


# ------------------------------------------------------------------ the report
@dataclass
class RegionData:
    quarter: Quarter
    region: str                 # a region's name, or ZORGGROEP
    practices: pd.DataFrame     # regio_practices rows of the region (suppressed)
    programmes: pd.DataFrame
    indicators: pd.DataFrame
    totals: pd.DataFrame        # the region's rows and the care group's
    all_indicators: pd.DataFrame  # every practice of the care group (for the care group's band)
    definitions: pd.DataFrame   # indicator_id, programme, title, target_pct, low_is_good, order
    money_practice: pd.DataFrame  # per practice x programme x quarter of the contract year
    money_insurer: pd.DataFrame   # the region (or care group) per programme x quarter x insurer
    money_totals: pd.DataFrame    # the region's and the care group's per programme x quarter
    money_rounds: pd.DataFrame    # the region's payment rounds per programme x quarter x insurer x date
    regioprestatie: pd.DataFrame  # per practice x quarter: registered VGZ patients and the euro
    frequent: pd.DataFrame        # per practice x quarter since the 0-meting: frequent attenders, contacts
    plan: pd.DataFrame            # the region's plan patients per period: contacts per quarter by kind
    resolution: pd.DataFrame      # per practice: last quarter's findings resolved / still open, new ones

    @property
    def is_care_group(self) -> bool:
        return self.region == ZORGGROEP

    @property
    def label(self) -> str:
        return "de hele zorggroep" if self.is_care_group else self.region


def load(source, region: str = "", quarter: str = "") -> RegionData:
    """One region's tables (``region`` empty or ``zorggroep``: the whole care group)."""
    shared = source if isinstance(source, SharedCube) else SharedCube(source)
    prac = shared.read(PRACTICES_TABLE)
    region = str(region or ZORGGROEP)
    known = sorted(prac["region"].dropna().unique())
    if region != ZORGGROEP and region not in known:
        raise ParameterError(f"region {region!r} has no practices in the quarter cube (known: {', '.join(known)})")
    mine = (lambda df: df) if region == ZORGGROEP else (lambda df: df[df["region"] == region])
    ind = shared.read(INDICATORS_TABLE)
    totals = shared.read(TOTALS_TABLE)
    totals = totals[(totals["region"] == region) | (totals["scope"] == ZORGGROEP)]
    rules = load_programmes()
    defs = pd.DataFrame([{"indicator_id": i.id, "programme": i.programme, "title": i.title,
                          "target_pct": i.target_pct, "low_is_good": i.low_is_good, "order": n}
                         for n, i in enumerate(load_indicators(rules).values())])
    q = Quarter.parse(quarter) if quarter else Quarter.parse(sorted(ind["quarter"].unique())[-1])
    level = (lambda df: df[df["region"] == region].reset_index(drop=True))
    money_totals = shared.read(MONEY_TOTALS_TABLE)
    return RegionData(quarter=q, region=region, practices=mine(prac).sort_values("name").reset_index(drop=True),
                      programmes=mine(shared.read(PROGRAMMES_TABLE)).reset_index(drop=True),
                      indicators=mine(ind).reset_index(drop=True), totals=totals.reset_index(drop=True),
                      all_indicators=ind, definitions=defs,
                      money_practice=mine(shared.read(MONEY_PRACTICE_TABLE)).reset_index(drop=True),
                      money_insurer=level(shared.read(MONEY_INSURER_TABLE)),
                      money_totals=money_totals[(money_totals["region"] == region)
                                                | (money_totals["scope"] == ZORGGROEP)].reset_index(drop=True),
                      money_rounds=level(shared.read(MONEY_ROUNDS_TABLE)),
                      regioprestatie=mine(shared.read(REGIOPRESTATIE_TABLE)).reset_index(drop=True),
                      frequent=mine(shared.read(FREQUENT_TABLE)).reset_index(drop=True),
                      plan=level(shared.read(PLAN_TABLE)),
                      resolution=mine(shared.read(FINDINGS_RESOLUTION_TABLE)).sort_values("name")
                      .reset_index(drop=True))


def heading(data: RegionData) -> str:
    title = "Zorggroep" if data.is_care_group else escape.markdown(data.region)
    return f"# Regiorapportage ketenzorg\n## {title} · {data.quarter.label_nl}"


def intro_text(data: RegionData) -> str:
    n = len(data.practices)
    return (f"Alle **{n} praktijken** van {escape.markdown(data.label)} naast elkaar: de ketenzorg op de eerste dag "
            f"van het kwartaal, de registratiebevindingen en openstaande controles uit de HIS-analyse, en de "
            f"ketenzorgindicatoren. Aantallen van 1 tot en met 9 staan er als <10; ‘x’ is een aantal dat is "
            f"weggelaten zodat een klein aantal niet uit een totaal is terug te rekenen.")


def _shown(df: pd.DataFrame, column: str) -> pd.Series:
    return df[f"{column}_shown"].fillna("–").replace("", "–")


def _delta(now: pd.Series, before: pd.Series) -> list[str]:
    out = []
    for a, b in zip(now, before):
        if pd.isna(a) or pd.isna(b):
            out.append("–")
        else:
            d = int(a) - int(b)
            out.append(f"+{nl_number(d)}" if d > 0 else ("0" if d == 0 else f"−{nl_number(-d)}"))
    return out


def overview_enrolment(data: RegionData) -> pd.DataFrame:
    """Every practice of the region on one row: list size and patients in chain care on the
    quarter's first day, in total and per programme."""
    p = data.practices
    enrolled = data.programmes.pivot_table(index="practice_agb", columns="programme", values="enrolled_shown",
                                           aggfunc="first")
    vgz = data.regioprestatie[data.regioprestatie["quarter"] == str(data.quarter)].set_index("practice_agb")
    rows = pd.DataFrame({
        "Praktijk": p["name"].astype(str), "AGB": p["practice_agb"].astype(str),
        "Ingeschreven": _shown(p, "list_size"),
        "VGZ": p["practice_agb"].map(vgz["registered_shown"]).fillna("–").to_numpy(),
        "In ketenzorg": _shown(p, "enrolled_patients"),
    })
    for prog in [x for x in load_programmes().programme_ids if x in enrolled.columns]:
        rows[prog] = p["practice_agb"].map(enrolled[prog]).fillna("–").to_numpy()
    return rows


def overview_quality(data: RegionData) -> pd.DataFrame:
    """Every practice on one row: registration findings and open controls with the change
    since last quarter (Δ), and the indicators that meet their target."""
    p = data.practices
    return pd.DataFrame({
        "Praktijk": p["name"].astype(str),
        "Registratie-bevindingen": _shown(p, "registration_findings"),
        "Δ bevindingen": _delta(p["registration_findings"], p["registration_findings_prev"]),
        "Open controles": _shown(p, "open_controls"),
        "Δ controles": _delta(p["open_controls"], p["open_controls_prev"]),
        "Indicatoren op streefwaarde": [f"{int(a)} van {int(b)}" for a, b in
                                        zip(p["indicators_met"], p["indicators_scored"])],
    })


def resolution_table(data: RegionData) -> pd.DataFrame:
    """Per practice: the previous quarter's findings (registration findings and open controls),
    how many of them are resolved and still open, the resolved share (resolved / (resolved +
    still open)), and the new ones; findings of patients who left the practice since
    (``departed``: deregistered or deceased) are in none of them, so they never raise the
    share. A practice whose data has no previous quarter says so. Counts as the small-number rule shows
    them (``findings_resolution``, a shared table)."""
    r = data.resolution
    share = [nl_pct_or_dash(x) if prev else "geen vorig kwartaal"
             for x, prev in zip(r["resolved_pct"], r["previous_quarter"].astype(bool))]
    dash = (lambda col: [v if prev else "–" for v, prev in zip(_shown(r, col), r["previous_quarter"].astype(bool))])
    return pd.DataFrame({
        "Praktijk": r["name"].astype(str),
        "Open vorig kwartaal": dash("previous"), "Opgelost": dash("resolved"), "Nog open": dash("still_open"),
        "Opgelost (%)": share, "Nieuw": _shown(r, "new"),
        "Vertrokken": dash("departed") if "departed" in r else ["–"] * len(r),
    })


def totals_table(data: RegionData) -> pd.DataFrame:
    """Per programme: the region's and the care group's totals."""
    order = {p: i for i, p in enumerate(load_programmes().programme_ids)}
    t = data.totals.assign(o=data.totals["programme"].map(order)).sort_values(["o", "scope"])
    label = {ZORGGROEP: "Zorggroep"}
    return pd.DataFrame({
        "Keten": t["programme"].astype(str),
        "Niveau": [label.get(r, r) for r in t["region"].astype(str)],
        "Praktijken": t["practices"].map(nl_number), "Ingeschreven": _shown(t, "list_size"),
        "In ketenzorg": _shown(t, "enrolled"), "Vorig kwartaal": _shown(t, "enrolled_prev"),
        "Inclusie": [nl_pct_or_dash(x) for x in t["inclusion_pct"]],
        "Boven plafond": _shown(t, "above_cap"),
        "Bevindingen": _shown(t, "registration_findings"), "Open controles": _shown(t, "open_controls"),
    }).drop_duplicates(subset=["Keten", "Niveau"]).reset_index(drop=True)


def inclusion_table(data: RegionData, programme: str) -> pd.DataFrame:
    """One programme: per practice enrolled on day 1 against the agreed maximum."""
    g = data.programmes[data.programmes["programme"] == programme].sort_values("name")
    return pd.DataFrame({
        "Praktijk": g["name"].astype(str), "Ingeschreven": _shown(g, "list_size"),
        "In ketenzorg (dag 1)": _shown(g, "enrolled"), "Vorig kwartaal": _shown(g, "enrolled_prev"),
        "Inclusie": [nl_pct_or_dash(x) for x in g["inclusion_pct"]],
        "Afgesproken maximum": [nl_pct_or_dash(x) for x in g["max_inclusion_pct"]],
        "Maximaal patiënten": [nl_number(c) for c in g["cap"]],
        "Boven plafond": _shown(g, "above_cap"),
    }).reset_index(drop=True)


def _eur(x) -> str:
    """Euro for a shared table's amount (``betaalspecificatie.nl_eur``); '–' where it is withheld
    with its count."""
    from .betaalspecificatie import nl_eur
    return "–" if x is None or pd.isna(x) else nl_eur(int(round(float(x) * 100)))


def cap_table(data: RegionData, programme: str) -> pd.DataFrame:
    """One programme this quarter, per insurer: the patients awarded against the contract's
    maximum (a share of the insurer's patients), those above it and the euro at stake in the
    nacalculatie (patients above the cap x quarterly tariff)."""
    m = data.money_insurer
    m = m[(m["programme"] == programme) & (m["quarter"] == str(data.quarter))].sort_values("insurer")
    return pd.DataFrame({
        "Verzekeraar": m["insurer"].astype(str), "Praktijken": m["practices"].map(nl_number),
        "Verzekerden": _shown(m, "list_size"), "Toegekend": _shown(m, "awarded"),
        "Maximaal (plafond)": [nl_number(x) if pd.notna(x) else "–" for x in m["max_patients"]],
        "Boven plafond": _shown(m, "over_cap"), "Te verrekenen (nacalculatie)": m["exposure_eur"].map(_eur),
    }).reset_index(drop=True)


def cap_practices(data: RegionData) -> pd.DataFrame:
    """This quarter, per practice and programme with patients above an insurer's cap: how many
    and the euro at stake."""
    m = data.money_practice[data.money_practice["quarter"] == str(data.quarter)]
    m = m[m["over_cap"].fillna(1) > 0].sort_values(["name", "programme"])
    return pd.DataFrame({"Praktijk": m["name"].astype(str), "Keten": m["programme"].astype(str),
                         "Boven plafond": _shown(m, "over_cap"),
                         "Te verrekenen (nacalculatie)": m["exposure_eur"].map(_eur)}).reset_index(drop=True)


def cap_trend(data: RegionData) -> pd.DataFrame:
    """The quarters of the contract year: per programme the patients above the cap and the
    euro at stake for the region (the nacalculatie adds them up over the year)."""
    t = data.money_totals[data.money_totals["region"] == data.region]
    quarters = sorted(t["quarter"].unique())
    rows = []
    for programme in programmes(data):
        g = t[t["programme"] == programme].set_index("quarter")
        rows.append({"Keten": programme, **{q: (f"{g.loc[q, 'over_cap_shown']} · {_eur(g.loc[q, 'exposure_eur'])}"
                                                if q in g.index else "–") for q in quarters}})
    return pd.DataFrame(rows)


def payments_overview(data: RegionData) -> pd.DataFrame:
    """Per programme and quarter of the contract year (the region): enrolled on day 1,
    declared, awarded, not (yet) awarded, paid, of which result reward, outstanding, missed."""
    t = data.money_totals[data.money_totals["region"] == data.region]
    order = {p: i for i, p in enumerate(load_programmes().programme_ids)}
    t = t.assign(o=t["programme"].map(order)).sort_values(["o", "quarter"])
    return pd.DataFrame({
        "Keten": t["programme"].astype(str), "Kwartaal": t["quarter"].astype(str),
        "In ketenzorg volgens KIS (dag 1)": _shown(t, "enrolled"), "Gedeclareerd": _shown(t, "declared"),
        "Toegekend": _shown(t, "awarded"), "Niet (nog niet) toegekend": _shown(t, "rejected"),
        "Betaald": t["paid_eur"].map(_eur), "Waarvan resultaatbeloning": t["reward_eur"].map(_eur),
        "Open": t["outstanding_eur"].map(_eur), "Gemist": t["missed_eur"].map(_eur),
    }).reset_index(drop=True)


def payments_practices(data: RegionData, programme: str) -> pd.DataFrame:
    """One programme this quarter, per practice: enrolled on day 1 against declared and
    awarded, paid and money missed."""
    m = data.money_practice
    m = m[(m["programme"] == programme) & (m["quarter"] == str(data.quarter))].sort_values("name")
    return pd.DataFrame({
        "Praktijk": m["name"].astype(str), "In ketenzorg volgens KIS (dag 1)": _shown(m, "enrolled"),
        "Gedeclareerd": _shown(m, "declared"), "Toegekend": _shown(m, "awarded"),
        "Rondes": m["rounds"].map(nl_number), "Betaald": m["paid_eur"].map(_eur), "Gemist": m["missed_eur"].map(_eur),
    }).reset_index(drop=True)


def reward_by_insurer(data: RegionData) -> pd.DataFrame:
    """This quarter per programme and insurer: the contract's result-reward percentage (from
    the date it was signed) and the reward in euro."""
    m = data.money_insurer[data.money_insurer["quarter"] == str(data.quarter)]
    order = {p: i for i, p in enumerate(load_programmes().programme_ids)}
    m = m.assign(o=m["programme"].map(order)).sort_values(["o", "insurer"])
    return pd.DataFrame({
        "Keten": m["programme"].astype(str), "Verzekeraar": m["insurer"].astype(str),
        "Jaartarief": m["annual_tariff_eur"].map(_eur),
        "Resultaatbeloning": [f"{nl_number(p, 0)}%" if pd.notna(p) else "–" for p in m["reward_pct"]],
        "Beloning": m["reward_eur"].map(_eur),
    }).reset_index(drop=True)


def rounds_table(data: RegionData, programme: str) -> pd.DataFrame:
    """The payment rounds of one programme this quarter: per insurer and date the invoices
    (decoded: year, chain number, sequence numbers), the patients awarded and the amount."""
    from ..money import decode_invoice, invoice_problem
    r = data.money_rounds
    r = r[(r["programme"] == programme) & (r["quarter"] == str(data.quarter))].sort_values(["insurer", "paid_on"])

    def decoded(first, last, n):
        if invoice_problem(first):
            return f"{first} (onleesbaar)"
        a = decode_invoice(first)
        text = f"{a.year} · keten {a.chain_number} · {a.seq1}-{a.seq2}"
        if n > 1 and not invoice_problem(last):
            b = decode_invoice(last)
            text += f" t/m {b.seq1}-{b.seq2}"
        return text
    return pd.DataFrame({
        "Verzekeraar": r["insurer"].astype(str),
        "Betaald op": [f"{pd.Timestamp(d):%d-%m-%Y}".replace("-", "\u2011") if d else "nog niet" for d in r["paid_on"]],
        "Facturen": r["invoices"].map(nl_number),
        "Factuurnummers (jaar · keten · volgnrs)": [decoded(a, b, n) for a, b, n in
                                                     zip(r["first_invoice"], r["last_invoice"], r["invoices"])],
        "Bankomschrijving (eerste)": r["bank_description"].astype(str),
        "Toegekend": _shown(r, "awarded"), "Bedrag": r["amount_eur"].map(_eur),
    }).reset_index(drop=True)


def regioprestatie_table(data: RegionData) -> pd.DataFrame:
    """Per practice: its registered VGZ patients and the regioprestatie Veelgebruikers in euro
    for each quarter of the contract year, with the region's total."""
    r = data.regioprestatie
    quarters = sorted(r["quarter"].unique())
    rows = []
    for (agb, name), g in r.groupby(["practice_agb", "name"], sort=False):
        g = g.set_index("quarter")
        rows.append({"Praktijk": str(name), "VGZ-verzekerden": g.loc[quarters[-1], "registered_shown"] if quarters else "–",
                     **{q: _eur(g.loc[q, "regioprestatie_eur"]) if q in g.index else "–" for q in quarters}})
    out = pd.DataFrame(rows).sort_values("Praktijk").reset_index(drop=True) if rows else pd.DataFrame()
    if len(out):
        total = {"Praktijk": "Totaal", "VGZ-verzekerden": "", **{
            q: _eur(r.loc[r["quarter"] == q, "regioprestatie_eur"].sum())
            if r.loc[r["quarter"] == q, "regioprestatie_eur"].notna().all() else "–" for q in quarters}}
        out.loc[len(out)] = total
    return out


def _mean(x) -> str:
    return "–" if x is None or pd.isna(x) else nl_number(x, 2)


KIND_NL = (("consult", "Consulten"), ("telefonisch", "Telefonisch"), ("visite", "Visites"), ("e_consult", "E-consulten"))


def regioprestatie_summary(data: RegionData) -> pd.DataFrame:
    """The printable summary for the insurer, this quarter, per practice: registered VGZ
    patients, the regioprestatie in euro, the frequent attenders, and whether the practice has
    its plan of five."""
    rp = data.regioprestatie[data.regioprestatie["quarter"] == str(data.quarter)].set_index("practice_agb")
    fa = data.frequent[data.frequent["quarter"] == str(data.quarter)].set_index("practice_agb")
    rows = []
    for r in data.practices.itertuples():
        a = rp.loc[r.practice_agb] if r.practice_agb in rp.index else None
        f = fa.loc[r.practice_agb] if r.practice_agb in fa.index else None
        rows.append({"Praktijk": str(r.name), "AGB": str(r.practice_agb),
                     "VGZ-verzekerden": a["registered_shown"] if a is not None else "–",
                     "Regioprestatie": _eur(a["regioprestatie_eur"]) if a is not None else "–",
                     "Veelgebruikers": f["frequent_attenders_shown"] if f is not None else "–",
                     "Plan van vijf": ("ja" if bool(f["plan_complete"]) else "nee") if f is not None else "–"})
    return pd.DataFrame(rows)


def frequent_trend(data: RegionData, practice_agb: str | None = None) -> pd.DataFrame:
    """Per quarter since the 0-meting: the frequent attenders (of the rolling year ending that
    quarter) and their mean contacts in that quarter by kind; the region's rows summed when no
    practice is given (only where every practice's count is shown)."""
    f = data.frequent
    if practice_agb is not None:
        f = f[f["practice_agb"] == practice_agb]
    rows = []
    for q, g in f.groupby("quarter", sort=True):
        shown = g["frequent_attenders"].notna().all()
        n = g["frequent_attenders"].sum() if shown else None
        row = {"Kwartaal": q, "Veelgebruikers": nl_number(n) if shown else "–"}
        for c, label in KIND_NL:
            row[label] = _mean(g[c].sum() / n) if shown and n and g[c].notna().all() else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def plan_table(data: RegionData) -> pd.DataFrame:
    """The plan patients of the region together: contacts per patient per quarter by kind in the
    0-meting (the twelve months before selection) and in each quarter after it."""
    p = data.plan.assign(seq=data.plan["seq"].astype(int)).sort_values("seq")   # keys come back as text
    return pd.DataFrame({
        "Periode": ["0-meting (12 maanden vóór de keuze)" if q == 0 else
                    ("kwartaal van de keuze" if q == 1 else f"{q - 1}e kwartaal daarna") for q in p["seq"]],
        "Patiënten": _shown(p, "plan_patients"),
        **{lbl: p[f"per_quarter_{c}"].map(_mean) for c, lbl in KIND_NL},
    }).reset_index(drop=True)


def indicator_band(frame: pd.DataFrame) -> pd.DataFrame:
    """Per indicator and quarter: median, P10, P90 over the publishable rates (``PEER_RULE``),
    empty with fewer than ``MIN_PRACTICES_FOR_PEERS`` practices."""
    g = frame.dropna(subset=["pct"]).groupby(["indicator_id", "quarter"])["pct"]
    band = pd.DataFrame({"median": g.median(), "p10": g.quantile(0.10), "p90": g.quantile(0.90), "n": g.count()})
    band.loc[band["n"] < MIN_PRACTICES_FOR_PEERS, ["median", "p10", "p90"]] = np.nan
    return band.reset_index()


def _meets(pct, target, low_is_good) -> bool | None:
    if pd.isna(pct) or pd.isna(target):
        return None
    return bool(pct <= target) if low_is_good else bool(pct >= target)


def indicator_matrix(data: RegionData) -> pd.DataFrame:
    """The practice-by-indicator overview of this quarter: practices as rows, the percentage
    per indicator with ✓ where it meets the target (– where withheld or no denominator)."""
    now = data.indicators[data.indicators["quarter"] == str(data.quarter)].merge(data.definitions, on="indicator_id")
    now = now.sort_values(["order", "name"])
    cells = {}
    for r in now.itertuples():
        mark = {True: " ✓", False: "", None: ""}[_meets(r.pct, r.target_pct, r.low_is_good)]
        cells.setdefault(r.indicator_id, {})[r.name] = (nl_number(r.pct, 0) + mark) if pd.notna(r.pct) else "–"
    names = sorted(data.practices["name"].astype(str))
    out = pd.DataFrame({"Praktijk": names})
    for iid in dict.fromkeys(now["indicator_id"]):
        out[iid] = [cells[iid].get(n, "–") for n in names]
    return out


def indicator_matrix_programme(data: RegionData, programme: str) -> pd.DataFrame:
    """``indicator_matrix`` for one programme, the indicators' short titles as column heads."""
    defs = data.definitions[data.definitions["programme"] == programme]
    m = indicator_matrix(data)
    keep = [i for i in defs["indicator_id"] if i in m.columns]
    titles = dict(zip(defs["indicator_id"], defs["title"]))
    return m[["Praktijk", *keep]].rename(columns=titles)


def indicator_trend(data: RegionData, indicator_id: str) -> pd.DataFrame:
    """One indicator per practice over the last four quarters, then the region's and the care
    group's median (P10-P90)."""
    quarters = sorted(data.indicators["quarter"].unique())[-HISTORY_QUARTERS:]
    rows = data.indicators[data.indicators["indicator_id"] == indicator_id]
    table = {}
    for r in rows.itertuples():
        table.setdefault(str(r.name), {})[r.quarter] = nl_pct_or_dash(r.pct, 0)
    names = sorted(table)
    out = pd.DataFrame({"Praktijk": names, **{q: [table[n].get(q, "–") for n in names] for q in quarters}})
    bands = [("Mediaan regio (P10-P90)", indicator_band(rows)),
             ("Mediaan zorggroep (P10-P90)", indicator_band(data.all_indicators[data.all_indicators["indicator_id"] == indicator_id]))]
    if data.is_care_group:
        bands = bands[1:]
    for label, band in bands:
        b = band.set_index("quarter")
        out.loc[len(out)] = [label, *[("–" if q not in b.index or pd.isna(b.loc[q, "median"]) else
                                       f"{nl_number(b.loc[q, 'median'], 0)}% ({nl_number(b.loc[q, 'p10'], 0)}–\u2060"
                                       f"{nl_number(b.loc[q, 'p90'], 0)})") for q in quarters]]
    return out


def indicator_points(data: RegionData, indicator_id: str) -> pd.DataFrame:
    """The trend of one indicator for ``plots``: quarter, practice name, pct, and the band."""
    rows = data.indicators[data.indicators["indicator_id"] == indicator_id][["quarter", "name", "pct"]]
    return rows.sort_values(["name", "quarter"]).reset_index(drop=True)


def programmes(data: RegionData) -> list[str]:
    present = set(data.programmes["programme"])
    return [p for p in load_programmes().programme_ids if p in present]


def indicators_of(data: RegionData, programme: str) -> list[tuple[str, str]]:
    d = data.definitions[data.definitions["programme"] == programme].sort_values("order")
    return list(zip(d["indicator_id"], d["title"]))


def method_text(data: RegionData) -> str:
    return "\n".join([
        f"- **Peildatum**: de ketenzorg en de ingeschreven patiënten op de eerste dag van {data.quarter.label_nl}; "
        f"de controles en indicatoren over de twaalf maanden tot en met de laatste dag van het kwartaal.",
        "- **Plafond**: het afgesproken maximum (percentage van de ingeschreven patiënten) maal de lijst, naar "
        "beneden afgerond; patiënten daarboven zijn het deel dat bij nacalculatie ter discussie staat.",
        f"- **Kleine aantallen**: {RULE_TEXT}. Binnen een regio worden zo nodig ook een tweede aantal weggelaten "
        f"(‘x’), omdat de regiototalen zijn gepubliceerd.",
        f"- **Groepscijfers**: mediaan en P10-P90 over de praktijken van de regio of de zorggroep: {PEER_RULE}.",
        "- **Indicatoren**: de definities staan in `parameters/indicators/`; `spiegel explain <indicator>` toont "
        "de SQL.",
        "- **Geld**: tarieven, plafonds per verzekeraar, de datum van ondertekening en de regioprestatie staan in "
        "`parameters/contracts.yaml`; de regels in `helpers.money`. Een bedrag wordt weggelaten waar het aantal "
        "patiënten waarop het rust is weggelaten (bedrag gedeeld door het tarief geeft het aantal terug).",
    ])


def key_figures(data: RegionData) -> dict:
    """The portal's figures: practices (plain) and the patients enrolled (suppressed there)."""
    enrolled = data.practices["enrolled_patients"].dropna()
    return {"practices": int(len(data.practices)),
            "enrolled_patients": int(enrolled.sum()) if len(enrolled) == len(data.practices) else None}


def practice_title(name: str) -> str:
    """A practice's name as a Markdown sub-heading (escaped)."""
    return f"#### {escape.markdown(str(name))}"
