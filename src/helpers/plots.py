"""The house style for figures: one palette, Dutch labels, readable when printed on A4.

>>> fig = inclusion_chart(summary)                     # doctest: +SKIP
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullLocator
import pandas as pd
import seaborn as sns

from .escape import mpl_text

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


def inclusion_chart(summary: pd.DataFrame):
    """Inclusion rate per chain (bars) against the agreed maximum (red tick)."""
    use_house_style()
    fig, ax = plt.subplots(figsize=(8.0, 3.0))
    s = summary.reset_index(drop=True)
    y = np.arange(len(s))
    colors = [TARGET if o else PRACTICE for o in s["over_cap"].fillna(False)]
    ax.barh(y, s["inclusion_pct"].fillna(0), color=colors, height=0.55)
    for i, r in s.iterrows():
        ax.plot([r["max_inclusion_pct"]] * 2, [i - 0.38, i + 0.38], color=TARGET, lw=2.2)
        label_x = max(r["inclusion_pct"] if pd.notna(r["inclusion_pct"]) else 0, r["max_inclusion_pct"])
        ax.text(label_x * 1.02 + 0.1, i, f"{r['inclusion_pct']:.1f}%".replace(".", ","),
                va="center", fontsize=9, color="#1c2833")
    ax.set_yticks(y, [mpl_text(p) for p in s["programme"]])
    ax.invert_yaxis()
    ax.set_xlim(0, max(float(s["max_inclusion_pct"].max()), float(s["inclusion_pct"].max() or 0)) * 1.2)
    ax.xaxis.set_major_formatter(pct_fmt)
    ax.set_xlabel("Patiënten in ketenzorg als % van de ingeschreven patiënten")
    ax.set_title("Inclusie per keten (rood streepje = afgesproken maximum)", loc="left")
    return fig


def indicator_strip(own: pd.DataFrame, peers: pd.DataFrame):
    """Each indicator on a row: the other practices of the care group as grey dots (only
    those the small-number rules allow), this practice as a blue diamond, the target as a
    red line. ``own``: indicator_id, title, pct, target_pct; ``peers``: indicator_id, pct."""
    use_house_style()
    own = own.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.0, 0.42 * len(own) + 1.1))
    for i, r in own.iterrows():
        p = peers[peers["indicator_id"] == r["indicator_id"]]["pct"].dropna()
        ax.scatter(p, [i] * len(p), color=PEERS, s=28, zorder=2, edgecolor="white", lw=0.5)
        if pd.notna(r["pct"]):
            ax.scatter([r["pct"]], [i], color=PRACTICE, marker="D", s=60, zorder=3)
        if pd.notna(r["target_pct"]):
            ax.plot([r["target_pct"]] * 2, [i - 0.35, i + 0.35], color=TARGET, lw=1.8, zorder=1)
    ax.set_yticks(range(len(own)), [mpl_text(t) for t in own["title"]])
    ax.invert_yaxis()
    ax.set_xlim(-2, 102)
    ax.xaxis.set_major_formatter(pct_fmt)
    ax.set_xlabel("Percentage van de noemer")
    ax.scatter([], [], color=PRACTICE, marker="D", label="Deze praktijk")
    ax.scatter([], [], color=PEERS, label="Andere praktijken in de zorggroep")
    ax.plot([], [], color=TARGET, label="Streefwaarde")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / (0.42 * len(own) + 1.1) * 2.2), ncol=3,
              frameon=False)
    return fig


def pyramid(pyr: pd.DataFrame):
    """Age/sex pyramid of the practice population (men left, women right)."""
    use_house_style()
    order = ["0-4", "5-17", "18-44", "45-64", "65-74", "75-84", "85+"]
    men = pyr[pyr["sex"] == "M"].set_index("age_band")["patients"].reindex(order, fill_value=0)
    women = pyr[pyr["sex"] == "V"].set_index("age_band")["patients"].reindex(order, fill_value=0)
    fig, ax = plt.subplots(figsize=(8.0, 2.8))
    y = np.arange(len(order))
    ax.barh(y, -men.values, color="#5b8db8", label="Mannen", height=0.7)
    ax.barh(y, women.values, color="#d98c6b", label="Vrouwen", height=0.7)
    ax.set_yticks(y, order)
    m = max(men.max(), women.max()) * 1.15
    ax.set_xlim(-m, m)
    ax.xaxis.set_major_formatter(lambda x, _p: f"{abs(int(x)):,}".replace(",", "."))
    ax.set_xlabel("Aantal patiënten")
    ax.set_title("Leeftijdsopbouw op de eerste dag van het kwartaal", loc="left")
    ax.legend(loc="lower right", frameon=False)
    return fig


# --- the praktijkspiegel ------------------------------------------------------------------
# Care use is neither good nor bad in itself: the mirror's figures use one neutral colour for
# the practice and grey for the others, never red and green.

MIRROR_BAND = "#dfe6ec"   # the care group's P10-P90 band
LIMIT_95 = "#9aa5b1"
LIMIT_998 = "#5b6675"


def funnel(points: pd.DataFrame, limits: pd.DataFrame, own: str, title: str):
    """A funnel plot of one measure: O/E (y, log scale) against E (x) for every practice with
    E >= the display minimum, this practice as a blue diamond, the others as grey dots, and the
    overdispersion-adjusted 95% and 99.8% limits as lines.

    ``points``: practice_agb, expected, ratio; ``limits``: expected, lo95, hi95, lo998, hi998
    (a grid over the range of E, from ``helpers.mirror.stats``)."""
    use_house_style()
    fig, ax = plt.subplots(figsize=(8.0, 3.4))
    lim = limits.sort_values("expected")
    ax.plot(lim["expected"], lim["hi998"], color=LIMIT_998, lw=1.2, label="99,8%-grens")
    ax.plot(lim["expected"], lim["lo998"], color=LIMIT_998, lw=1.2)
    ax.plot(lim["expected"], lim["hi95"], color=LIMIT_95, lw=1.0, ls="--", label="95%-grens")
    ax.plot(lim["expected"], lim["lo95"], color=LIMIT_95, lw=1.0, ls="--")
    ax.axhline(1.0, color="#1d2430", lw=0.8)
    others = points[points["practice_agb"] != own]
    me = points[points["practice_agb"] == own]
    ax.scatter(others["expected"], others["ratio"], color=PEERS, s=30, edgecolor="white", lw=0.5,
               zorder=3, label="Andere praktijken")
    ax.scatter(me["expected"], me["ratio"], color=PRACTICE, marker="D", s=70, zorder=4, label="Deze praktijk")
    ax.set_yscale("log")
    if lim["expected"].max() > 50 * lim["expected"].min():
        ax.set_xscale("log")   # E spans orders of magnitude: a log axis keeps the funnel readable
        ax.xaxis.set_major_formatter(lambda x, _p: f"{x:,.0f}".replace(",", "."))
        no_minor_ticks(ax, "x")
    values = pd.concat([points["ratio"], lim["lo998"], lim["hi998"]]).replace([np.inf, -np.inf], np.nan).dropna()
    values = values[values > 0]
    lo, hi = (max(values.min() * 0.9, 0.2), min(values.max() * 1.1, 5.0)) if len(values) else (0.5, 2.0)
    ax.set_ylim(min(lo, 0.8), max(hi, 1.25))
    _ratio_ticks(ax, "y", min(lo, 0.8), max(hi, 1.25))
    ax.set_xlabel("Verwacht aantal (E) voor de patiëntenpopulatie")
    ax.set_ylabel("Waargenomen / verwacht")
    ax.set_title(mpl_text(title), loc="left")
    ax.legend(loc="upper right", frameon=False, ncol=2, fontsize=8)
    return fig


def ratio_dots(rows: pd.DataFrame, title: str):
    """O/E with its 95% interval per measure of a section (one row each), the care group's
    P10-P90 of O/E as a grey band behind it. ``rows``: label, ratio, lo, hi, p10, p90;
    rows with no ratio (E too small) are listed with a note instead of a dot."""
    use_house_style()
    rows = rows.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.0, 0.36 * len(rows) + 1.0))
    y = np.arange(len(rows))
    # one collection per layer (not one artist per row): a section has up to 22 measures
    band = rows.get("p10", pd.Series(np.nan, index=rows.index)).notna() & \
        rows.get("p90", pd.Series(np.nan, index=rows.index)).notna()
    if band.any():
        ax.hlines(y[band], rows.loc[band, "p10"], rows.loc[band, "p90"], color=MIRROR_BAND, lw=9, zorder=1)
    shown = rows["ratio"].notna().to_numpy()
    if shown.any():
        ax.hlines(y[shown], rows.loc[shown, "lo"], rows.loc[shown, "hi"], color=PRACTICE, lw=1.4, zorder=2)
        ax.scatter(rows.loc[shown, "ratio"], y[shown], color=PRACTICE, marker="D", s=36, zorder=3)
    for i in y[~shown]:
        ax.text(1.0, i, "te weinig verwacht", va="center", ha="center", fontsize=8, color=MUTED)
    ax.axvline(1.0, color="#1d2430", lw=0.8)
    ax.set_xscale("log")
    finite = pd.concat([rows["lo"], rows["hi"], rows.get("p10", pd.Series(dtype=float)),
                        rows.get("p90", pd.Series(dtype=float))]).replace([np.inf, -np.inf], np.nan).dropna()
    finite = finite[finite > 0]
    lo = max(float(finite.min()) * 0.9, 0.2) if len(finite) else 0.5
    hi = min(float(finite.max()) * 1.1, 5.0) if len(finite) else 2.0
    ax.set_xlim(min(lo, 0.8), max(hi, 1.25))
    _ratio_ticks(ax, "x", min(lo, 0.8), max(hi, 1.25))
    ax.set_yticks(range(len(rows)), [mpl_text(t) for t in rows["label"]])
    ax.invert_yaxis()
    ax.set_xlabel("Waargenomen / verwacht (O/E) met 95%-betrouwbaarheidsinterval; grijs: P10-P90 zorggroep")
    ax.set_title(mpl_text(title), loc="left")
    return fig


def _trend_axes(ax, rows: pd.DataFrame, title: str, ylabel: str) -> None:
    rows = rows.reset_index(drop=True)
    x = np.arange(len(rows))
    ax.fill_between(x, rows["p10"], rows["p90"], color=MIRROR_BAND, lw=0, label="P10-P90 zorggroep")
    ax.plot(x, rows["median"], color=MUTED, lw=1.2, label="Mediaan zorggroep")
    ax.plot(x, rows["rate"], color=PRACTICE, lw=2.0, marker="o", ms=3.5, label="Deze praktijk")
    ax.set_xticks(x, [mpl_text(t) for t in rows["window_label"]], rotation=45, ha="right", fontsize=7)
    top = float(pd.concat([rows["rate"], rows["p90"]]).max()) if len(rows) else 0.0
    decimals = 0 if top >= 20 else 1
    ax.yaxis.set_major_formatter(
        lambda y, _p: f"{y:,.{decimals}f}".replace(",", "_").replace(".", ",").replace("_", "."))
    ax.tick_params(axis="y", labelsize=8)
    ax.set_ylabel(mpl_text(ylabel), fontsize=8)
    ax.set_title(mpl_text(title), loc="left", fontsize=10)
    ax.set_ylim(bottom=0)


def trend_band(rows: pd.DataFrame, title: str, ylabel: str):
    """A rate over the last quarters (rolling years): the care group's P10-P90 as a band, its
    median as a grey line, the practice in blue (as OpenPrescribing draws a practice over its
    peers' deciles). ``rows``: window_label, rate, median, p10, p90 in time order."""
    use_house_style()
    fig, ax = plt.subplots(figsize=(3.9, 2.5))
    _trend_axes(ax, rows, title, ylabel)
    return fig


def trend_grid(panels: list[tuple[pd.DataFrame, str, str]], columns: int = 2):
    """Several ``trend_band`` panels as one figure (small multiples, each with its own y axis),
    the legend once below: ``panels`` is a list of (rows, title, ylabel)."""
    use_house_style()
    n_rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(8.0, 2.55 * n_rows + 0.4), squeeze=False)
    for ax, (rows, title, ylabel) in zip(axes.flat, panels):
        _trend_axes(ax, rows, title, ylabel)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, fontsize=8)
    # a fixed grid instead of the tight layout engine, which re-measures every label of six
    # axes on each draw (half of this figure's time); the saved SVG is cropped to its content
    fig.set_layout_engine("none")
    fig.subplots_adjust(left=0.09, right=0.99, top=1 - 0.3 / fig.get_figheight(),
                        bottom=0.95 / fig.get_figheight(), hspace=0.75, wspace=0.3)
    return fig


def pyramid_compare(own: pd.DataFrame, reference: pd.DataFrame, order: list[str]):
    """The practice's age/sex make-up (bars, % of its patient-years) against the care group's
    (black outline). ``own`` and ``reference``: age_band, sex (M/V), share (percent)."""
    use_house_style()
    fig, ax = plt.subplots(figsize=(8.0, 3.0))
    y = np.arange(len(order))

    def side(df, sex):
        return df[df["sex"] == sex].set_index("age_band")["share"].reindex(order, fill_value=0).values

    ax.barh(y, -side(own, "M"), color="#5b8db8", height=0.7, label="Mannen (praktijk)")
    ax.barh(y, side(own, "V"), color="#d98c6b", height=0.7, label="Vrouwen (praktijk)")
    ax.barh(y, -side(reference, "M"), height=0.7, fill=False, edgecolor="#1d2430", lw=1.0, label="Zorggroep")
    ax.barh(y, side(reference, "V"), height=0.7, fill=False, edgecolor="#1d2430", lw=1.0)
    ax.set_yticks(y, order)
    m = max(np.max(side(own, "M")), np.max(side(own, "V")), np.max(side(reference, "M")),
            np.max(side(reference, "V"))) * 1.15
    ax.set_xlim(-m, m)
    ax.xaxis.set_major_formatter(lambda x, _p: f"{abs(x):.0f}%")
    ax.set_xlabel("Aandeel van de patiëntjaren (mannen links, vrouwen rechts)")
    ax.set_title("Leeftijdsopbouw tegenover de zorggroep", loc="left")
    ax.legend(loc="lower right", frameon=False, fontsize=8)
    return fig


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
