"""Executed notebook -> a slide deck for the consultant's practice visit (``<report>.slides.html``).

The deck is built from the notebook the run already executed (no second execution; a few
hundredths of a second): the notebook's H2 markdown cells are the sections, the outputs of
the cells under each heading its content. Each section is one slide with its first output
(a table, a chart, or the key sentence), the other outputs are vertical sub-slides, one per
table or chart. A heading-only Markdown output (``### DM2``) captions the output after it.
The practice and quarter are on every slide (a footer outside the slides), the report's key
figures on the title slide, the provenance on the last.

Offline and self-contained like the report: reveal.js (vendored from its npm package in
``helpers/static/reveal/``, see VERSION there) is inlined with its stylesheet, nothing is
fetched, and the Content-Security-Policy lets only the deck's own two scripts run (by
hash). Cell outputs pass ``html.strip_scripts`` and ``strip_external`` as in the HTML report;
every delivery text this module writes itself goes through ``helpers.escape``. The same
notebook gives the same bytes (apart from the provenance's generation time, fixed by
``SOURCE_DATE_EPOCH``).

>>> import nbformat
>>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## 1. Samenvatting")])
>>> nb.cells[0].outputs = []
>>> [s.heading for s in deck_sections(nb)]
['1. Samenvatting']
"""

from __future__ import annotations

import html as _html

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .. import escape
from .html import _drop_diagnostics, generated_at, strip_external, strip_scripts
from ..suppression import RULE_TEXT

STATIC = Path(__file__).resolve().parent.parent / "static" / "reveal"

#: rows of a table shown on a slide (of a wide one: six columns or more); the rest is in the
#: report (and the worklists)
MAX_TABLE_ROWS = 10
MAX_WIDE_ROWS = 6
#: a table of at most this many rows shares the section's first slide with the chart after it
LEAD_ROWS = 5
#: a Markdown output longer than this is reading matter for the report, not for a slide
MAX_TEXT_CHARS = 1200

_H2_CELL = re.compile(r"^##\s+(.+?)\s*#*\s*$", re.M)
_HEADING_ONLY = re.compile(r"^\s*(#{1,6})\s+(.+?)\s*$")
_SVG_START = re.compile(r"<svg\b", re.I)
_SVG_ROOT = re.compile(r"<svg\b[^>]*>", re.I)
_SIZE_ATTR = re.compile(r'\s(?:width|height)="[^"]*"')
_TBODY = re.compile(r"(<tbody[^>]*>)(.*?)(</tbody\s*>)", re.I | re.S)
_ROW_END = re.compile(r"</tr\s*>", re.I)
_IMPORT = re.compile(r"@import\s+[^;]*;", re.I)
_SOURCE_MAP = re.compile(r"/[/*]#\s*sourceMappingURL=[^\n*]*(\*/)?")


@dataclass
class Item:
    """One output on a slide: ``kind`` table, figure or text; ``html`` its markup (already
    stripped of script); ``caption`` the heading-only output before it."""
    kind: str
    html: str
    caption: str = ""


@dataclass
class Section:
    """An H2 heading of the notebook and the outputs of the cells under it."""
    heading: str
    items: list[Item] = field(default_factory=list)


def _markdown_html(text: str) -> str:
    from nbconvert.filters.markdown import markdown2html_mistune
    return markdown2html_mistune(text)


def _output_item(output, caption: str) -> tuple[Item | None, str]:
    """The slide item of one cell output and the caption still pending after it."""
    data = output.get("data", {}) if output.get("output_type") in ("display_data", "execute_result") else {}
    if "image/svg+xml" in data:
        svg = data["image/svg+xml"]
        svg = "".join(svg) if isinstance(svg, list) else svg
        m = _SVG_START.search(svg)
        if not m:
            return None, caption
        svg = svg[m.start():]
        # the slide sizes the chart: without its own width and height it scales to the box
        root = _SVG_ROOT.match(svg)
        svg = _SIZE_ATTR.sub("", root.group(0)) + svg[root.end():] if root and "viewBox" in root.group(0) else svg
        return Item("figure", svg, caption), ""
    if "image/png" in data:
        png = str(data["image/png"]).replace("\n", "")
        if re.fullmatch(r"[A-Za-z0-9+/=]+", png):
            return Item("figure", f'<img alt="" src="data:image/png;base64,{png}">', caption), ""
        return None, caption
    if "text/html" in data:
        page = data["text/html"]
        page = "".join(page) if isinstance(page, list) else page
        return Item("table" if "<table" in page.lower() else "text", page, caption), ""
    if "text/markdown" in data:
        text = data["text/markdown"]
        text = "".join(text) if isinstance(text, list) else text
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        if not lines:
            return None, caption
        headings = [_HEADING_ONLY.match(ln) for ln in lines]
        if all(headings) and len(lines) == 1 and len(headings[0].group(1)) >= 3:
            return None, headings[0].group(2)        # ``### DM2``: captions the next output
        if headings[0] and len(headings[0].group(1)) <= 2:
            return None, caption                     # the report's own title block (``# ...``)
        if len(text) > MAX_TEXT_CHARS:
            return None, caption
        return Item("text", _markdown_html(text), caption), ""
    return None, caption


def deck_sections(nb) -> list[Section]:
    """The notebook's sections (H2 markdown cells) with their outputs; what comes before the
    first H2 heading is the section ``""`` (the report's introduction)."""
    nb = _drop_diagnostics(nb)
    sections = [Section("")]
    caption = ""
    for cell in nb.cells:
        if cell.get("cell_type") == "markdown":
            for m in _H2_CELL.finditer(cell.get("source", "")):
                sections.append(Section(m.group(1).strip()))
                caption = ""
            continue
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            item, caption = _output_item(output, caption)
            if item is not None:
                sections[-1].items.append(item)
    return [s for s in sections if s.heading or s.items]


def _shorten_table(page: str, limit: int = MAX_TABLE_ROWS) -> str:
    """A table with more than ``limit`` body rows keeps the first ones and says how many more
    there are (its cells were escaped where the table was made)."""
    m = _TBODY.search(page)
    if not m:
        return page
    rows = [r for r in _ROW_END.split(m.group(2)) if r.strip()]
    if len(rows) <= limit:
        return page
    kept = "".join(r + "</tr>" for r in rows[:limit])
    more = len(rows) - limit
    note = (f'<p class="spiegel-more">… en nog {more} {"rij" if more == 1 else "rijen"}: '
            f"zie het rapport.</p>")
    return page[:m.start()] + m.group(1) + kept + m.group(3) + page[m.end():] + note


def _item_html(item: Item) -> str:
    head = re.search(r"<thead.*?</thead\s*>", item.html, re.I | re.S) if item.kind == "table" else None
    wide = " spiegel-wide" if head and len(re.findall(r"<th\b", head.group(0), re.I)) >= 6 else ""
    body = _shorten_table(item.html, MAX_WIDE_ROWS if wide else MAX_TABLE_ROWS) if item.kind == "table" else item.html
    body = strip_scripts(strip_external(body))   # per output: a chart without anything to strip is not walked
    # a caption comes from a Markdown heading, whose values the report escaped for Markdown
    # (character references): unescaped once, then escaped for HTML, so none shows literally
    caption = f"<h3>{escape.html_text(_html.unescape(item.caption))}</h3>" if item.caption else ""
    return f'{caption}<div class="spiegel-item spiegel-{item.kind}{wide}">{body}</div>'


def _slide(kicker: str, heading: str, inner: str, extra_class: str = "") -> str:
    kick = f'<p class="spiegel-kicker">{escape.html_text(kicker)}</p>' if kicker else ""
    cls = f' class="{extra_class}"' if extra_class else ""
    return f"<section{cls}>{kick}<h2>{escape.html_text(heading)}</h2>{inner}</section>"


def _title_slide(title: str, subtitle: str, figures: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{escape.html_text(label)}</th><td class=\"num\">{escape.html_text(value)}</td></tr>"
                   for label, value in figures)
    table = f'<table class="spiegel-keyfigures"><tbody>{rows}</tbody></table>' if rows else ""
    return (f'<section class="spiegel-title"><h1>{escape.html_text(title)}</h1>'
            f'<p class="spiegel-subject">{escape.html_text(subtitle)}</p>{table}</section>')


def _provenance_slide(provenance: dict) -> str:
    from .html import PROVENANCE_LABELS
    values = dict(provenance)
    values.setdefault("generated_at", generated_at())
    values.setdefault("rule", RULE_TEXT)
    rows = "".join(f"<tr><th>{escape.html_text(label)}</th><td>{escape.html_text(values.get(key) or '–')}</td></tr>"
                   for key, label in PROVENANCE_LABELS)
    return (f'<section class="spiegel-provenance"><h2>Herkomst</h2>'
            f'<table><tbody>{rows}</tbody></table></section>')


def _rows(item: Item) -> int:
    m = _TBODY.search(item.html)
    return len([r for r in _ROW_END.split(m.group(2)) if r.strip()]) if m else 0


def _lead(items: list[Item]) -> tuple[list[Item], list[Item]]:
    """The section's first slide: its first output, and with it the section's first chart when
    that output is a key sentence or a small table (the key figure and its chart together)."""
    first = items[0]
    small = (first.kind == "text" and len(first.html) <= 400) or (first.kind == "table" and _rows(first) <= LEAD_ROWS)
    chart = next((i for i, item in enumerate(items[1:], 1) if item.kind == "figure" and not item.caption), None)
    if small and chart is not None and (chart == 1 or first.kind == "text"):
        return [first, items[chart]], items[1:chart] + items[chart + 1:]
    return items[:1], items[1:]


def slides_markup(sections: list[Section]) -> str:
    """The deck's ``<section>`` elements for the sections (before the title and provenance)."""
    out = []
    for s in sections:
        if not s.items:
            continue
        heading = s.heading or "In het kort"
        lead, rest = _lead(s.items)
        slides = [_slide("", heading, "".join(_item_html(i) for i in lead), "spiegel-lead" if len(lead) > 1 else "")]
        slides += [_slide(heading if item.caption else "", item.caption or heading,
                          _item_html(Item(item.kind, item.html))) for item in rest]
        out.append(slides[0] if len(slides) == 1 else f"<section>{''.join(slides)}</section>")
    return "".join(out)


DECK_CSS = r"""
:root { --r-main-font: "DejaVu Sans", "Segoe UI", Arial, sans-serif; --r-heading-font: "DejaVu Sans", Arial, sans-serif;
        --r-main-font-size: 30px; --r-main-color: #1d2430; --r-heading-color: #1f5f8b;
        --r-heading-text-transform: none; --r-link-color: #1f5f8b; --r-background-color: #fff; }
.reveal { color: #1d2430; }
.reveal .slides { text-align: left; }
.reveal .slides section { padding: 6px 24px 60px; height: 100%; box-sizing: border-box; }
.reveal h1 { font-size: 64px; color: #1f5f8b; margin: 150px 0 20px; text-transform: none; }
.reveal h2 { font-size: 44px; margin: 0 0 16px; text-transform: none; line-height: 1.15; }
.reveal h3 { font-size: 30px; margin: 0 0 10px; color: #1d2430; text-transform: none; }
.reveal .spiegel-kicker { font-size: 22px; color: #5b6675; margin: 0 0 4px; text-transform: none; }
.reveal .spiegel-subject { font-size: 36px; color: #1d2430; margin: 0 0 36px; }
.reveal p, .reveal li { font-size: 28px; line-height: 1.4; }
.reveal ul { margin-left: 1em; }
.reveal .spiegel-item { margin: 0 0 12px; }
.reveal .spiegel-figure { text-align: center; }
.reveal .spiegel-figure svg { width: 100% !important; height: 540px !important; max-width: 100%; display: block;
                              margin: 0 auto; }
.reveal .spiegel-figure img { max-width: 100%; max-height: 540px; width: auto; height: auto; margin: 0 auto;
                              display: block; background: #fff; box-shadow: none; border: 0; }
.reveal .spiegel-lead .spiegel-figure svg { height: 360px !important; }
.reveal .spiegel-lead .spiegel-figure img { max-height: 360px; }
.reveal a.anchor-link { display: none; }
.reveal table { border-collapse: collapse; font-size: 21px; margin: 6px 0; }
.reveal table th, .reveal table td { border: 0; border-bottom: 1px solid #d9dee5; padding: 5px 12px; text-align: left;
                                     vertical-align: top; white-space: normal; }
.reveal table thead th { border-bottom: 2px solid #1d2430; font-weight: 600; vertical-align: bottom; }
.reveal .spiegel-wide table { font-size: 18px; }
.reveal .spiegel-wide table th, .reveal .spiegel-wide table td { padding: 3px 8px; }
.reveal .spiegel-item table { max-width: 100%; }
.reveal table th.num, .reveal table td.num { text-align: right; font-variant-numeric: tabular-nums; }
.reveal .spiegel-more { font-size: 20px; color: #5b6675; }
.reveal .spiegel-keyfigures { font-size: 30px; margin: 10px 0 0; }
.reveal .spiegel-keyfigures th { font-weight: 400; padding: 6px 48px 6px 0; }
.reveal .spiegel-keyfigures td { font-weight: 700; color: #1f5f8b; }
.reveal .spiegel-provenance table { font-size: 20px; }
.reveal .spiegel-empty { color: #5b6675; font-style: italic; }
.reveal blockquote { width: auto; margin: 10px 0; padding: 10px 18px; border-left: 6px solid #d98e04;
                     background: #fff7e6; box-shadow: none; font-style: normal; font-size: 26px; }
.spiegel-deck-footer { position: absolute; left: 24px; bottom: 14px; z-index: 30; font-size: 18px; color: #5b6675;
                       font-family: "DejaVu Sans", Arial, sans-serif; }
.spiegel-deck-footer strong { color: #1f5f8b; }
.reveal .slide-number { font-size: 16px; background: none; color: #5b6675; top: 12px; right: 16px; bottom: auto; }
"""

INIT_JS = ("Reveal.initialize({hash: false, history: false, respondToHashChanges: false, controls: true, "
           "progress: true, slideNumber: 'c/t', center: false, transition: 'none', backgroundTransition: 'none', "
           "width: 1280, height: 720, margin: 0.03, plugins: []});")


@lru_cache(maxsize=1)
def reveal_assets() -> tuple[str, str]:
    """reveal.js and its stylesheets (``static/reveal/``) as the deck inlines them: the theme's
    font imports and the source-map comment removed, so nothing points at the network."""
    js = _SOURCE_MAP.sub("", (STATIC / "reveal.js").read_text(encoding="utf-8"))
    css = "\n".join(_IMPORT.sub("", (STATIC / name).read_text(encoding="utf-8"))
                    for name in ("reveal.css", "theme-simple.css"))
    # a script element inside an inline script would end it early
    if "</script" in js.lower():
        raise ValueError(f"{STATIC / 'reveal.js'} contains '</script': it cannot be inlined")
    return js, css


def render_slides(nb, title: str, subtitle: str = "", provenance: dict | None = None,
                  figures: list[tuple[str, str]] | None = None) -> str:
    """The executed notebook ``nb`` as one self-contained reveal.js deck (HTML text).

    ``subtitle`` (practice · quarter) is on every slide; ``figures`` ((Dutch label, shown
    value), ...) go on the title slide."""
    meta = nb.get("metadata", {}).get("spiegel", {}) if hasattr(nb, "get") else {}
    title = escape.single_line(meta.get("title") or title)
    subtitle = escape.single_line(subtitle)
    js, css = reveal_assets()
    body = slides_markup(deck_sections(nb))
    slides = _title_slide(title, subtitle, figures or []) + body + _provenance_slide(provenance or {})
    page_title = f"{title} · {subtitle}" if subtitle else title
    footer = f'<div class="spiegel-deck-footer"><strong>{escape.html_text(subtitle)}</strong> · {escape.html_text(title)}</div>'
    return ("<!DOCTYPE html>\n"
            f'<html lang="nl"><head><meta charset="utf-8">{escape.csp_meta(js, INIT_JS)}'
            '<meta name="viewport" content="width=device-width, initial-scale=1.0">'
            f'<meta name="generator" content="spiegel"><title>{escape.html_text(page_title)}</title>'
            f"<style>{css}</style><style>{DECK_CSS}</style></head>"
            f'<body><div class="reveal"><div class="slides">{slides}</div>{footer}</div>'
            f"<script>{js}</script><script>{INIT_JS}</script></body></html>\n")
