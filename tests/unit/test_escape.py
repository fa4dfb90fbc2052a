"""Delivery text escaped for every context it lands in, and the report's second wall."""

from __future__ import annotations

import base64
import hashlib
import html
import re

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from helpers import escape, render

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(2)</script>",
    "[klik](javascript:alert(3))",
    "<javascript:alert(4)>",
    "De Linde\n# Nepkop",
    "De Linde\r\n## Nepkop\n- lijst",
    'Praktijk "De Linde" \'t Hof & Co',
    "**vet** _schuin_ `code` ~~weg~~",
    "$x^2$ en $$y$$",
    "1. genummerd | tabel | ![plaatje](x.png)",
    "=HYPERLINK(\"http://x\",\"klik\")",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_markdown_value_renders_as_its_literal_text(value):
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    out = markdown2html_mistune(f"## {escape.markdown(value)}\n\n- **{escape.markdown(value)}** tekst")
    tags = re.findall(r"<(/?[a-zA-Z][a-zA-Z0-9]*)", out)
    assert sorted(set(tags)) == sorted({"h2", "/h2", "a", "/a", "ul", "/ul", "li", "/li", "strong", "/strong"})
    assert len(re.findall(r"<a\b", out)) == 1, "only nbconvert's own anchor link after the heading"
    assert 'class="anchor-link"' in out
    literal = " ".join(value.replace("\r\n", "\n").split("\n"))
    heading = re.search(r"<h2[^>]*>(.*?)<a ", out, re.S).group(1)
    assert html.unescape(heading) == literal


def test_single_line_contexts_collapse_line_breaks_and_controls():
    assert escape.single_line("a\nb\r\nc\td\u2028e\x00f") == "a b c d e f"
    assert escape.html_text('a\n<b "c">') == "a &lt;b &quot;c&quot;&gt;"
    assert escape.pdf_text("De Linde\n<i>x</i>") == "De Linde &lt;i&gt;x&lt;/i&gt;"


def test_mpl_text_is_never_mathtext():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    try:
        for raw in ("$x^2$", "prijs $5 en $6", "a\n$b$"):
            t = ax.set_title(escape.mpl_text(raw))
            shown, is_math = t._preprocess_math(t.get_text())
            assert not is_math
            assert shown == escape.single_line(raw)
        assert ax.set_title("$x^2$")._preprocess_math("$x^2$")[1], "unescaped it would be mathtext"
    finally:
        plt.close(fig)


@pytest.mark.parametrize("value", ["=1+1", "+31", "-2+3", "@SUM(A1)", "\tx", "\rx", "-12",
                                   '=HYPERLINK("http://x";"klik")'])
def test_csv_formula_cells_are_neutralised(value):
    assert escape.csv_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["123456", "P-1", "De Linde", "", "'al tekst", 1951, -3, 2.5, None])
def test_csv_other_cells_unchanged(value):
    assert escape.csv_cell(value) == value


def test_csp_meta_allows_only_the_named_scripts():
    script = "console.log(1);"
    meta = escape.csp_meta(script)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = html.unescape(re.search(r'content="([^"]*)"', meta).group(1))
    assert f"script-src 'sha256-{digest}';" in policy
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy.split("style-src")[0]
    assert "script-src 'none'" in html.unescape(escape.csp_meta())


@pytest.mark.parametrize("hostile, gone", [
    ("<script>alert(1)</script>", "alert(1)"),
    ("<SCRIPT type='text/javascript'>alert(1)</SCRIPT >", "alert(1)"),
    ("<script src=data:,alert(1)>", "<script"),
    ('<img src=x onerror="alert(1)">', "onerror"),
    ("<img src=x ONERROR=alert(1)>", "ONERROR"),
    ('<img alt=">" onerror=alert(1)>', "onerror"),
    ("<svg/onload=alert(1)>", "onload"),
    ('<a href="javascript:alert(1)">x</a>', "javascript:"),
    ('<a href=" jav&#x61;script:alert(1)">x</a>', "script:alert"),
    ("<a xlink:href='JAVASCRIPT:alert(1)'>x</a>", "alert"),
    ('<iframe srcdoc="<script>alert(1)</script>"></iframe>', "iframe"),
    ('<object data="x.swf"></object>', "<object"),
    ('<base href="http://evil.example/">', "<base"),
    ('<meta http-equiv="refresh" content="0;url=http://evil.example/">', "refresh"),
])
def test_strip_scripts(hostile, gone):
    page = f"<p>voor</p>{hostile}<p>na</p>"
    out = render.strip_scripts(page)
    assert gone not in out
    assert out.startswith("<p>voor</p>") and out.endswith("<p>na</p>")


def test_strip_scripts_keeps_the_report_markup():
    page = ('<img src="data:image/png;base64,xx"><a href="werklijst.csv">w</a>'
            '<a class="anchor-link" href="#Kop-1">¶</a><td class="num">12</td><p>on=off, onderzoek</p>')
    assert render.strip_scripts(page) == page


def _hostile_notebook(cell_ids):
    cells = [
        new_markdown_cell("# Rapport"),
        new_code_cell("js", outputs=[new_output("display_data", data={
            "application/javascript": "window.__pwned = 1", "text/plain": "<js>"})]),
        new_code_cell("widget", outputs=[new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "m1", "version_major": 2, "version_minor": 0}})]),
        new_code_cell("html", outputs=[new_output("display_data", data={
            "text/html": '<b onclick="alert(1)">vet</b><script>alert(2)</script>'})]),
        new_code_cell("md", outputs=[new_output("display_data", data={
            "text/markdown": "## Kop\n\n<img src=x onerror=alert(3)> [klik](javascript:alert(4))"})]),
    ]
    for cell, cid in zip(cells, cell_ids):
        cell["id"] = cid
    return new_notebook(cells=cells, metadata={"widgets": {"application/vnd.jupyter.widget-state+json": {
        "state": {}, "version_major": 2, "version_minor": 0}}})


def test_report_html_runs_no_script_and_has_a_csp(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    page = render.render_html(_hostile_notebook(["a1", "b2", "c3", "d4", "e5"]), title="T",
                              subtitle="Praktijk <i>x</i>\n# Nep")
    assert "<script" not in page.lower()
    assert not re.search(r"\son[a-z]+\s*=", page, re.I)
    assert "javascript:" not in page.lower()
    assert "window.__pwned" not in page
    assert 'http-equiv="Content-Security-Policy"' in page
    assert page.index("Content-Security-Policy") < page.index("<title>")
    assert "<title>T · Praktijk &lt;i&gt;x&lt;/i&gt; # Nep</title>" in page
    assert "vet" in page and "Kop" in page


def test_same_notebook_same_bytes_whatever_its_cell_ids(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    first = render.render_html(_hostile_notebook(["a1", "b2", "c3", "d4", "e5"]), title="T")
    second = render.render_html(_hostile_notebook(["zz", "yy", "xx", "ww", "vv"]), title="T")
    assert first == second
    assert 'id="cell-id=cell-0"' in first and "a1" not in first
    assert "21-09-2026 14:13 UTC" in first


def test_footer_template_escapes_the_label():
    footer = render.pdf._footer_template("Praktijk <img src=x onerror=alert(1)>\n# x")
    assert "<img" not in footer and "&lt;img src=x onerror=alert(1)&gt; # x" in footer
