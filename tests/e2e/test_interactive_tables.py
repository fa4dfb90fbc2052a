"""Interactive long tables end to end: in the HIS-analyse that ``spiegel build`` wrote, every
table of more than 15 rows sorts (click a header) and filters (type in its search box) in
headless Chromium with the network blocked; the PDF keeps the plain table (every row, no
controls); and a worklist with markup in its patient numbers shows the markup as text, with
no script running but the bundled one."""

from __future__ import annotations

import csv
import subprocess

import nbformat
import pandas as pd
import pytest

from deck_build import deck_build, open_offline, wait_until
from helpers.render.html import interactive_assets, render_html
from helpers.tables import INTERACTIVE_ROWS, to_html

pytestmark = pytest.mark.slow

PAYLOAD = '<img src=x onerror="window.__pwned=1;alert(1)">'


@pytest.fixture(scope="module")
def built(tiny_group):
    return deck_build(tiny_group)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    from helpers.render import CHROMIUM_FLAGS, find_chromium
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=list(CHROMIUM_FLAGS))
        yield b
        b.close()


def _order(value: str):
    """DataTables' order of a column of patient numbers: numbers as numbers."""
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def _column(table, index: int) -> list[str]:
    return [t.strip() for t in table.locator(f"tbody tr td:nth-child({index})").all_inner_texts()]


def _settled(page, table, index: int, expected: list[str], seconds: float = 10) -> list[str]:
    """The column once DataTables has redrawn (it orders and filters in a timeout after the
    event): ``expected``, or what it shows after ``seconds``."""
    for _ in range(int(seconds / 0.05)):
        shown = _column(table, index)
        if shown == expected:
            break
        page.wait_for_timeout(50)
    return shown


def test_long_tables_sort_and_search_offline(built, browser):
    opened = open_offline(browser, built.folder / "his_analyse.html", viewport=(1280, 900))
    page = opened.page
    try:
        marked = page.locator("table.spiegel-interactive")
        wait_until(page, "document.querySelectorAll('table.spiegel-interactive.dataTable').length > 0")
        assert marked.count() >= 1
        assert page.locator("table.spiegel-interactive.dataTable").count() == marked.count()
        assert page.locator("table.spiegel-table:not(.spiegel-interactive).dataTable").count() == 0, \
            "short tables stay plain"
        table = max((marked.nth(i) for i in range(marked.count())), key=lambda t: t.locator("tbody tr").count())
        rows = table.locator("tbody tr").count()
        assert rows > INTERACTIVE_ROWS
        ids = _column(table, 1)
        header = table.locator("thead th").nth(0)
        header.click()
        ascending = _settled(page, table, 1, sorted(ids, key=_order))
        assert ascending == sorted(ids, key=_order), "a click on the header sorts the column"
        header.click()
        descending = _settled(page, table, 1, sorted(ids, key=_order, reverse=True))
        assert descending == sorted(ids, key=_order, reverse=True) and descending != ascending
        container = table.locator("xpath=ancestor::div[contains(@class, 'dt-container')][1]")
        wanted = ids[len(ids) // 2]
        matching = [i for i in descending if wanted in i]
        container.locator(".dt-search input").fill(wanted)
        shown = _settled(page, table, 1, matching)
        assert shown == matching and len(shown) < rows, "typing in the search box filters the rows"
        container.locator(".dt-search input").fill("")
        assert len(_settled(page, table, 1, descending)) == rows
        assert opened.requests == [] and opened.violations() == [] and opened.errors == []
    finally:
        opened.close()


def test_the_pdf_keeps_the_plain_table(built):
    text = subprocess.run(["pdftotext", "-layout", str(built.folder / "his_analyse.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    with open(built.folder / "werklijst_oproepen.csv", encoding="utf-8-sig", newline="") as f:
        ids = [row[0] for row in list(csv.reader(f, delimiter=";"))[1:]]
    assert len(ids) > INTERACTIVE_ROWS
    assert all(i in text for i in ids), "every row of the long worklist is printed"
    assert "Zoeken:" not in text and "Niets gevonden" not in text, "no DataTables controls in the PDF"


def _hostile_report(tmp_path):
    ids = [PAYLOAD] + [f"{i:06d}" for i in range(INTERACTIVE_ROWS + 5)]
    df = pd.DataFrame({"Patiëntnummer": ids, "Geboortejaar": range(1940, 1940 + len(ids))})
    cell = nbformat.v4.new_code_cell()
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "text/html": to_html(df, align_right=("Geboortejaar",)), "text/plain": ""})]
    page = render_html(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## Werklijst"), cell]),
                       title="HIS-analyse", subtitle="De Linde")
    path = tmp_path / "werklijst.html"
    path.write_text(page, encoding="utf-8")
    return path, ids


def test_markup_in_a_worklist_stays_text_and_only_the_bundle_runs(tmp_path, browser):
    path, ids = _hostile_report(tmp_path)
    opened = open_offline(browser, path)
    page = opened.page
    try:
        page.wait_for_selector("table.dataTable")
        table = page.locator("table.dataTable")
        assert _column(table, 1) == ids, "the report's order until a header is clicked"
        table.locator("thead th").nth(1).click()
        _settled(page, table, 1, ids)
        table.locator("thead th").nth(1).click()
        assert _settled(page, table, 1, ids[::-1]) == ids[::-1], "sorted by birth year, descending"
        page.locator(".dt-search input").fill("onerror")
        assert _settled(page, table, 1, [PAYLOAD]) == [PAYLOAD], "found by its text, shown as text"
        assert page.locator("table img, [onerror]").count() == 0
        assert page.evaluate("window.__pwned") is None and opened.dialogs == []
        scripts = page.evaluate("[...document.scripts].map(s => s.textContent)")
        assert scripts == [interactive_assets()[0]], "no script but the bundled one"
        assert opened.requests == [] and opened.violations() == [] and opened.errors == []
    finally:
        opened.close()
