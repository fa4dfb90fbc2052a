"""The exploration notebook (verkenning): a researcher picks a quarter, a selection of practices
(some practices, a hagro, a region or the whole care group) and an indicator or praktijkspiegel
measure, and sees the funnel plot, the trend over the quarters against the care group's deciles
and the table behind them; the selection exports to a CSV for Excel.

A shared-scope report (``zorggroep``): it reads only suppressed shared tables of the cube
(``helpers.cube.SharedCube``): ``regio_indicators`` (the regional report's indicators over
four quarters) and its own two: ``verkenning_spiegel`` (every practice x measure of the
praktijkspiegel for the two NON-overlapping rolling years ``PUBLISHED_WINDOWS``, this year and
the year before, written by this report's prepare step through the small-number rule with the
same margin as the hagro packs' ``spiegel_hagro``, so the current year withholds exactly the
cells the hagro pack withholds) and ``verkenning_decielen`` (the care group's deciles per measure
for all eight rolling years, no per-practice figure). Two rolling years a quarter apart share
three quarters: their difference is one quarter's count minus the same quarter a year earlier,
a small count wherever one of the two is known to be 0 (a practice whose data start inside the
windows, a new code), so per practice only years that share no quarter are published. The
deciles are computed in the prepare step from the unsuppressed mirror with the praktijkspiegel's
peer rule (``mirror.stats.peer_band``: rates on a count that may be shown, at least
``MIN_PRACTICES_FOR_PEERS`` practices); an indicator's deciles are taken over its published
percentages (``suppression.PEER_RULE``).

A new measure: write ``parameters/mirror/<id>.yaml`` (the loader is
``helpers.mirror.measures``) and ``add_measure(data, path, warehouse)`` computes it on the
warehouse for the quarter with the mirror's own SQL and passes it through the same
small-number rule before it is shown.

In JupyterLab the notebook shows widgets (``Explorer``); in the batch (no live frontend) the
same figures and tables show as static output for the default selection: the whole care group,
the first praktijkspiegel measure, the latest quarter.

>>> measure_key("spiegel", "antibiotica"), split_key("indicator:dm2_hba1c_measured")
('spiegel:antibiotica', ('indicator', 'dm2_hba1c_measured'))
>>> deciles(pd.Series([float(x) for x in range(1, 11)]))[:3]
[1.9, 2.8, 3.7]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import escape
from ..cube.shared import SharedCube
from ..errors import ParameterError
from ..mirror import stats
from ..quarter import Quarter
from ..suppression import MIN_PRACTICES_FOR_PEERS, RULE_TEXT, is_small
from ..tables import nl_number, nl_pct, to_html

#: this report's shared table: the praktijkspiegel per practice, measure and rolling year
MIRROR_TABLE = "verkenning_spiegel"
#: the rolling years (mirror windows) published per practice: this year and the year before, which
#: share no quarter (window k ends k quarters before the cube's quarter)
PUBLISHED_WINDOWS = (0, 4)
#: this report's shared table of the care group's deciles per measure and rolling year (all eight)
DECILES_TABLE = "verkenning_decielen"
MIRROR_KEYS = ("hagro", "region", "practice_agb", "name", "measure", "quarter")
MIRROR_DERIVED = ("E", "ratio", "lo", "hi", "rate", "position")
#: the regional report's indicators (region, practice, indicator, quarter), shared
INDICATORS_TABLE = "regio_indicators"
#: selection kinds, in widget order, with their Dutch labels
KINDS = {"zorggroep": "Zorggroep", "regio": "Regio", "hagro": "Hagro", "praktijken": "Praktijken"}
#: at most this many trend panels (one per practice of the selection)
MAX_TREND_PANELS = 12
#: the CSV the batch writes beside the report (the default selection)
CSV_NAME = "verkenning.csv"
DECILE_LABELS = tuple(f"P{10 * i}" for i in range(1, 10))
DECILES_KEYS = ("measure", "quarter")
SEL = "__selectie__"   # the funnel's highlighted practices
#: the default measure (the praktijkspiegel's first funnel), else the first one
DEFAULT_MEASURE = "spiegel:contacten_totaal"


def measure_key(kind: str, ident: str) -> str:
    return f"{kind}:{ident}"


def split_key(key: str) -> tuple[str, str]:
    kind, _, ident = str(key).partition(":")
    return kind, ident


def deciles(values: pd.Series) -> list[float]:
    """P10 ... P90 of ``values`` (linear interpolation), or NaN with fewer than
    ``MIN_PRACTICES_FOR_PEERS`` values (``PEER_RULE``)."""
    v = pd.Series(values, dtype="float64").dropna()
    if len(v) < MIN_PRACTICES_FOR_PEERS:
        return [float("nan")] * 9
    return [round(float(v.quantile(i / 10)), 10) for i in range(1, 10)]


# ------------------------------------------------------------------ the prepare step
def prepare(con, quarter, tables: dict) -> dict[str, pd.DataFrame]:
    """Every practice x measure of the praktijkspiegel (``compute_mirror``) for the published
    rolling years as the shared table ``verkenning_spiegel``, and the care group's deciles of
    every rolling year as ``verkenning_decielen`` (both suppressed when written: ``cube.shared``)."""
    from ..cube.memo import pass_memo
    from ..mirror import compute_mirror
    out = pass_memo(("mirror", str(quarter)), lambda: compute_mirror(con, quarter))   # the praktijkspiegel's
    return {MIRROR_TABLE: mirror_rows(out["mirror"], tables["practices"]), DECILES_TABLE: decile_rows(out["mirror"])}


def _window_quarter(window_end) -> list[str]:
    return [str(Quarter.containing(pd.Timestamp(d).date())) for d in window_end]


def mirror_rows(mirror: pd.DataFrame, practices: pd.DataFrame) -> pd.DataFrame:
    """The mirror's rows of the ``PUBLISHED_WINDOWS`` (rolling years that share no quarter, so no
    difference of two gives a quarter's count back) with the practice's hagro, region and name, a
    quarter per rolling year, ratio and interval only where E reaches the display minimum, in the
    mirror's row order (the hagro pack's order, so complementary suppression picks the same cells)."""
    p = practices[["practice_agb", "name", "hagro", "region"]].copy()
    rows = mirror[mirror["window"].isin(PUBLISHED_WINDOWS)].merge(p, on="practice_agb", how="inner")
    shown = rows["E"] >= stats.MIN_EXPECTED
    for c in ("ratio", "lo", "hi"):
        rows[c] = rows[c].where(shown)
    rows["quarter"] = _window_quarter(rows["window_end"])
    rows["position"] = rows["position"].fillna("").astype(str)
    return rows[[*MIRROR_KEYS, "O", *MIRROR_DERIVED, "tau2"]].reset_index(drop=True)


def decile_rows(mirror: pd.DataFrame) -> pd.DataFrame:
    """The care group's P10 ... P90 of every measure and rolling year (all of the mirror's
    windows), from the unsuppressed mirror with the praktijkspiegel's peer rule
    (``stats.peer_band``: only rates on a count that may be shown, 0 or at least ``MIN_CELL``;
    NaN with fewer than ``MIN_PRACTICES_FOR_PEERS``), and how many practices they rest on. No
    practice key: nothing in it is a practice's figure.

    >>> m = pd.DataFrame({"measure": "x", "window": 0, "window_end": pd.Timestamp("2026-09-30"),
    ...                   "rate": [1., 2., 3., 4., 5., 9.], "O": [10, 20, 30, 40, 50, 3]})
    >>> decile_rows(m)[["quarter", "P10", "P50", "P90", "practices"]].values.tolist()
    [['2026Q3', 1.4, 3.0, 4.6, 5]]
    """
    # the peer rule's rows, as stats.peer_band takes them (its median, P10 and P90 are these)
    ok = mirror["rate"].notna() & ~mirror["O"].map(is_small).astype(bool)
    out = []
    for (measure, window), g in mirror[ok].groupby(["measure", "window"], sort=False):
        out.append({"measure": measure, "window": window, **dict(zip(DECILE_LABELS, deciles(g["rate"]))),
                    "practices": int(len(g))})
    frame = pd.DataFrame(out, columns=["measure", "window", *DECILE_LABELS, "practices"])
    # every measure and window, also one with no rate that passes the rule
    every = mirror[["measure", "window", "window_end"]].drop_duplicates(["measure", "window"])
    frame = every.merge(frame, on=["measure", "window"], how="left")
    frame["practices"] = frame["practices"].fillna(0).astype("int64")
    frame.insert(1, "quarter", _window_quarter(frame["window_end"]))
    return frame[[*DECILES_KEYS, *DECILE_LABELS, "practices"]].reset_index(drop=True)


# ------------------------------------------------------------------ the data
@dataclass
class ExploreData:
    quarter: str                 # the cube's quarter
    practices: pd.DataFrame      # practice_agb, name, hagro, region, label
    mirror: pd.DataFrame         # verkenning_spiegel (suppressed; the published years only)
    indicators: pd.DataFrame     # regio_indicators (suppressed) with hagro
    measures: pd.DataFrame       # key, kind, id, title, unit, unit_label, section
    #: verkenning_decielen: the care group's deciles per measure and rolling year (all eight)
    deciles: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=[*DECILES_KEYS, *DECILE_LABELS, "practices"]))
    added: list = field(default_factory=list)   # ids of measures added from a file

    def quarters(self, key: str) -> list[str]:
        kind, ident = split_key(key)
        frame = self.mirror if kind == "spiegel" else self.indicators
        col = "measure" if kind == "spiegel" else "indicator_id"
        return sorted(frame.loc[frame[col] == ident, "quarter"].astype(str).unique())

    def measure(self, key: str) -> pd.Series:
        m = self.measures[self.measures["key"] == key]
        if m.empty:
            raise ParameterError(f"verkenning: {key!r} is no indicator or measure of the cube; choose from "
                                 f"{', '.join(self.measures['key'].head(8))} ...")
        return m.iloc[0]


def _measure_choices(mirror_ids: list[str], indicator_ids: list[str]) -> pd.DataFrame:
    from ..rules.indicators import load_indicators
    from .praktijkspiegel import measures_frame
    rows = []
    mf = measures_frame().set_index("measure")
    for mid in mirror_ids:
        m = mf.loc[mid] if mid in mf.index else None
        rows.append({"key": measure_key("spiegel", mid), "kind": "spiegel", "id": mid,
                     "title": str(m["title"]) if m is not None else mid,
                     "unit": str(m["unit"]) if m is not None else "", "unit_label": str(m["unit_label"]) if m is not None else "",
                     "section": str(m["section"]) if m is not None else "", "target_pct": np.nan})
    defs = load_indicators()
    for iid in indicator_ids:
        d = defs.get(iid)
        rows.append({"key": measure_key("indicator", iid), "kind": "indicator", "id": iid,
                     "title": d.title if d else iid, "unit": "percent", "unit_label": "%",
                     "section": d.programme if d else "",
                     "target_pct": d.target_pct if d and d.target_pct is not None else np.nan})
    return pd.DataFrame(rows)


def load(source, quarter: str = "") -> ExploreData:
    """The shared tables of the quarter cube (``source``: a SharedCube or a cube folder)."""
    shared = source if isinstance(source, SharedCube) else SharedCube(source)
    mirror = shared.read(MIRROR_TABLE)
    decile_table = shared.read(DECILES_TABLE)
    indicators = shared.read(INDICATORS_TABLE)
    practices = (mirror[["practice_agb", "name", "hagro", "region"]].drop_duplicates("practice_agb")
                 .sort_values(["name", "practice_agb"]).reset_index(drop=True))
    practices["label"] = [f"{escape.single_line(r.name)} ({r.practice_agb})" for r in practices.itertuples()]
    indicators = indicators.merge(practices[["practice_agb", "hagro"]], on="practice_agb", how="left")
    mirror_ids = list(dict.fromkeys(mirror["measure"]))
    order = {i: n for n, i in enumerate(_indicator_order())}
    indicator_ids = sorted(indicators["indicator_id"].unique(), key=lambda i: (order.get(i, 1e9), i))
    cube_q = quarter or max(mirror["quarter"].astype(str))
    return ExploreData(quarter=str(cube_q), practices=practices, mirror=mirror, indicators=indicators,
                       measures=_measure_choices(mirror_ids, indicator_ids), deciles=decile_table)


def _indicator_order() -> list[str]:
    from ..rules.indicators import load_indicators
    return list(load_indicators())


# ------------------------------------------------------------------ the selection
@dataclass(frozen=True)
class Selection:
    """What the researcher looks at: a quarter, the practices (by kind) and one measure."""
    quarter: str
    kind: str                      # one of KINDS
    values: tuple[str, ...]        # region / hagro name, or practice AGBs
    measure: str                   # measure_key(...)

    def describe(self, data: ExploreData) -> str:
        m = data.measure(self.measure)
        what = {"zorggroep": "de hele zorggroep", "regio": f"regio {', '.join(self.values)}",
                "hagro": f"hagro {', '.join(self.values)}"}.get(self.kind)
        if what is None:
            names = data.practices.set_index("practice_agb").reindex(list(self.values))["name"].dropna()
            what = ", ".join(names.astype(str)) or "geen praktijk"
        kind = "indicator" if m["kind"] == "indicator" else "maat van de praktijkspiegel"
        return f"{m['title']} ({kind}), {Quarter.parse(self.quarter).label_nl}, {what}"


def default_selection(data: ExploreData) -> Selection:
    """The whole care group, the total contacts (else the first measure), the cube's quarter."""
    keys = list(data.measures["key"])
    key = DEFAULT_MEASURE if DEFAULT_MEASURE in keys else keys[0]
    return Selection(quarter=data.quarter, kind="zorggroep", values=(), measure=key)


def selected_practices(data: ExploreData, sel: Selection) -> list[str]:
    """The AGB codes of the selection, in name order."""
    p = data.practices
    if sel.kind == "zorggroep":
        keep = p
    elif sel.kind == "regio":
        keep = p[p["region"].astype(str).isin(sel.values)]
    elif sel.kind == "hagro":
        keep = p[p["hagro"].astype(str).isin(sel.values)]
    elif sel.kind == "praktijken":
        keep = p[p["practice_agb"].isin(sel.values)]
    else:
        raise ParameterError(f"verkenning: selection kind {sel.kind!r} is unknown; choose from {', '.join(KINDS)}")
    return list(keep["practice_agb"])


def _rows(data: ExploreData, key: str) -> pd.DataFrame:
    """One measure's rows, every practice and quarter, as: practice_agb, name, hagro, region,
    quarter, O, O_shown, E, ratio, lo, hi, rate, position, tau2, numerator/denominator (shown)."""
    kind, ident = split_key(key)
    if kind == "spiegel":
        r = data.mirror[data.mirror["measure"] == ident].copy()
        return r
    r = data.indicators[data.indicators["indicator_id"] == ident].copy()
    r["rate"] = r["pct"].astype("float64")
    return r


def indicator_expected(rows: pd.DataFrame) -> pd.DataFrame:
    """An indicator as O/E per practice and quarter: O the numerator, E the denominator times the
    care group's proportion over the published rows, the exact Poisson interval and the funnel
    limits' overdispersion (``tau2``) over those rows. Withheld rows stay empty."""
    out = rows.copy()
    for c in ("E", "ratio", "lo", "hi", "tau2"):
        out[c] = np.nan
    out["position"] = ""
    for q, g in out.groupby("quarter"):
        ok = g["pct"].notna() & g["numerator"].notna() & g["denominator"].notna() & (g["denominator"] > 0)
        if not ok.any():
            continue
        num = g.loc[ok, "numerator"].astype("float64")
        den = g.loc[ok, "denominator"].astype("float64")
        p = float(num.sum() / den.sum()) if den.sum() else np.nan
        if not p > 0:
            continue
        e = den * p
        out.loc[e.index, "E"] = e
        ratio, lo, hi = stats.ratio_interval(num.to_numpy(), e.to_numpy())
        out.loc[e.index, "ratio"], out.loc[e.index, "lo"], out.loc[e.index, "hi"] = ratio, lo, hi
        _, tau2 = stats.overdispersion(num.to_numpy(), e.to_numpy())
        out.loc[g.index, "tau2"] = tau2
        lo998, hi998 = stats.funnel_limits(e.to_numpy(), tau2, stats.FUNNEL_LEVELS[1])
        shown = e >= stats.MIN_EXPECTED
        out.loc[e.index, "position"] = np.select([shown & (ratio > hi998), shown & (ratio < lo998), shown],
                                                 ["boven", "onder", "binnen"], default="")
        out.loc[e.index[~shown.to_numpy()], ["ratio", "lo", "hi"]] = np.nan
    return out


def measure_rows(data: ExploreData, key: str) -> pd.DataFrame:
    """The rows of one measure with O/E for an indicator too (``indicator_expected``)."""
    rows = _rows(data, key)
    if split_key(key)[0] == "indicator":
        rows = indicator_expected(rows)
        rows["O"], rows["O_shown"] = rows["numerator"], rows["numerator_shown"]
    return rows


def funnel_frames(data: ExploreData, sel: Selection) -> tuple[pd.DataFrame, pd.DataFrame, str, str]:
    """(points, limits, own, title) for ``plots.funnel``: every practice of the care group with
    a published O/E in the quarter; the selected practices highlighted (``own``) unless the
    selection is the whole care group."""
    rows = measure_rows(data, sel.measure)
    rows = rows[rows["quarter"].astype(str) == sel.quarter]
    chosen = set(selected_practices(data, sel))
    ok = rows["ratio"].notna() & (rows["ratio"] > 0) & (rows["E"] >= stats.MIN_EXPECTED)
    pts = rows[ok]
    points = pd.DataFrame({"practice_agb": [SEL if a in chosen and sel.kind != "zorggroep" else a
                                            for a in pts["practice_agb"]],
                           "expected": pts["E"].astype("float64").to_numpy(),
                           "ratio": pts["ratio"].astype("float64").to_numpy()})
    tau = rows["tau2"].dropna()
    tau2 = float(tau.iloc[0]) if len(tau) else 0.0
    e_max = float(points["expected"].max()) if len(points) else 0.0
    # from half the smallest E shown (the funnel of a large count would be a line along the axis)
    e_min = max(stats.MIN_EXPECTED, 0.5 * float(points["expected"].min())) if len(points) else stats.MIN_EXPECTED
    grid = np.geomspace(e_min, max(e_max * 1.15, e_min * 2), 80)
    limits = {"expected": grid}
    for level, name in zip(stats.FUNNEL_LEVELS, ("95", "998")):
        lo, hi = stats.funnel_limits(grid, tau2, level)
        limits[f"lo{name}"], limits[f"hi{name}"] = np.asarray(lo), np.asarray(hi)
    m = data.measure(sel.measure)
    title = f"Trechter: {m['title']} ({sel.quarter})"
    own = SEL if sel.kind != "zorggroep" else ""
    return points, pd.DataFrame(limits), own, title


def band(data: ExploreData, key: str) -> pd.DataFrame:
    """Per quarter the care group's deciles (P10 ... P90, median = P50) and how many practices
    they rest on, NaN with fewer than ``MIN_PRACTICES_FOR_PEERS``: for a praktijkspiegel measure
    every rolling year of ``verkenning_decielen`` (eight, where the practices show two), for an
    indicator over its published percentages per quarter."""
    kind, ident = split_key(key)
    if kind == "spiegel":
        d = data.deciles[data.deciles["measure"].astype(str) == ident]
        frame = pd.DataFrame({"quarter": d["quarter"].astype(str).to_numpy()})
        for label in DECILE_LABELS:
            frame[label] = pd.to_numeric(d[label], errors="coerce").astype("float64").to_numpy()
        frame["practices"] = pd.to_numeric(d["practices"], errors="coerce").fillna(0).astype(int).to_numpy()
        return frame.sort_values("quarter").reset_index(drop=True)
    rows = _rows(data, key)
    out = []
    for q in data.quarters(key):
        values = rows.loc[rows["quarter"].astype(str) == q, "rate"].astype("float64").dropna()
        d = deciles(values)
        out.append({"quarter": q, **dict(zip(DECILE_LABELS, d)), "practices": int(len(values))})
    frame = pd.DataFrame(out, columns=["quarter", *DECILE_LABELS, "practices"])
    return frame


def trend_panels(data: ExploreData, sel: Selection) -> list[tuple[pd.DataFrame, str, str]]:
    """One panel per practice of the selection (at most ``MAX_TREND_PANELS``): its rate in the
    published years (a praktijkspiegel measure: this year and the year before, empty in the
    quarters between) up to the chosen quarter, over the care group's P10-P90 and median of every
    quarter, for ``plots.trend_grid`` (rows: window_label, rate, median, p10, p90)."""
    b = band(data, sel.measure)
    b = b[b["quarter"] <= sel.quarter]
    rows = _rows(data, sel.measure)
    m = data.measure(sel.measure)
    names = data.practices.set_index("practice_agb")["name"]
    panels = []
    for agb in selected_practices(data, sel)[:MAX_TREND_PANELS]:
        own = rows[rows["practice_agb"] == agb].set_index(rows.loc[rows["practice_agb"] == agb, "quarter"].astype(str))
        panels.append((pd.DataFrame({"window_label": list(b["quarter"]),
                                     "rate": own["rate"].astype("float64").reindex(list(b["quarter"])).to_numpy(),
                                     "median": b["P50"].to_numpy(), "p10": b["P10"].to_numpy(),
                                     "p90": b["P90"].to_numpy()}),
                       str(names.get(agb, agb)), str(m["unit_label"] or "")))
    return panels


def own_label(sel: Selection) -> str:
    """The funnel legend's name of the highlighted practices: "Deze praktijk" only where one
    practice is chosen, never for a hagro, a region, several practices or the whole care group.

    >>> own_label(Selection("2026Q3", "hagro", ("Noord",), "spiegel:x"))
    'Gekozen praktijken'
    """
    return "Deze praktijk" if sel.kind == "praktijken" and len(sel.values) == 1 else "Gekozen praktijken"


def trend_label(sel: Selection) -> str:
    """The trend legend's name of the blue dots (one panel per practice), as ``own_label``.

    >>> trend_label(Selection("2026Q3", "zorggroep", (), "spiegel:x"))
    'Praktijk van het paneel'
    """
    return "Deze praktijk" if sel.kind == "praktijken" and len(sel.values) == 1 else "Praktijk van het paneel"


def _rate_text(x, unit: str) -> str:
    if x is None or pd.isna(x):
        return "–"
    if unit == "percent":
        return nl_pct(x, 1)
    return nl_number(x, 2 if unit == "per_patient_year" else 1)


POSITION_NL = {"boven": "hoger dan verwacht", "onder": "lager dan verwacht", "binnen": "binnen toeval", "": "–"}


def selection_table(data: ExploreData, sel: Selection) -> pd.DataFrame:
    """The table behind the figures: every practice of the selection in the quarter, as the
    shared tables give it (withheld counts as ``<10`` or ``x``)."""
    rows = measure_rows(data, sel.measure)
    rows = rows[rows["quarter"].astype(str) == sel.quarter].set_index("practice_agb")
    m = data.measure(sel.measure)
    unit = m["unit"]
    out = []
    for agb in selected_practices(data, sel):
        p = data.practices.set_index("practice_agb").loc[agb]
        r = rows.loc[agb] if agb in rows.index else None
        get = (lambda c: r[c] if r is not None and c in r.index else None)  # noqa: E731
        ratio = get("ratio")
        interval = "–" if ratio is None or pd.isna(ratio) else \
            f"{_nl2(ratio)} ({_nl2(get('lo'))}\u2013\u2060{_nl2(get('hi'))})"
        row = {"Praktijk": str(p["name"]), "AGB": agb, "Hagro": _text(p["hagro"]), "Regio": _text(p["region"]),
               "Waargenomen (O)": _text(get("O_shown")), "Verwacht (E)": nl_number(get("E"), 1),
               "O/E (95%-BI)": interval, "Cijfer": _rate_text(get("rate"), unit),
               "Positie": POSITION_NL.get(_text(get("position"), ""), "–")}
        if m["kind"] == "indicator":
            row["Noemer"] = _text(get("denominator_shown"))
        out.append(row)
    return pd.DataFrame(out)


def _nl2(x) -> str:
    return "–" if x is None or pd.isna(x) else f"{float(x):.2f}".replace(".", ",")


def _text(x, empty: str = "–") -> str:
    return empty if x is None or (not isinstance(x, str) and pd.isna(x)) or str(x) == "" else str(x)


def band_table(data: ExploreData, sel: Selection) -> pd.DataFrame:
    """The care group's deciles per quarter, as shown (Dutch notation)."""
    b = band(data, sel.measure)
    b = b[b["quarter"] <= sel.quarter]
    unit = data.measure(sel.measure)["unit"]
    out = pd.DataFrame({"Kwartaal": b["quarter"]})
    for label in DECILE_LABELS:
        out["Mediaan (P50)" if label == "P50" else label] = b[label].map(lambda x: _rate_text(x, unit))
    out["Praktijken"] = b["practices"].astype(int).astype(str)
    return out.reset_index(drop=True)


TABLE_RIGHT = ("Waargenomen (O)", "Verwacht (E)", "O/E (95%-BI)", "Cijfer", "Noemer")


def export_frame(data: ExploreData, sel: Selection) -> pd.DataFrame:
    """The selection as a CSV table: every practice of the selection and quarter of the measure,
    withheld counts as text (``<10``, ``x``), figures with a decimal comma (Excel in Dutch)."""
    rows = measure_rows(data, sel.measure)
    chosen = selected_practices(data, sel)
    rows = rows[rows["practice_agb"].isin(chosen)].copy()
    m = data.measure(sel.measure)
    out = pd.DataFrame({
        "praktijk": rows["name"].astype(str), "agb": rows["practice_agb"].astype(str),
        "hagro": rows["hagro"].astype("string").fillna(""), "regio": rows["region"].astype("string").fillna(""),
        "kwartaal": rows["quarter"].astype(str), "maat": m["id"], "titel": m["title"],
        "waargenomen": [str(int(o)) if pd.notna(o) else ("" if pd.isna(t) else str(t))
                        for o, t in zip(rows["O"], rows["O_shown"])],
        "noemer": ([str(int(o)) if pd.notna(o) else ("" if pd.isna(t) else str(t))
                    for o, t in zip(rows["denominator"], rows["denominator_shown"])]
                   if "denominator_shown" in rows else [""] * len(rows)),
        "verwacht": _csv_number(rows["E"], 3), "oe": _csv_number(rows["ratio"], 4),
        "oe_laag": _csv_number(rows["lo"], 4), "oe_hoog": _csv_number(rows["hi"], 4),
        "cijfer": _csv_number(rows["rate"], 4), "eenheid": m["unit_label"],
        "positie": rows["position"].astype("string").fillna(""),
    })
    return out.sort_values(["praktijk", "agb", "kwartaal"]).reset_index(drop=True)


def _csv_number(values: pd.Series, decimals: int) -> list[str]:
    """Numbers as a Dutch Excel reads them: decimal comma, no thousands separator, empty when withheld.

    >>> _csv_number(pd.Series([1234.56789, None]), 2)
    ['1234,57', '']
    """
    return ["" if pd.isna(x) else f"{float(x):.{decimals}f}".replace(".", ",") for x in values]


def write_csv(data: ExploreData, sel: Selection, path: Path | str) -> Path:
    """Write ``export_frame`` for Excel (every cell escaped, ';', UTF-8 with BOM), atomically."""
    from .worklists import write_table_csv
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table_csv(export_frame(data, sel), path)
    return path


def extras(shared, key: str, outdir: Path) -> list[Path]:
    """The batch's extra file beside the report: the default selection as ``verkenning.csv``."""
    data = load(shared)
    return [write_csv(data, default_selection(data), Path(outdir) / CSV_NAME)]


# ------------------------------------------------------------------ a new measure from a file
def add_measure(data: ExploreData, path: Path | str, warehouse: Path | str, quarter: str = "") -> str:
    """Load one measure file (``parameters/mirror/<id>.yaml`` or anywhere), compute it for every
    practice and rolling year on the warehouse with the mirror's own SQL
    (``helpers.mirror.compute_mirror``, aggregates only), pass it through the shared table's
    small-number rule and add it to ``data``; returns its key for the selection. A file that
    breaks the measure rules is one ``ParameterError`` listing its problems."""
    from ..cube.shared import suppress_table
    from ..mirror import compute_mirror
    from ..mirror.measures import load_measures, parse_measure
    from ..rules.codes import read_yaml
    from ..rules.programmes import load_programmes
    from ..warehouse import Warehouse
    from .registry import REPORTS
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"measure file {path}: not found; write it as parameters/mirror/<id>.yaml "
                             f"(copy one of parameters/mirror/ and change id, title and the event)")
    rules = load_programmes()
    measure, problems = parse_measure(read_yaml(path) or {}, path.name, rules)
    if measure is None:
        raise ParameterError("; ".join(p.describe() for p in problems))
    wanted = {measure.id: measure}
    if measure.share_of:
        wanted = {measure.share_of: load_measures(rules=rules)[measure.share_of], measure.id: measure}
    q = Quarter.parse(quarter or data.quarter)
    with Warehouse(Path(warehouse)).connect(read_only=True) as con:
        mirror = compute_mirror(con, q, measures=wanted, rules=rules)["mirror"]
    mirror = mirror[mirror["measure"] == measure.id]
    practices = data.practices[["practice_agb", "name", "hagro", "region"]]
    table = next(t for t in REPORTS["verkenning"].prepare.shared if t.name == MIRROR_TABLE)
    shown = suppress_table(mirror_rows(mirror, practices), table)
    data.mirror = pd.concat([data.mirror[data.mirror["measure"] != measure.id], shown], ignore_index=True)
    band_table = next(t for t in REPORTS["verkenning"].prepare.shared if t.name == DECILES_TABLE)
    data.deciles = pd.concat([data.deciles[data.deciles["measure"] != measure.id],
                              suppress_table(decile_rows(mirror), band_table)], ignore_index=True)
    key = measure_key("spiegel", measure.id)
    row = {"key": key, "kind": "spiegel", "id": measure.id, "title": f"{measure.title} (nieuw)",
           "unit": measure.unit, "unit_label": measure.unit_label, "section": measure.section, "target_pct": np.nan}
    data.measures = pd.concat([data.measures[data.measures["key"] != key], pd.DataFrame([row])], ignore_index=True)
    if measure.id not in data.added:
        data.added.append(measure.id)
    return key


# ------------------------------------------------------------------ text
def heading(data: ExploreData) -> str:
    return f"# Verkenning zorggroep\n\n**{escape.markdown(Quarter.parse(data.quarter).label_nl)}**"


def intro_text(data: ExploreData) -> str:
    n = len(data.practices)
    return (f"De cijfers van de **{n} praktijken** van de zorggroep om zelf te verkennen: kies een kwartaal, "
            f"praktijken, een hagro of een regio, en een indicator of een maat van de praktijkspiegel. De trechter "
            f"zet iedere praktijk af tegen wat voor haar patiëntenpopulatie verwacht wordt, de trend toont de "
            f"praktijken tegen de deciels van de zorggroep over de kwartalen, en de tabel geeft de cijfers erachter. "
            f"Alleen gedeelde, afgeschermde cijfers: geen patiënten, en kleine aantallen als <10. Per praktijk "
            f"staan de maten van de praktijkspiegel alleen voor niet-overlappende jaren (dit jaar en het jaar "
            f"ervoor), zodat verschillen tussen jaren geen kleine aantallen prijsgeven; de deciels van de "
            f"zorggroep staan voor ieder kwartaal.")


def selection_text(data: ExploreData, sel: Selection) -> str:
    n = len(selected_practices(data, sel))
    more = (f" De trend toont de eerste {MAX_TREND_PANELS}." if n > MAX_TREND_PANELS else "")
    mark = ("Blauw: de gekozen praktijken; grijs: de andere praktijken." if sel.kind != "zorggroep"
            else "Iedere stip is een praktijk van de zorggroep.")
    return f"**Selectie**: {escape.markdown(sel.describe(data))} ({n} praktijken). {mark}{more}"


def method_text(data: ExploreData) -> str:
    return "\n".join([
        "- **Maten van de praktijkspiegel**: waargenomen/verwacht (O/E) over de twaalf maanden tot en met het "
        "kwartaal, indirect gestandaardiseerd naar leeftijd en geslacht met de hele zorggroep als referentie; "
        "de trechtergrenzen (95% en 99,8%) zijn verbreed voor de spreiding tussen praktijken.",
        "- **Indicatoren**: het percentage van de noemer; voor de trechter is O de teller en E de noemer maal "
        "het gemiddelde van de zorggroep (over de getoonde praktijken), met dezelfde grenzen.",
        "- **Niet-overlappende jaren**: een maat van de praktijkspiegel telt over de twaalf maanden tot en met "
        "het kwartaal; twee zulke jaren die een kwartaal schelen delen drie kwartalen, en hun verschil is het "
        "aantal van één kwartaal min dat van hetzelfde kwartaal een jaar eerder. Per praktijk staan daarom alleen "
        "niet-overlappende jaren (dit jaar en het jaar ervoor), zodat verschillen tussen jaren geen kleine "
        "aantallen prijsgeven; de trend toont de praktijk in die twee jaren boven de deciels van alle acht.",
        f"- **Deciels**: P10 t/m P90 van de cijfers van de praktijken, alleen over cijfers op een aantal dat "
        f"getoond mag worden en alleen bij minstens {MIN_PRACTICES_FOR_PEERS} praktijken (zoals de praktijkspiegel "
        f"de mediaan, P10 en P90 berekent); bij een indicator over de getoonde percentages.",
        f"- **Kleine aantallen**: {RULE_TEXT}.",
        "- **Nieuwe maat**: schrijf `parameters/mirror/<maat>.yaml` en bereken haar in JupyterLab (`spiegel lab`) "
        "met `ui.add_measure(pad, warehouse)`, met dezelfde afscherming van kleine aantallen.",
    ])


# ------------------------------------------------------------------ the notebook's views
def _display_figure(fig, handle=None):
    from IPython.display import display
    try:
        import matplotlib.pyplot as plt
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover
        plt = Figure = None
    if handle is None:
        display(fig)
    else:
        handle.update(fig)
    if Figure is not None and isinstance(fig, Figure):
        plt.close(fig)


def interactive() -> bool:
    """True in a kernel that a Jupyter server started for a notebook (JupyterLab: the server sets
    ``JPY_SESSION_NAME``); False in the batch, papermill or a plain Python process."""
    return bool(os.environ.get("JPY_SESSION_NAME"))


class Explorer:
    """The widgets and the views of the notebook.

    ``show_controls()`` shows the widgets in JupyterLab (nothing in the batch); ``show_funnel()``,
    ``show_trend()``, ``show_table()`` show their view for the current selection, in JupyterLab
    in an output widget that follows the widgets, elsewhere as static output.
    """

    def __init__(self, data: ExploreData, selection: Selection | None = None, live: bool | None = None,
                 export_dir: Path | str = "."):
        self.data = data
        self.selection = selection or default_selection(data)
        self.live = interactive() if live is None else live
        self.export_dir = Path(export_dir)
        self._views: dict[str, object] = {}
        self._widgets = None

    # -- the views, each a list of display objects
    def funnel_figure(self):
        from .. import plots
        points, limits, own, title = funnel_frames(self.data, self.selection)
        if points.empty:
            return None
        return plots.funnel(points=points, limits=limits, own=own, title=title,
                            own_label=own_label(self.selection))

    def trend_figure(self):
        from .. import plots
        panels = trend_panels(self.data, self.selection)
        if not panels:
            return None
        return plots.trend_grid(panels, columns=2 if len(panels) > 1 else 1, own_label=trend_label(self.selection))

    def _render(self, name: str) -> None:
        from IPython.display import HTML, Markdown, display
        sel = self.selection
        if name == "selection":
            display(Markdown(selection_text(self.data, sel)))
        elif name == "funnel":
            fig = self.funnel_figure()
            if fig is None:
                display(Markdown("Geen praktijk heeft in dit kwartaal een getoond O/E met E van minstens 10."))
            else:
                _display_figure(fig)
        elif name == "trend":
            fig = self.trend_figure()
            if fig is None:
                display(Markdown("Geen praktijk gekozen."))
            else:
                _display_figure(fig)
            display(HTML(to_html(band_table(self.data, sel), align_right=(*DECILE_LABELS, "Mediaan (P50)"))))
        elif name == "table":
            display(HTML(to_html(selection_table(self.data, sel), align_right=TABLE_RIGHT)))

    def _show(self, name: str) -> None:
        if not self.live:
            self._render(name)
            return
        import ipywidgets as w
        from IPython.display import display
        out = w.Output()
        self._views[name] = out
        with out:
            self._render(name)
        display(out)

    def refresh(self) -> None:
        for name, out in self._views.items():
            out.clear_output(wait=True)
            with out:
                self._render(name)

    def show_selection(self):
        self._show("selection")

    def show_funnel(self):
        self._show("funnel")

    def show_trend(self):
        self._show("trend")

    def show_table(self):
        self._show("table")

    def export(self, path: Path | str | None = None) -> Path:
        """Write the current selection as CSV (default: ``verkenning_<measure>_<quarter>.csv``)."""
        kind, ident = split_key(self.selection.measure)
        path = Path(path) if path else self.export_dir / f"verkenning_{ident}_{self.selection.quarter}.csv"
        return write_csv(self.data, self.selection, path)

    # -- the widgets
    def show_controls(self) -> None:
        """The widgets (JupyterLab only; in the batch the views show the default selection)."""
        if not self.live:
            return
        import ipywidgets as w
        from IPython.display import display
        d, sel = self.data, self.selection
        measure = w.Dropdown(description="Cijfer", options=self._measure_options(), value=sel.measure,
                             layout=w.Layout(width="38em"))
        quarter = w.Dropdown(description="Kwartaal", options=d.quarters(sel.measure), value=sel.quarter)
        kind = w.ToggleButtons(description="Selectie", options=[(v, k) for k, v in KINDS.items()], value=sel.kind)
        regions = sorted(d.practices["region"].dropna().astype(str).unique())
        hagros = sorted(d.practices["hagro"].dropna().astype(str).unique())
        region = w.Dropdown(description="Regio", options=regions, value=regions[0] if regions else None)
        hagro = w.Dropdown(description="Hagro", options=hagros, value=hagros[0] if hagros else None)
        practices = w.SelectMultiple(description="Praktijken", options=list(zip(d.practices["label"],
                                                                                 d.practices["practice_agb"])),
                                     value=tuple(d.practices["practice_agb"][:1]), rows=6,
                                     layout=w.Layout(width="38em"))
        button = w.Button(description="Exporteer naar CSV", icon="download")
        status = w.HTML()
        self._widgets = dict(measure=measure, quarter=quarter, kind=kind, region=region, hagro=hagro,
                             practices=practices, status=status)

        def which():
            k = kind.value
            region.layout.display = "" if k == "regio" else "none"
            hagro.layout.display = "" if k == "hagro" else "none"
            practices.layout.display = "" if k == "praktijken" else "none"

        def changed(_change=None):
            which()
            quarters = d.quarters(measure.value)
            if list(quarter.options) != quarters:
                keep = quarter.value if quarter.value in quarters else (quarters[-1] if quarters else None)
                quarter.options = quarters
                quarter.value = keep
            values = {"zorggroep": (), "regio": (region.value,), "hagro": (hagro.value,),
                      "praktijken": tuple(practices.value)}[kind.value]
            self.selection = Selection(quarter=quarter.value or d.quarter, kind=kind.value,
                                       values=tuple(v for v in values if v is not None), measure=measure.value)
            status.value = ""
            self.refresh()

        def export(_b):
            try:
                path = self.export()
                status.value = f"Geschreven: <code>{escape.html_text(path)}</code>"
            except OSError as exc:
                status.value = f"Niet geschreven: {escape.html_text(exc)}"

        for widget in (measure, quarter, kind, region, hagro, practices):
            widget.observe(changed, names="value")
        button.on_click(export)
        which()
        self._box = w.VBox([measure, w.HBox([quarter]), kind, region, hagro, practices, w.HBox([button, status])])
        display(self._box)

    def _measure_options(self) -> list[tuple[str, str]]:
        m = self.data.measures
        prefix = {"spiegel": "Praktijkspiegel", "indicator": "Indicator"}
        return [(f"{prefix.get(r.kind, r.kind)}: {escape.single_line(r.title)}", r.key) for r in m.itertuples()]

    def add_measure(self, path: Path | str, warehouse: Path | str) -> str:
        """``add_measure`` and select it (the widgets follow)."""
        key = add_measure(self.data, path, warehouse, self.selection.quarter)
        self.selection = replace(self.selection, measure=key)
        if self._widgets:
            self._widgets["measure"].options = self._measure_options()
            self._widgets["measure"].value = key
        else:
            self.refresh()
        return key
