"""The slide deck (helpers.render.slides), the slides format in the batch and the portal's link,
and the interactive tables' markup (helpers.tables, helpers.render.html) without a browser;
tests/e2e/test_slides.py and test_interactive_tables.py open them in Chromium (this file has
its own name: pytest imports test files by their base name)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from helpers import batch as B
from helpers.batch.batchfile import At, parse_formats
from helpers.errors import ParameterError
from helpers.render.html import interactive_assets, render_html
from helpers.render.portal import quarter_page
from helpers.render.slides import (MAX_TABLE_ROWS, deck_sections, render_slides, reveal_assets,
                                   slides_markup)
from helpers.reports import REPORTS
from helpers.tables import INTERACTIVE_CLASS, INTERACTIVE_ROWS, to_html

HOSTILE = "<img src=x onerror=alert(1)>"


def _out(mime: str, value: str):
    return nbformat.v4.new_output("display_data", data={mime: value, "text/plain": ""})


def _notebook(rows: int = 3) -> nbformat.NotebookNode:
    """A report as the runner has it after execution: title block, H2 sections, outputs."""
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    table = to_html(pd.DataFrame({"Patiëntnummer": [HOSTILE] + [f"P{i:03d}" for i in range(rows - 1)],
                                  "Geboortejaar": range(1950, 1950 + rows)}), align_right=("Geboortejaar",))
    svg = ('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="400pt" height="200pt" '
           'viewBox="0 0 400 200"><rect width="10" height="10"/></svg>')
    cells = [code(), md("## 1. Samenvatting\n\nUitleg die in het rapport blijft."), code(), code(),
             md("## 2. Werklijsten"), code(), md("## Verantwoording\n\n- alleen tekst")]
    cells[0].outputs = [_out("text/markdown", "# HIS-analyse\n## De Linde · 3e kwartaal 2026"),
                        _out("text/markdown", "Deze analyse beschrijft **De Linde**.")]
    cells[2].outputs = [_out("text/html", to_html(pd.DataFrame({"Keten": ["DM2"], "In ketenzorg": ["125"]}))),
                        _out("image/svg+xml", svg)]
    cells[3].outputs = [_out("image/svg+xml", svg),
                        nbformat.v4.new_output("stream", name="stderr", text="a warning")]
    cells[5].outputs = [_out("text/markdown", "### Oproepen voor controle (40)"), _out("text/html", table),
                        _out("text/markdown", "### Aanmelden (0)"), _out("text/html", to_html(pd.DataFrame()))]
    return nbformat.v4.new_notebook(cells=cells, metadata={"spiegel": {"title": "HIS-analyse ketenzorg"}})


def test_sections_are_the_h2_cells_and_their_outputs():
    sections = deck_sections(_notebook())
    assert [s.heading for s in sections] == ["", "1. Samenvatting", "2. Werklijsten", "Verantwoording"]
    intro, summary, lists, method = sections
    assert [i.kind for i in intro.items] == ["text"], "the report's title block is not a slide"
    assert [i.kind for i in summary.items] == ["table", "figure", "figure"]
    assert summary.items[1].html.startswith("<svg") and 'width="400pt"' not in summary.items[1].html
    assert [(i.kind, i.caption) for i in lists.items] == [("table", "Oproepen voor controle (40)"),
                                                          ("text", "Aanmelden (0)")]
    assert method.items == []


def _stacks(markup: str) -> list[list[str]]:
    """Per top-level ``<section>``: the headings of its slides (one, or its vertical sub-slides)."""
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.depth, self.top, self.h2 = 0, [], False

        def handle_starttag(self, tag, attrs):
            if tag == "section":
                self.depth += 1
                if self.depth == 1:
                    self.top.append([])
            self.h2 = tag == "h2"

        def handle_endtag(self, tag):
            if tag == "section":
                self.depth -= 1
            self.h2 = False

        def handle_data(self, data):
            if self.h2:
                self.top[-1].append(data)
    p = P()
    p.feed(markup)
    return p.top


def test_one_slide_per_section_with_the_rest_as_vertical_sub_slides():
    markup = slides_markup(deck_sections(_notebook()))
    assert _stacks(markup) == [["In het kort"], ["1. Samenvatting", "1. Samenvatting"],
                               ["2. Werklijsten", "Aanmelden (0)"]], "no slide for a section without outputs"
    first = markup.split("</section>")[1]
    assert 'class="spiegel-lead"' in first and "<table" in first and "<svg" in first, \
        "the key table and the section's first chart share its first slide"
    assert markup.index("2. Werklijsten") < markup.index("Oproepen voor controle (40)") < markup.index("Aanmelden (0)"), \
        "a captioned table opens its section, with its caption"


def test_long_tables_are_cut_on_a_slide_and_cells_stay_escaped():
    page = render_slides(_notebook(rows=40), title="HIS-analyse", subtitle="De Linde · 3e kwartaal 2026")
    deck_table = re.search(r"Oproepen voor controle \(40\).*?</table>", page, re.S).group(0)
    assert deck_table.count("<tr>") == MAX_TABLE_ROWS + 1   # the header and the first rows
    assert f"nog {40 - MAX_TABLE_ROWS} rijen" in page
    assert HOSTILE not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_deck_is_self_contained_and_allows_only_its_own_scripts():
    page = render_slides(_notebook(), title="HIS-analyse", subtitle="De Linde · 3e kwartaal 2026",
                         provenance={"dataset": "demo"}, figures=[("Ingeschreven", "2.208")])
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 2 and scripts[0] == reveal_assets()[0]
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    hashes = re.findall(r"sha256-([A-Za-z0-9+/=]+)", csp)
    assert hashes == [base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in scripts]
    assert "default-src &#x27;none&#x27;" in csp
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", page), "nothing is loaded from anywhere"
    assert "@import" not in page and "sourceMappingURL" not in page
    assert page.count("De Linde · 3e kwartaal 2026") >= 2, "title slide and the footer on every slide"
    assert "Ingeschreven" in page and "2.208" in page and "Herkomst" in page


def test_same_notebook_same_deck(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    nb = _notebook()
    assert render_slides(nb, title="t", subtitle="s") == render_slides(nb, title="t", subtitle="s")


def test_delivery_text_in_title_and_footer_is_escaped():
    page = render_slides(_notebook(), title="HIS-analyse", subtitle=f"{HOSTILE}\n# kop · 3e kwartaal 2026")
    assert HOSTILE not in page and "\n# kop" not in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt; # kop") >= 2


# -- the format in the batch -------------------------------------------------------------


def test_slides_is_a_format_and_only_some_kinds_have_it(tmp_path):
    assert parse_formats(["HTML", "slides"], At(None, "--format"), []) == ["html", "slides"]
    problems = []
    parse_formats(["dia"], At(None, "--format"), problems)
    assert "html or pdf or slides" in problems[0].describe()
    assert "slides" in REPORTS["his_analyse"].formats and "slides" in REPORTS["praktijkspiegel"].formats
    assert "slides" not in REPORTS["betaalspecificatie"].formats
    practices = pd.DataFrame({"practice_agb": ["01000001"], "name": ["De Linde"], "region": ["West"],
                              "hagro": ["H1"], "extraction_date": pd.to_datetime(["2025-07-01"])})
    b = B.Batch(name="t", source="t.yaml", warehouse=tmp_path / "w.duckdb", outputs=tmp_path / "out",
                reports=["his_analyse", "betaalspecificatie"], quarters=["2025Q2"], formats=["html", "slides"])
    specs = {s.report: s for s in B.plan_runs(b, practices, {"01000001": "h"}, {}, ["01000001"], [], ["2025Q2"])}
    assert specs["his_analyse"].formats == ["html", "slides"]
    assert Path(specs["his_analyse"].files["slides"]).name == "his_analyse.slides.html"
    assert specs["betaalspecificatie"].formats == ["html"], "a kind without slides skips them, no error"
    assert "slides" not in specs["betaalspecificatie"].files
    no_slides = B.plan_runs(B.Batch(**{**b.__dict__, "formats": ["html"]}), practices, {"01000001": "h"}, {},
                            ["01000001"], [], ["2025Q2"])
    assert {s.report: s.cache_key for s in no_slides}["his_analyse"] != specs["his_analyse"].cache_key, \
        "asking for slides rebuilds the run, so the deck is written"


def test_a_batch_without_formats_keeps_html_and_pdf(tmp_path):
    f = tmp_path / "b.yaml"
    f.write_text("quarters: latest\n")
    assert B.load_batch(f).formats == ["html", "pdf"]
    f.write_text("quarters: latest\nformats: [slides, docx]\n")
    with pytest.raises(ParameterError, match="found 'docx'"):
        B.load_batch(f)


def test_the_portal_links_the_deck_as_presentatie(tmp_path):
    q = tmp_path / "2026Q3"
    (q / "01000001").mkdir(parents=True)
    outputs = {}
    for fmt, name in (("html", "his_analyse.html"), ("pdf", "his_analyse.pdf"), ("slides", "his_analyse.slides.html")):
        (q / "01000001" / name).write_text(fmt)
        outputs[fmt] = {"path": f"01000001/{name}", "sha256": "x", "bytes": 1}
    runs = {"01000001-his_analyse": {"report": "his_analyse", "scope": "practice", "key": "01000001",
                                     "label": "De Linde", "status": "done", "outputs": outputs},
            "01000001-betaalspecificatie": {"report": "betaalspecificatie", "scope": "practice", "key": "01000001",
                                            "label": "De Linde", "status": "done",
                                            "outputs": {"html": outputs["html"]}}}
    (q / "manifest.json").write_text(json.dumps({"quarter": "2026Q3", "runs": runs}))
    page = quarter_page(tmp_path, "2026Q3").read_text()
    assert page.count('<a href="01000001/his_analyse.slides.html">Presentatie</a>') == 1
    assert page.count(">Presentatie<") == 1, "only the run with a deck links one"


# -- interactive tables: the markup ----------------------------------------------------------


def test_only_long_tables_are_marked_interactive():
    long = pd.DataFrame({"a": range(INTERACTIVE_ROWS + 1)})
    assert INTERACTIVE_CLASS in to_html(long)
    assert INTERACTIVE_CLASS not in to_html(long.head(INTERACTIVE_ROWS))
    assert INTERACTIVE_CLASS not in to_html(long, interactive=False)


def test_a_report_with_a_long_table_carries_the_bundle_allowed_by_hash():
    script, css = interactive_assets()
    page = render_html(_notebook(rows=40), title="HIS-analyse", subtitle="De Linde")
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", page, re.S)
    assert scripts == [script] and '<script type="module">' in page
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = re.search(r'<meta[^>]*http-equiv="Content-Security-Policy"[^>]*>', page).group(0)
    assert f"sha256-{digest}" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert HOSTILE not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", page)
    short = render_html(_notebook(rows=3), title="HIS-analyse", subtitle="De Linde")
    assert "<script" not in short and "script-src &#x27;none&#x27;" in short.replace("'", "&#x27;")


# -- the sanitiser's shortcut --------------------------------------------------------------


SCRIPTY = ['<img src=x onerror=alert(1)>', '<a href="java&#115;cript:x">a</a>', "<a href='javascript:x>a",
           '<a href=javascript:x>a</a>', '<svg onload="x"></svg>', '<SCRIPT>x</SCRIPT>', '<iframe src=x></iframe>',
           '<meta http-equiv=refresh content="0;url=x">', '<p\u00a0onclick="x">a</p>', '<a srcdoc="&lt;b&gt;">',
           '<form action="javascript:x"></form>', '<object data="data:text/html,x"></object>',
           '<a xlink:href="javascript:x">a</a>', '<p/onmouseover=x>a</p>', "<p'onclick=x>a</p>", '<base href=x>',
           '<embed src=x>', '<a href="&#x6A;avascript:x">a</a>', '<a href="\x01javascript:x">a</a>']
PLAIN = ['<a href="#m1">a</a>', '<td class="num">1.234</td>', '<p title="on=1">x</p>', '<p>javascript: geen link</p>',
         '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"><use xlink:href="#a"/></svg>']


@pytest.mark.parametrize("text", SCRIPTY + PLAIN)
def test_the_sanitisers_shortcut_never_skips_what_the_full_pass_would_change(text):
    from helpers.render.html import _risky, _strip_scripts, strip_scripts
    assert _risky(text) or _strip_scripts(text) == text
    assert strip_scripts(text) == _strip_scripts(text)


def test_charts_and_tables_of_a_report_take_the_shortcut():
    from helpers.render.html import _risky
    nb = _notebook(rows=40)
    outputs = [o["data"] for c in nb.cells if c.cell_type == "code" for o in c.outputs if "data" in o]
    assert not any(_risky(d.get("image/svg+xml", "")) for d in outputs)
    assert all(_risky(s) for s in SCRIPTY[:-1])


def test_a_caption_escaped_for_markdown_shows_as_text_in_the_deck():
    """A heading caption carries the report's Markdown escaping (character references): the deck
    shows the name itself, and markup in it stays text."""
    from helpers import escape
    from helpers.render.slides import Item, _item_html
    html = _item_html(Item("table", "<table><tr><td>1</td></tr></table>", escape.markdown("A-B <b>x</b>")))
    assert "<h3>A-B &lt;b&gt;x&lt;/b&gt;</h3>" in html
