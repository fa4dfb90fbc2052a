"""The HTML template and the browser plumbing, without kernels (fast)."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from helpers import render
from helpers.errors import SpiegelError
from helpers.suppression import RULE_TEXT


def _nb():
    cells = [
        new_code_cell("x = 1", outputs=[new_output("stream", name="stderr", text="FutureWarning: noise\n")]),
        new_markdown_cell("# Rapporttitel\n\nEen alinea."),
        new_code_cell("show()", outputs=[new_output("display_data", data={
            "text/html": '<script src="https://cdn.example.org/lib.js"></script>'
                         '<link rel="stylesheet" href="https://fonts.example.org/font.css">'
                         '<style>@import url("https://fonts.example.org/x.css");</style>'
                         '<table class="spiegel-table"><tr><td class="num">12</td></tr></table>',
            "text/plain": "table"})]),
        new_code_cell("fig", outputs=[new_output("display_data", data={
            "image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
            "text/plain": "<Figure>"})]),
    ]
    return new_notebook(cells=cells, metadata={"spiegel": {"title": "HIS-analyse ketenzorg"}})


def test_html_has_no_code_prompts_or_external_resources():
    page = render.render_html(_nb(), title="fallback", subtitle="De Linde · 3e kwartaal 2026",
                              provenance={"extraction_date": "05-10-2026", "parameter_hash": "abc123"})
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)
    assert "@import" not in page
    assert "x = 1" not in page and "show()" not in page, "no input cells"
    assert "In&nbsp;[" not in page and "Out[" not in page, "no prompts"
    assert "FutureWarning" not in page, "stderr stays out of the consultant's report"
    assert "data:image/png;base64," in page
    assert "<h1" in page and "Rapporttitel" in page
    assert "HIS-analyse ketenzorg" in page and "De Linde · 3e kwartaal 2026" in page
    assert "@page" in page and "break-inside: avoid" in page and "A4" in page
    assert "<script" not in page


def test_provenance_stamp_at_the_end():
    page = render.render_html(_nb(), title="t", provenance={"extraction_date": "05-10-2026",
                                                             "code_version": "spiegel 0.1.0 (code abc)",
                                                             "dataset": "data/demo", "parameter_hash": "p1"})
    stamp = page[page.index('class="spiegel-provenance"'):]
    assert page.index("Rapporttitel") < page.index('class="spiegel-provenance"')
    for text in ("05-10-2026", "spiegel 0.1.0 (code abc)", "data/demo", "p1", "Gegenereerd op"):
        assert text in stamp
    assert RULE_TEXT.replace("<", "&lt;").replace(">", "&gt;") in stamp


def test_strip_external_keeps_inline_and_local():
    page = '<img src="data:image/png;base64,xx"><a href="werklijst.csv">w</a><script>var a=1;</script>'
    assert render.strip_external(page) == page
    assert render.strip_external('<script src="//cdn.x/y.js"></script>') == ""


def test_no_browser_error_says_how_to_install(monkeypatch):
    monkeypatch.setenv("SPIEGEL_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(SpiegelError, match="apt-get install chromium"):
        render.find_chromium()
    monkeypatch.delenv("SPIEGEL_CHROMIUM")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SpiegelError, match="apt-get install chromium"):
        render.find_chromium()


def test_count_pdf_pages():
    assert render.count_pdf_pages(b"<< /Type /Pages /Count 2 >> << /Type /Page >> << /Type/Page/Parent 1 0 R >>") == 2


@pytest.mark.slow
def test_one_browser_prints_many_pdfs(tmp_path):
    html = tmp_path / "r.html"
    long_table = "<table>" + "".join(f"<tr><td>{i}</td></tr>" for i in range(150)) + "</table>"
    html.write_text(render.render_html(new_notebook(cells=[new_markdown_cell("# Titel")]), title="T")
                    .replace("</main>", long_table + "</main>"))
    with render.PdfPrinter() as printer:
        pages = [printer.print_pdf(html, tmp_path / f"r{i}.pdf", footer_left="Praktijk · 2026Q3") for i in range(3)]
        assert printer.launches == 1
    assert pages[0] >= 2 and len(set(pages)) == 1
    import subprocess
    text = subprocess.run(["pdftotext", str(tmp_path / "r0.pdf"), "-"], capture_output=True, text=True).stdout
    assert f"pagina 1 van {pages[0]}" in text and "Praktijk · 2026Q3" in text
