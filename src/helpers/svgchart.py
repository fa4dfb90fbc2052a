"""A small SVG chart writer for the praktijkspiegel's figures: text in, SVG text out.

Why not matplotlib for these: a mirror notebook draws twelve figures, and inside a kernel
matplotlib spends 0.2-0.5 s on each (laying out and measuring every label on each draw),
which made the notebook take about four seconds. The mirror's charts are few and simple
(bars, lines, bands, markers on a linear or log axis), so this module writes their SVG
directly, in about a millisecond each, with the same house colours. The SVG is plain
vector text: crisp when printed, its words searchable, and the same input gives the same
bytes (every number is written with fixed decimals, nothing random, no date).

Every text that lands in a chart (titles, labels, tick labels) goes through
``helpers.escape.svg_text``; nothing here writes a script or an event attribute, and the
SVG carries no external reference, so a chart works offline and cannot run anything.

>>> c = Chart(200, 100)
>>> p = c.panel(40, 10, 150, 70, Scale(0, 10), Scale(0, 1))
>>> p.line([0, 10], [0, 1], color="#000")
>>> c.text(5, 8, "<b>&", size=9)
>>> svg = c.svg()
>>> svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"') and "&lt;b&gt;&amp;" in svg
True
>>> "<script" in svg
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .escape import svg_text

FONT_FAMILY = "'DejaVu Sans', Arial, Helvetica, 'Liberation Sans', sans-serif"
#: mean advance width of DejaVu Sans per em (for label margins; generous rather than tight)
CHAR_EM = 0.58


def text_width(s: str, size: float) -> float:
    """An estimate of the width in pixels of ``s`` set at ``size`` px (for margins only)."""
    return len(s) * size * CHAR_EM


def _n(v: float) -> str:
    """A coordinate with two decimals at most: fixed, so the bytes never drift."""
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def nl_tick(v: float, decimals: int = 0) -> str:
    """A tick label in Dutch notation: ``1.250`` and ``0,5``.

    >>> nl_tick(1250), nl_tick(0.5, 1), nl_tick(2.0, 1)
    ('1.250', '0,5', '2,0')
    """
    return f"{v:,.{decimals}f}".replace(",", "_").replace(".", ",").replace("_", ".")


@dataclass
class Scale:
    """A linear or log mapping from data ``lo..hi`` onto pixels (set by ``Chart.panel``)."""

    lo: float
    hi: float
    log: bool = False
    a: float = 0.0
    b: float = 1.0

    def _t(self, v: float) -> float:
        return math.log(v) if self.log else v

    def __call__(self, v: float) -> float:
        if self.log:
            v = max(v, 1e-12)
        t0, t1 = self._t(self.lo), self._t(self.hi)
        if t1 == t0:
            return (self.a + self.b) / 2
        return self.a + (self._t(v) - t0) / (t1 - t0) * (self.b - self.a)

    def clip(self, v: float) -> float:
        """``v`` inside the domain (a line leaving the chart is cut at its edge)."""
        return min(max(v, min(self.lo, self.hi)), max(self.lo, self.hi))


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering ``lo..hi`` (about ``n`` of them).

    >>> nice_ticks(0, 7.3)
    [0.0, 2.0, 4.0, 6.0, 8.0]
    >>> nice_ticks(0, 430), nice_ticks(0, 430, 6)
    ([0.0, 200.0, 400.0, 600.0], [0.0, 100.0, 200.0, 300.0, 400.0, 500.0])
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while t < hi + step * 0.999:
        ticks.append(float(round(t, 10)))
        t += step
    return ticks


@dataclass
class Panel:
    """One plotting area of a ``Chart``: data coordinates through ``x`` and ``y``."""

    chart: "Chart"
    x0: float
    y0: float
    w: float
    h: float
    x: Scale
    y: Scale

    # --- marks (each appends SVG elements to the chart, clipped to the panel) -------------
    def _add(self, element: str) -> None:
        self.chart.body.append(element)

    def line(self, xs, ys, color: str, width: float = 1.0, dash: str | None = None) -> None:
        """A polyline through the points; gaps (NaN) split it."""
        runs, run = [], []
        for xv, yv in zip(xs, ys):
            if xv is None or yv is None or not (math.isfinite(xv) and math.isfinite(yv)):
                if run:
                    runs.append(run)
                run = []
                continue
            run.append(f"{_n(self.x(self.x.clip(xv)))},{_n(self.y(self.y.clip(yv)))}")
        if run:
            runs.append(run)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        for r in runs:
            if len(r) > 1:
                self._add(f'<polyline points="{" ".join(r)}" fill="none" stroke="{color}" '
                          f'stroke-width="{_n(width)}"{extra} stroke-linejoin="round"/>')

    def band(self, xs, lo, hi, color: str) -> None:
        """A filled band between ``lo`` and ``hi`` along ``xs`` (NaN points are skipped)."""
        pts = [(xv, a, b) for xv, a, b in zip(xs, lo, hi)
               if all(v is not None and math.isfinite(v) for v in (xv, a, b))]
        if len(pts) < 2:
            return
        top = [f"{_n(self.x(xv))},{_n(self.y(self.y.clip(b)))}" for xv, _a, b in pts]
        bottom = [f"{_n(self.x(xv))},{_n(self.y(self.y.clip(a)))}" for xv, a, _b in reversed(pts)]
        self._add(f'<polygon points="{" ".join(top + bottom)}" fill="{color}" stroke="none"/>')

    def hseg(self, yv: float, x1: float, x2: float, color: str, width: float = 1.0) -> None:
        """A horizontal segment at data ``yv`` from data ``x1`` to ``x2`` (clipped)."""
        if not all(math.isfinite(v) for v in (yv, x1, x2)):
            return
        a, b = self.x(self.x.clip(x1)), self.x(self.x.clip(x2))
        yy = self.y(yv)
        self._add(f'<line x1="{_n(a)}" y1="{_n(yy)}" x2="{_n(b)}" y2="{_n(yy)}" stroke="{color}" '
                  f'stroke-width="{_n(width)}"/>')

    def vseg(self, xv: float, y1: float, y2: float, color: str, width: float = 1.0) -> None:
        """A vertical segment at data ``xv`` from data ``y1`` to ``y2`` (a target's tick)."""
        if not all(math.isfinite(v) for v in (xv, y1, y2)):
            return
        xx = self.x(xv)
        self._add(f'<line x1="{_n(xx)}" y1="{_n(self.y(y1))}" x2="{_n(xx)}" y2="{_n(self.y(y2))}" '
                  f'stroke="{color}" stroke-width="{_n(width)}"/>')

    def vline(self, xv: float, color: str, width: float = 1.0) -> None:
        xx = self.x(xv)
        self._add(f'<line x1="{_n(xx)}" y1="{_n(self.y0)}" x2="{_n(xx)}" y2="{_n(self.y0 + self.h)}" '
                  f'stroke="{color}" stroke-width="{_n(width)}"/>')

    def hline(self, yv: float, color: str, width: float = 1.0) -> None:
        yy = self.y(yv)
        self._add(f'<line x1="{_n(self.x0)}" y1="{_n(yy)}" x2="{_n(self.x0 + self.w)}" y2="{_n(yy)}" '
                  f'stroke="{color}" stroke-width="{_n(width)}"/>')

    def hbar(self, yc: float, x1: float, x2: float, height: float, fill: str = "none",
             stroke: str | None = None, width: float = 1.0) -> None:
        """A horizontal bar centred on row ``yc`` (data), ``height`` in data units."""
        a, b = sorted((self.x(x1), self.x(x2)))
        top = self.y(yc - height / 2)
        bot = self.y(yc + height / 2)
        top, bot = min(top, bot), max(top, bot)
        st = f' stroke="{stroke}" stroke-width="{_n(width)}"' if stroke else ""
        self._add(f'<rect x="{_n(a)}" y="{_n(top)}" width="{_n(b - a)}" height="{_n(bot - top)}" '
                  f'fill="{fill}"{st}/>')

    def markers(self, xs, ys, shape: str, size: float, color: str, edge: str | None = None) -> None:
        """Dots (``circle``) or diamonds (``diamond``) of ``size`` px across."""
        for xv, yv in zip(xs, ys):
            if xv is None or yv is None or not (math.isfinite(xv) and math.isfinite(yv)):
                continue
            self.chart.marker(self.x(xv), self.y(yv), shape, size, color, edge)

    def text(self, xv: float, yv: float, s: str, **kw) -> None:
        self.chart.text(self.x(xv), self.y(yv), s, **kw)

    # --- axes ------------------------------------------------------------------------------
    def frame(self, grid_x=(), grid_y=()) -> None:
        """Light grid lines at the given data values and the two axis lines (left, bottom)."""
        for v in grid_x:
            xx = self.x(v)
            self._add(f'<line x1="{_n(xx)}" y1="{_n(self.y0)}" x2="{_n(xx)}" y2="{_n(self.y0 + self.h)}" '
                      f'stroke="#e3e8ee" stroke-width="1"/>')
        for v in grid_y:
            yy = self.y(v)
            self._add(f'<line x1="{_n(self.x0)}" y1="{_n(yy)}" x2="{_n(self.x0 + self.w)}" y2="{_n(yy)}" '
                      f'stroke="#e3e8ee" stroke-width="1"/>')
        bottom = self.y0 + self.h
        self._add(f'<path d="M{_n(self.x0)},{_n(self.y0)} V{_n(bottom)} H{_n(self.x0 + self.w)}" '
                  f'fill="none" stroke="#9aa5b1" stroke-width="1"/>')

    def xticks(self, values, labels, size: float = 11, rotate: bool = False) -> None:
        bottom = self.y0 + self.h
        for v, lab in zip(values, labels):
            xx = self.x(v)
            if rotate:
                self.chart.text(xx + 3, bottom + 8, lab, size=size, anchor="end", rotate=-45)
            else:
                self.chart.text(xx, bottom + 5 + size, lab, size=size, anchor="middle")

    def yticks(self, values, labels, size: float = 11) -> None:
        for v, lab in zip(values, labels):
            self.chart.text(self.x0 - 6, self.y(v) + size * 0.35, lab, size=size, anchor="end")


@dataclass
class Chart:
    """One SVG document of ``width`` x ``height`` px holding panels, marks and text."""

    width: float
    height: float
    body: list[str] = field(default_factory=list)

    def panel(self, x0: float, y0: float, w: float, h: float, x: Scale, y: Scale) -> Panel:
        x.a, x.b = x0, x0 + w
        y.a, y.b = y0 + h, y0           # data up is screen up
        return Panel(self, x0, y0, w, h, x, y)

    def text(self, x: float, y: float, s: str, size: float = 11, anchor: str = "start",
             color: str = "#1c2833", weight: str | None = None, rotate: float | None = None,
             italic: bool = False) -> None:
        attrs = [f'x="{_n(x)}"', f'y="{_n(y)}"', f'font-size="{_n(size)}"']
        if anchor != "start":
            attrs.append(f'text-anchor="{anchor}"')
        if color != "#1c2833":
            attrs.append(f'fill="{color}"')
        if weight:
            attrs.append(f'font-weight="{weight}"')
        if italic:
            attrs.append('font-style="italic"')
        if rotate is not None:
            attrs.append(f'transform="rotate({_n(rotate)} {_n(x)} {_n(y)})"')
        self.body.append(f'<text {" ".join(attrs)}>{svg_text(s)}</text>')

    def marker(self, x: float, y: float, shape: str, size: float, color: str, edge: str | None = None) -> None:
        r = size / 2
        st = f' stroke="{edge}" stroke-width="0.8"' if edge else ""
        if shape == "diamond":
            self.body.append(f'<path d="M{_n(x)},{_n(y - r)} L{_n(x + r)},{_n(y)} L{_n(x)},{_n(y + r)} '
                             f'L{_n(x - r)},{_n(y)} Z" fill="{color}"{st}/>')
        else:
            self.body.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(r)}" fill="{color}"{st}/>')

    def legend(self, x: float, y: float, items: list[tuple[str, str, str]], size: float = 10,
               anchor: str = "start") -> None:
        """A one-line legend at (x, y): ``items`` of (kind, colour, label), kind one of
        ``line``, ``dash``, ``band``, ``circle``, ``diamond``, ``outline``; ``anchor="end"``
        puts its right edge at x, ``"middle"`` its centre."""
        widths = [22 + text_width(label, size) + 14 for _k, _c, label in items]
        cx = x - {"end": sum(widths), "middle": sum(widths) / 2}.get(anchor, 0)
        for (kind, color, label), w in zip(items, widths):
            mid = y - size * 0.35
            if kind in ("line", "dash"):
                dash = ' stroke-dasharray="5 3"' if kind == "dash" else ""
                self.body.append(f'<line x1="{_n(cx)}" y1="{_n(mid)}" x2="{_n(cx + 16)}" y2="{_n(mid)}" '
                                 f'stroke="{color}" stroke-width="2"{dash}/>')
            elif kind in ("band", "outline"):
                fill, st = (color, "") if kind == "band" else ("none", f' stroke="{color}" stroke-width="1"')
                self.body.append(f'<rect x="{_n(cx)}" y="{_n(mid - 5)}" width="16" height="10" fill="{fill}"{st}/>')
            else:
                self.marker(cx + 8, mid, kind, 9 if kind == "diamond" else 7, color)
            self.text(cx + 22, y, label, size=size)
            cx += w

    def svg(self) -> str:
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(self.width)}" height="{_n(self.height)}" '
                f'viewBox="0 0 {_n(self.width)} {_n(self.height)}" font-family="{FONT_FAMILY}" '
                f'role="img" style="max-width:100%;height:auto">')
        return "\n".join([head, f'<rect width="{_n(self.width)}" height="{_n(self.height)}" fill="white"/>',
                          *self.body, "</svg>"])

    # shown by IPython/Jupyter as image/svg+xml, like a matplotlib figure
    def _repr_svg_(self) -> str:
        return self.svg()
