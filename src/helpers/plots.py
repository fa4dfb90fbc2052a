"""The house style for figures: one palette, Dutch labels, readable when printed on A4.

>>> fig = inclusion_chart(summary)                     # doctest: +SKIP
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullLocator
import pandas as pd
import seaborn as sns

from .escape import mpl_text
from .svgchart import Chart, Scale, nice_ticks, nl_tick, text_width

PRACTICE = "#1f5f8b"   # the practice itself
PEERS = "#b8c7d3"      # other practices
TARGET = "#c0392b"     # targets and caps
GOOD = "#2e8b57"
MUTED = "#6b7b8c"
FONT = "DejaVu Sans"


def use_house_style() -> None:
    """Apply the house style (call once per notebook; idempotent).

    In a notebook, figures are embedded as SVG: vector, so crisp when printed, and about a
    third faster to produce than PNG for these charts (measured with savefig). The same
    figure gives the same SVG bytes: no date in its metadata, and the ids of its clip paths
    hashed with a fixed salt instead of a random one.

    Three settings keep a figure cheap to draw (the praktijkspiegel draws twelve; measured
    with ``benchmarks/bench_figures.py``): text is written as SVG text in the browser's font
    (DejaVu Sans, else Arial or Helvetica) instead of one path per glyph, which also makes
    the SVG a third of the size and its words searchable; the title sits at a fixed height
    instead of being moved clear of the tick labels on every draw; and log axes get no
    minor ticks (``no_minor_ticks``).
    """
    try:
        from IPython import get_ipython
        if get_ipython() is not None:
            from matplotlib_inline.backend_inline import set_matplotlib_formats
            set_matplotlib_formats("svg", metadata={"Date": None})
    except ImportError:  # outside Jupyter nothing to configure
        pass
    sns.set_theme(style="whitegrid", context="notebook", font="sans-serif")
    plt.rcParams.update({
        "font.sans-serif": [FONT, "Arial", "Helvetica", "Liberation Sans"],
        "svg.fonttype": "none", "axes.titley": 1.0, "axes.titlepad": 8.0,
        "figure.dpi": 110, "savefig.dpi": 150, "figure.figsize": (8.0, 3.6),
        "axes.titlesize": 12, "axes.titleweight": "bold", "axes.labelsize": 10,
        "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
        "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": "#9aa5b1",
        "grid.color": "#e3e8ee", "figure.autolayout": True, "svg.hashsalt": "spiegel",
    })


def no_minor_ticks(ax, *axes: str) -> None:
    """No minor ticks on the named axes ("x", "y") of ``ax``: on a log axis matplotlib lays out
    a label for each of them on every draw, though the house style shows none."""
    for name in axes:
        getattr(ax, f"{name}axis").set_minor_locator(NullLocator())


RATIO_TICKS = (0.25, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0)


def _ratio_ticks(ax, axis: str, lo: float, hi: float) -> None:
    """Ticks at the ratios a reader knows (0,5 is half, 2 is twice) on a log O/E axis."""
    ticks = [t for t in RATIO_TICKS if lo <= t <= hi]
    getattr(ax, f"set_{axis}ticks")(ticks, [f"{t:g}".replace(".", ",") for t in ticks])
    no_minor_ticks(ax, axis)


def pct_fmt(x, _pos=None) -> str:
    return f"{x:.0f}%"


# --- the praktijkspiegel ------------------------------------------------------------------
# Care use is neither good nor bad in itself: the mirror's figures use one neutral colour for
# the practice and grey for the others, never red and green.

MIRROR_BAND = "#dfe6ec"   # the care group's P10-P90 band
LIMIT_95 = "#9aa5b1"
LIMIT_998 = "#5b6675"


def _ratio_domain(values, lo_default=0.5, hi_default=2.0) -> tuple[float, float]:
    """The O/E axis range: the data with a margin, never narrower than 0,8-1,25, within 0,2-5."""
    v = pd.to_numeric(pd.Series(list(values)), errors="coerce").replace([np.inf, -np.inf], np.nan).dropna()
    v = v[v > 0]
    lo = max(float(v.min()) * 0.9, 0.2) if len(v) else lo_default
    hi = min(float(v.max()) * 1.1, 5.0) if len(v) else hi_default
    return min(lo, 0.8), max(hi, 1.25)


def _ratio_labels(lo: float, hi: float) -> tuple[list[float], list[str]]:
    ticks = [t for t in RATIO_TICKS if lo <= t <= hi]
    return ticks, [f"{t:g}".replace(".", ",") for t in ticks]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks on a log axis from ``lo`` to ``hi``."""
    out, base = [], 10 ** math.floor(math.log10(max(lo, 1e-9)))
    while base <= hi * 10:
        out += [m * base for m in (1, 2, 5) if lo <= m * base <= hi]
        base *= 10
    return out


def _floats(series) -> list[float]:
    return [float(v) if pd.notna(v) else math.nan for v in series]


def funnel(points: pd.DataFrame, limits: pd.DataFrame, own: str, title: str,
           own_label: str = "Deze praktijk") -> Chart:
    """A funnel plot of one measure: O/E (y, log scale) against E (x) for every practice with
    E >= the display minimum, this practice as a blue diamond, the others as grey dots, and the
    overdispersion-adjusted 95% and 99.8% limits as lines.

    ``points``: practice_agb, expected, ratio; ``limits``: expected, lo95, hi95, lo998, hi998
    (a grid over the range of E, from ``helpers.mirror.stats``). ``own_label`` names the
    highlighted points in the legend (a selection of several practices is no "Deze praktijk").
    Written as SVG by ``helpers.svgchart`` (see there why)."""
    lim = limits.sort_values("expected")
    e = _floats(lim["expected"])
    e_lo, e_hi = min(e), max(e)
    log_x = e_hi > 50 * e_lo          # E spans orders of magnitude: a log axis keeps it readable
    y_lo, y_hi = _ratio_domain(pd.concat([points["ratio"], lim["lo998"], lim["hi998"]]))
    chart = Chart(800, 350)
    if log_x:
        xs = Scale(e_lo, e_hi, log=True)
    else:
        xs = Scale(0.0, nice_ticks(0.0, e_hi)[-1])
    p = chart.panel(64, 46, 716, 240, xs, Scale(y_lo, y_hi, log=True))
    yt, yl = _ratio_labels(y_lo, y_hi)
    xt = [t for t in (_log_ticks(e_lo, e_hi) if log_x else nice_ticks(0.0, e_hi))
          if xs.lo <= t <= xs.hi]
    p.frame(grid_x=xt, grid_y=yt)
    p.line(e, _floats(lim["hi998"]), LIMIT_998, 1.6)
    p.line(e, _floats(lim["lo998"]), LIMIT_998, 1.6)
    p.line(e, _floats(lim["hi95"]), LIMIT_95, 1.3, dash="6 4")
    p.line(e, _floats(lim["lo95"]), LIMIT_95, 1.3, dash="6 4")
    p.hline(1.0, "#1d2430", 1.0)
    mine = points["practice_agb"].astype(str) == str(own)
    others, me = points[~mine], points[mine]
    p.markers(_floats(others["expected"]), _floats(others["ratio"]), "circle", 9, PEERS, edge="white")
    p.markers(_floats(me["expected"]), _floats(me["ratio"]), "diamond", 14, PRACTICE)
    p.yticks(yt, yl)
    p.xticks(xt, [nl_tick(t) for t in xt])
    chart.text(p.x0 + p.w / 2, 336, "Verwacht aantal (E) voor de patiëntenpopulatie", size=12, anchor="middle")
    chart.text(16, p.y0 + p.h / 2, "Waargenomen / verwacht", size=12, anchor="middle", rotate=-90)
    chart.text(4, 18, title, size=15, weight="bold")
    # a care-group view (no practice of its own among the points) names no "Deze praktijk"
    marks = ([("diamond", PRACTICE, own_label), ("circle", PEERS, "Andere praktijken")] if len(me)
             else [("circle", PEERS, "Praktijken")])
    chart.legend(780, 38, marks + [("line", LIMIT_998, "99,8%-grens"), ("dash", LIMIT_95, "95%-grens")],
                 size=11, anchor="end")
    return chart


def _label_width(labels, size: float, cap: float) -> float:
    return min(max([text_width(str(t), size) for t in labels] + [40.0]) + 10, cap)


def ratio_dots(rows: pd.DataFrame, title: str) -> Chart:
    """O/E with its 95% interval per measure of a section (one row each), the care group's
    P10-P90 of O/E as a grey band behind it. ``rows``: label, ratio, lo, hi, p10, p90;
    rows with no ratio (E too small) are listed with a note instead of a dot."""
    rows = rows.reset_index(drop=True)
    n = len(rows)
    labels = [str(t) for t in rows["label"]]
    left = _label_width(labels, 12, 360)
    row_h = 24
    height = 40 + row_h * max(n, 1) + 52
    p10 = rows["p10"] if "p10" in rows else pd.Series(np.nan, index=rows.index)
    p90 = rows["p90"] if "p90" in rows else pd.Series(np.nan, index=rows.index)
    x_lo, x_hi = _ratio_domain(pd.concat([rows["lo"], rows["hi"], p10, p90]))
    chart = Chart(800, height)
    # rows are drawn at y = 0 (top) .. n-1: the scale runs downwards from -0.5 to n-0.5
    p = chart.panel(left, 40, 780 - left, row_h * max(n, 1), Scale(x_lo, x_hi, log=True),
                    Scale(max(n, 1) - 0.5, -0.5))
    xt, xl = _ratio_labels(x_lo, x_hi)
    p.frame(grid_x=xt)
    for i in range(n):
        if pd.notna(p10.iloc[i]) and pd.notna(p90.iloc[i]):
            p.hbar(i, float(p10.iloc[i]), float(p90.iloc[i]), 0.5, fill=MIRROR_BAND)
    p.vline(1.0, "#1d2430", 1.0)
    for i, r in rows.iterrows():
        if pd.notna(r["ratio"]):
            p.hseg(i, float(r["lo"]), float(r["hi"]), PRACTICE, 1.8)
            p.markers([float(r["ratio"])], [i], "diamond", 11, PRACTICE)
        else:
            p.text(1.0, i, "te weinig verwacht", size=10, anchor="middle", color=MUTED, italic=True)
    p.yticks(list(range(n)), labels, size=12)
    p.xticks(xt, xl)
    chart.text(p.x0 + p.w / 2, height - 10,
               "Waargenomen / verwacht (O/E) met 95%-betrouwbaarheidsinterval; grijs: P10-P90 zorggroep",
               size=11, anchor="middle")
    chart.text(4, 20, title, size=15, weight="bold")
    return chart


def _trend_panel(chart: Chart, x0: float, y0: float, w: float, h: float,
                 rows: pd.DataFrame, title: str, ylabel: str) -> None:
    rows = rows.reset_index(drop=True)
    n = len(rows)
    vals = [v for v in _floats(pd.concat([rows["rate"], rows["p90"]])) if math.isfinite(v)]
    top = max(vals) if vals else 1.0
    ticks = nice_ticks(0.0, top * 1.05 if top > 0 else 1.0, 4)
    decimals = 0 if ticks[-1] >= 20 else (1 if ticks[-1] >= 2 else 2)
    p = chart.panel(x0 + 52, y0 + 26, w - 58, h - 26 - 44, Scale(-0.3, max(n - 1, 1) + 0.3),
                    Scale(0.0, ticks[-1]))
    p.frame(grid_y=ticks)
    x = list(range(n))
    p.band(x, _floats(rows["p10"]), _floats(rows["p90"]), MIRROR_BAND)
    p.line(x, _floats(rows["median"]), MUTED, 1.5)
    p.line(x, _floats(rows["rate"]), PRACTICE, 2.4)
    p.markers(x, _floats(rows["rate"]), "circle", 6, PRACTICE)
    p.yticks(ticks, [nl_tick(t, decimals) for t in ticks], size=10)
    p.xticks(x, [str(t) for t in rows["window_label"]], size=9.5, rotate=True)
    chart.text(x0 + 4, y0 + 16, title, size=12.5, weight="bold")
    chart.text(x0 + 10, p.y0 + p.h / 2, ylabel, size=10, anchor="middle", rotate=-90, color=MUTED)


TREND_LEGEND = [("line", PRACTICE, "Deze praktijk"), ("line", MUTED, "Mediaan zorggroep"),
                ("band", MIRROR_BAND, "P10-P90 zorggroep")]


def trend_legend(own_label: str = "Deze praktijk") -> list[tuple[str, str, str]]:
    """``TREND_LEGEND`` with the practice's line named ``own_label``.

    >>> trend_legend("Gekozen praktijken")[0]
    ('line', '#1f5f8b', 'Gekozen praktijken')
    >>> trend_legend() == TREND_LEGEND
    True
    """
    return [(TREND_LEGEND[0][0], TREND_LEGEND[0][1], own_label), *TREND_LEGEND[1:]]


def trend_band(rows: pd.DataFrame, title: str, ylabel: str, own_label: str = "Deze praktijk") -> Chart:
    """A rate over the last quarters (rolling years): the care group's P10-P90 as a band, its
    median as a grey line, the practice in blue (as OpenPrescribing draws a practice over its
    peers' deciles), named ``own_label`` in the legend. ``rows``: window_label, rate, median,
    p10, p90 in time order; a quarter with no rate (NaN) breaks the practice's line."""
    chart = Chart(400, 262)
    _trend_panel(chart, 0, 0, 400, 236, rows, title, ylabel)
    chart.legend(6, 254, trend_legend(own_label), size=10)
    return chart


def trend_grid(panels: list[tuple[pd.DataFrame, str, str]], columns: int = 2,
               own_label: str = "Deze praktijk") -> Chart:
    """Several ``trend_band`` panels as one figure (small multiples, each with its own y axis),
    the legend once below (the practice named ``own_label``): ``panels`` is a list of (rows,
    title, ylabel)."""
    n_rows = -(-len(panels) // columns)
    w, h = 800 / columns, 236
    chart = Chart(800, h * n_rows + 30)
    for k, (rows, title, ylabel) in enumerate(panels):
        _trend_panel(chart, (k % columns) * w, (k // columns) * h, w, h, rows, title, ylabel)
    chart.legend(400, h * n_rows + 20, trend_legend(own_label), size=11, anchor="middle")
    return chart


def inclusion_chart(summary: pd.DataFrame) -> Chart:
    """Inclusion rate per chain (bars) against the agreed maximum (red tick)."""
    s = summary.reset_index(drop=True)
    n = len(s)
    labels = [str(p) for p in s["programme"]]
    left = _label_width(labels, 12, 260)
    row_h = 30
    height = 34 + row_h * max(n, 1) + 50
    pct = _floats(s["inclusion_pct"])
    cap = _floats(s["max_inclusion_pct"])
    top = max([v for v in pct + cap if math.isfinite(v)] + [1.0]) * 1.2
    chart = Chart(800, height)
    p = chart.panel(left, 34, 770 - left, row_h * max(n, 1), Scale(0.0, top), Scale(max(n, 1) - 0.5, -0.5))
    xt = [t for t in nice_ticks(0.0, top) if t <= top]
    p.frame(grid_x=xt)
    over = [bool(o) if pd.notna(o) else False for o in s["over_cap"]]
    for i in range(n):
        v = pct[i] if math.isfinite(pct[i]) else 0.0
        p.hbar(i, 0.0, v, 0.55, fill=TARGET if over[i] else PRACTICE)
        if math.isfinite(cap[i]):
            p.vseg(cap[i], i - 0.38, i + 0.38, TARGET, 2.5)
        label_x = max(v, cap[i] if math.isfinite(cap[i]) else 0.0)
        text = nl_tick(pct[i], 1) + "%" if math.isfinite(pct[i]) else "–"
        chart.text(p.x(label_x) + 6, p.y(i) + 4, text, size=11)
    p.yticks(list(range(n)), labels, size=12)
    p.xticks(xt, [f"{t:.0f}%" for t in xt])
    chart.text(p.x0 + p.w / 2, height - 10, "Patiënten in ketenzorg als % van de ingeschreven patiënten",
               size=12, anchor="middle")
    chart.text(4, 20, "Inclusie per keten (rood streepje = afgesproken maximum)", size=15, weight="bold")
    return chart


def indicator_strip(own: pd.DataFrame, peers: pd.DataFrame) -> Chart:
    """Each indicator on a row: the other practices of the care group as grey dots (only
    those the small-number rules allow), this practice as a blue diamond, the target as a
    red line. ``own``: indicator_id, title, pct, target_pct; ``peers``: indicator_id, pct."""
    own = own.reset_index(drop=True)
    n = len(own)
    labels = [str(t) for t in own["title"]]
    left = _label_width(labels, 11.5, 400)
    row_h = 26
    height = 12 + row_h * max(n, 1) + 66
    chart = Chart(800, height)
    p = chart.panel(left, 12, 780 - left, row_h * max(n, 1), Scale(-2.0, 102.0), Scale(max(n, 1) - 0.5, -0.5))
    xt = [0, 20, 40, 60, 80, 100]
    p.frame(grid_x=xt)
    by_indicator = {k: _floats(g["pct"]) for k, g in peers.groupby("indicator_id", sort=False)}
    for i, r in own.iterrows():
        if pd.notna(r["target_pct"]):
            p.vseg(float(r["target_pct"]), i - 0.35, i + 0.35, TARGET, 2.0)
        vals = by_indicator.get(r["indicator_id"], [])
        p.markers(vals, [i] * len(vals), "circle", 8, PEERS, edge="white")
        if pd.notna(r["pct"]):
            p.markers([float(r["pct"])], [i], "diamond", 13, PRACTICE)
    p.yticks(list(range(n)), labels, size=11.5)
    p.xticks(xt, [f"{t}%" for t in xt])
    chart.text(p.x0 + p.w / 2, p.y0 + p.h + 36, "Percentage van de noemer", size=12, anchor="middle")
    chart.legend(400, height - 8, [("diamond", PRACTICE, "Deze praktijk"),
                                   ("circle", PEERS, "Andere praktijken in de zorggroep"),
                                   ("line", TARGET, "Streefwaarde")], size=11, anchor="middle")
    return chart


HIS_AGE_BANDS = ["0-4", "5-17", "18-44", "45-64", "65-74", "75-84", "85+"]


def pyramid(pyr: pd.DataFrame) -> Chart:
    """Age/sex pyramid of the practice population (men left, women right)."""
    order = HIS_AGE_BANDS

    def side(sex):
        return [float(v) for v in pyr[pyr["sex"] == sex].set_index("age_band")["patients"]
                .reindex(order, fill_value=0).fillna(0)]

    men, women = side("M"), side("V")
    m = max(men + women + [1.0]) * 1.15
    n = len(order)
    row_h = 26
    height = 34 + row_h * n + 66
    chart = Chart(800, height)
    p = chart.panel(70, 34, 700, row_h * n, Scale(-m, m), Scale(n - 0.5, -0.5))
    ticks = [t for t in nice_ticks(0, m, 4) if t <= m]
    xt = sorted({-t for t in ticks} | set(ticks))
    p.frame(grid_x=xt)
    for i in range(n):
        p.hbar(i, -men[i], 0, 0.7, fill="#5b8db8")
        p.hbar(i, 0, women[i], 0.7, fill="#d98c6b")
    p.vline(0.0, "#1d2430", 0.8)
    p.yticks(list(range(n)), order, size=12)
    p.xticks(xt, [nl_tick(abs(t)) for t in xt])
    chart.text(p.x0 + p.w / 2, p.y0 + p.h + 36, "Aantal patiënten", size=12, anchor="middle")
    chart.text(4, 20, "Leeftijdsopbouw op de eerste dag van het kwartaal", size=15, weight="bold")
    chart.legend(400, height - 8, [("band", "#5b8db8", "Mannen"), ("band", "#d98c6b", "Vrouwen")],
                 size=11, anchor="middle")
    return chart


def pyramid_compare(own: pd.DataFrame, reference: pd.DataFrame, order: list[str]) -> Chart:
    """The practice's age/sex make-up (bars, % of its patient-years) against the care group's
    (black outline). ``own`` and ``reference``: age_band, sex (M/V), share (percent)."""

    def side(df, sex):
        return [float(v) for v in df[df["sex"] == sex].set_index("age_band")["share"]
                .reindex(order, fill_value=0).fillna(0)]

    om, ov, rm, rv = side(own, "M"), side(own, "V"), side(reference, "M"), side(reference, "V")
    m = max(om + ov + rm + rv + [1.0]) * 1.15
    n = len(order)
    row_h = 26
    height = 40 + row_h * n + 70
    chart = Chart(800, height)
    p = chart.panel(70, 40, 700, row_h * n, Scale(-m, m), Scale(n - 0.5, -0.5))
    ticks = [t for t in nice_ticks(0, m, 4) if t <= m]
    xt = sorted({-t for t in ticks} | set(ticks))
    p.frame(grid_x=xt)
    for i in range(n):
        p.hbar(i, -om[i], 0, 0.7, fill="#5b8db8")
        p.hbar(i, 0, ov[i], 0.7, fill="#d98c6b")
        p.hbar(i, -rm[i], 0, 0.7, stroke="#1d2430", width=1.2)
        p.hbar(i, 0, rv[i], 0.7, stroke="#1d2430", width=1.2)
    p.vline(0.0, "#1d2430", 0.8)
    p.yticks(list(range(n)), [str(o) for o in order], size=12)
    p.xticks(xt, [f"{abs(t):.0f}%" for t in xt])
    chart.text(p.x0 + p.w / 2, 40 + row_h * n + 38, "Aandeel van de patiëntjaren (mannen links, vrouwen rechts)",
               size=12, anchor="middle")
    chart.text(4, 20, "Leeftijdsopbouw tegenover de zorggroep", size=15, weight="bold")
    chart.legend(400, height - 8, [("band", "#5b8db8", "Mannen (praktijk)"), ("band", "#d98c6b", "Vrouwen (praktijk)"),
                                   ("outline", "#1d2430", "Zorggroep")], size=11, anchor="middle")
    return chart


# --- the regional report -----------------------------------------------------------------
def region_inclusion(frame: pd.DataFrame, programmes: list[str]):
    """Inclusion per practice (bars) against the agreed maximum (red tick), one panel per
    programme. ``frame``: programme, name, inclusion_pct (NaN where withheld), max_inclusion_pct."""
    use_house_style()
    names = sorted(frame["name"].astype(str).unique())
    cols = 2
    rows_n = -(-len(programmes) // cols)
    height = max(1.6, 0.28 * len(names) + 0.9)
    fig, axes = plt.subplots(rows_n, cols, figsize=(8.0, height * rows_n + 0.3), squeeze=False, sharey=True)
    y = np.arange(len(names))
    for ax, prog in zip(axes.flat, programmes):
        g = frame[frame["programme"] == prog].set_index(frame[frame["programme"] == prog]["name"].astype(str))
        g = g.reindex(names)
        pct = g["inclusion_pct"].astype(float)
        cap = g["max_inclusion_pct"].astype(float)
        over = (pct > cap).fillna(False).to_numpy()
        ax.barh(y, pct.fillna(0).to_numpy(), color=np.where(over, TARGET, PRACTICE), height=0.6)
        ax.vlines(cap.to_numpy(), y - 0.38, y + 0.38, color=TARGET, lw=2.0)
        for i, v in enumerate(pct):
            if pd.isna(v):
                ax.text(0.1, i, "<10", va="center", fontsize=7, color=MUTED)
        top = float(np.nanmax(np.r_[pct.to_numpy(dtype=float), cap.to_numpy(dtype=float), 1.0]))
        ax.set_xlim(0, top * 1.15)
        ax.xaxis.set_major_formatter(pct_fmt)
        ax.set_yticks(y, [mpl_text(n) for n in names], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(mpl_text(prog), loc="left", fontsize=10)
    for ax in list(axes.flat)[len(programmes):]:
        ax.set_visible(False)
    fig.suptitle("Inclusie per praktijk (rood streepje = afgesproken maximum)", x=0.01, ha="left",
                 fontsize=11, fontweight="bold")
    return fig
