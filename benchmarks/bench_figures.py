"""The figures of one praktijkspiegel and one HIS-analyse, drawn as the notebooks embed them
(SVG, cropped to their content), in the house style against matplotlib's SVG defaults.

The house style writes text as SVG text and keeps titles at a fixed height
(``helpers.plots.use_house_style``); matplotlib's defaults write each glyph as a path and move
every title clear of the tick labels on each draw. Prints CPU seconds (best of three) per
figure group, the ratio and the SVG size; nothing is asserted. Not part of the test suite.

    .venv/bin/python benchmarks/bench_figures.py [--cube data/cube/2026Q3] [--practice AGB]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402

SECTIONS = ("contacten", "verwijzingen", "voorschrijven", "diagnostiek", "veelgebruikers")


def figure_groups(cube: Path, agb: str) -> dict:
    from helpers import plots
    from helpers.reports import his_analyse as his
    from helpers.reports import praktijkspiegel as ps

    data = ps.load(cube, agb)
    hdata = his.load(cube, agb)
    return {
        "spiegel: pyramid": [lambda: plots.pyramid_compare(*ps.pyramid_frames(data))],
        "spiegel: ratio dots (5)": [lambda s=s: plots.ratio_dots(ps.section_dots(data, s), s) for s in SECTIONS],
        "spiegel: funnels (5)": [lambda s=s: plots.funnel(**ps.funnel_args(data, s)) for s in SECTIONS],
        "spiegel: trends (1 x 6 panels)": [lambda: plots.trend_grid(ps.trend_panels(data))],
        "his-analyse: pyramid": [lambda: plots.pyramid(hdata.pyramid)],
        "his-analyse: indicator strips": [lambda p=p: plots.indicator_strip(*his.indicator_points(hdata, p))
                                          for p in his.programmes(hdata)],
    }


def draw(makers) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(3):
        t0, size = time.process_time(), 0
        for make in makers:
            fig = make()
            buf = io.BytesIO()
            fig.savefig(buf, format="svg", bbox_inches="tight")
            plt.close(fig)
            size += len(buf.getvalue())
        best = min(best, time.process_time() - t0)
    return best, size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cube", default="data/cube/2026Q3")
    ap.add_argument("--practice", default=None, help="AGB code (default: the cube's first practice)")
    args = ap.parse_args(argv)
    from helpers import plots
    from helpers.cube import read_slice

    cube = Path(args.cube)
    agb = args.practice or str(read_slice(cube, "practices")["practice_agb"].iloc[0])
    groups = figure_groups(cube, agb)
    results = {}
    original = plots.use_house_style
    for style in ("matplotlib defaults", "house style"):
        # every plotting function calls use_house_style first: patch it to add the style
        plots.use_house_style = lambda style=style: _styled(original, style)
        try:
            results[style] = {name: draw(makers) for name, makers in groups.items()}
        finally:
            plots.use_house_style = original
    print(f"figures of practice {agb} (CPU s, best of 3)")
    print(f"{'':34s} {'mpl defaults':>13s} {'house style':>12s} {'ratio':>6s} {'SVG KB':>14s}")
    tot = [0.0, 0.0]
    for name in groups:
        (a, sa), (b, sb) = results["matplotlib defaults"][name], results["house style"][name]
        tot[0] += a
        tot[1] += b
        print(f"{name:34s} {a:13.3f} {b:12.3f} {a / b:6.1f} {sa // 1024:6d} -> {sb // 1024:5d}")
    print(f"{'total':34s} {tot[0]:13.3f} {tot[1]:12.3f} {tot[0] / tot[1]:6.1f}")
    return 0


def _styled(original, style: str) -> None:
    original()
    if style == "matplotlib defaults":
        plt.rcParams.update({"svg.fonttype": "path", "axes.titley": None})


if __name__ == "__main__":
    raise SystemExit(main())
