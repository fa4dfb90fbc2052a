"""The figures of one praktijkspiegel and one HIS-analyse, drawn as the notebooks embed them
(SVG), three ways side by side: matplotlib with its defaults, matplotlib in the house style,
and (for the praktijkspiegel) the SVG writer the mirror uses now (``helpers.svgchart``).

The matplotlib versions of the mirror's figures are the ones the project used before the
SVG writer, read from git (``--before``, default commit e78d92c) so that the comparison is on
the same data in the same run. The house style writes text as SVG text and keeps titles at a
fixed height (``helpers.plots.use_house_style``); matplotlib's defaults write each glyph as a
path and move every title clear of the tick labels on each draw. Prints CPU seconds (best of
three) per figure group, the ratios and the SVG size; nothing is asserted. Not a test.

    .venv/bin/python benchmarks/bench_figures.py [--cube data/cube/2026Q3] [--practice AGB]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402

SECTIONS = ("contacten", "verwijzingen", "voorschrijven", "diagnostiek", "veelgebruikers")
ROOT = Path(__file__).resolve().parents[1]


def plots_before(commit: str):
    """``helpers.plots`` as it was at ``commit`` (matplotlib for every figure)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:src/helpers/plots.py"],
                         capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp(prefix="spiegel-bench-figures-")) / "plots_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("helpers.plots_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def figure_groups(cube: Path, agb: str, plots) -> dict:
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
            if hasattr(fig, "savefig"):
                buf = io.BytesIO()
                fig.savefig(buf, format="svg", bbox_inches="tight")
                plt.close(fig)
                size += len(buf.getvalue())
            else:
                size += len(fig._repr_svg_().encode())
        best = min(best, time.process_time() - t0)
    return best, size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cube", default="data/cube/2026Q3")
    ap.add_argument("--practice", default=None, help="AGB code (default: the cube's first practice)")
    ap.add_argument("--before", default="e78d92c", help="the commit whose matplotlib figures to compare")
    args = ap.parse_args(argv)
    from helpers import plots
    from helpers.cube import read_slice

    cube = Path(args.cube)
    agb = args.practice or str(read_slice(cube, "practices")["practice_agb"].iloc[0])
    old = plots_before(args.before)
    mpl_groups = figure_groups(cube, agb, old)
    now_groups = figure_groups(cube, agb, plots)
    results = {}
    original = old.use_house_style
    for style in ("matplotlib defaults", "house style"):
        # every plotting function calls use_house_style first: patch it to add the style
        old.use_house_style = lambda style=style: _styled(original, style)
        try:
            results[style] = {name: draw(makers) for name, makers in mpl_groups.items()}
        finally:
            old.use_house_style = original
    results["now"] = {name: draw(makers) for name, makers in now_groups.items()}
    print(f"figures of practice {agb} (CPU s, best of 3; matplotlib figures of commit {args.before})")
    print(f"{'':32s} {'mpl defaults':>12s} {'house style':>11s} {'now':>7s} {'defaults/now':>12s} "
          f"{'house/now':>9s} {'SVG KB def/house/now':>21s}")
    tot = [0.0, 0.0, 0.0]
    for name in mpl_groups:
        (a, sa), (b, sb), (c, sc) = (results[k][name] for k in ("matplotlib defaults", "house style", "now"))
        tot = [tot[0] + a, tot[1] + b, tot[2] + c]
        print(f"{name:32s} {a:12.3f} {b:11.3f} {c:7.3f} {a / max(c, 1e-6):12.1f} {b / max(c, 1e-6):9.1f} "
              f"{sa // 1024:7d}/{sb // 1024:5d}/{sc // 1024:5d}")
    print(f"{'total':32s} {tot[0]:12.3f} {tot[1]:11.3f} {tot[2]:7.3f} {tot[0] / tot[2]:12.1f} {tot[1] / tot[2]:9.1f}")
    return 0


def _styled(original, style: str) -> None:
    original()
    if style == "matplotlib defaults":
        plt.rcParams.update({"svg.fonttype": "path", "axes.titley": None})


if __name__ == "__main__":
    raise SystemExit(main())
