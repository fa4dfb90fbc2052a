"""Slide decks end to end: ``spiegel build`` with ``formats: [html, pdf, slides]`` writes
``<report>.slides.html`` beside the HTML for the kinds that have slides (and skips them for a
kind without, with no error), records it in the manifest, links it from the portal, and the
deck works in headless Chromium with the network blocked: reveal.js runs from the file itself,
the keyboard moves through the slides, the practice and quarter are on every slide."""

from __future__ import annotations

import json
import re

import pytest

from conftest import build, counts, manifest
from deck_build import deck_build, open_offline, wait_until
from helpers.quarter import Quarter

pytestmark = pytest.mark.slow

DECKS = ["his_analyse", "praktijkspiegel"]


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


def test_decks_beside_the_html_only_for_the_kinds_with_slides(built):
    from helpers.runner import file_record
    runs = manifest(built.outputs, built.quarter)["runs"]
    for report in DECKS:
        deck = built.folder / f"{report}.slides.html"
        entry = runs[f"{built.agb}-{report}"]
        assert entry["status"] == "done" and entry["outputs_done"]["slides"] is True
        assert entry["outputs"]["slides"]["path"] == f"{built.agb}/{report}.slides.html"
        assert entry["outputs"]["slides"]["sha256"] == file_record(deck)["sha256"]
        assert entry["timings_s"]["slides"] >= 0
    money = runs[f"{built.agb}-betaalspecificatie"]
    assert money["status"] == "done" and "slides" not in money["outputs"]
    assert not (built.folder / "betaalspecificatie.slides.html").exists()
    assert re.search(r"^\s+slides\s+2\s", built.out, re.M), "the summary's stage table shows the slides"


def test_a_rebuild_with_nothing_changed_skips_the_decks(built):
    batch = built.group.root / "decks.yaml"
    before = (built.folder / "his_analyse.slides.html").stat().st_mtime_ns
    code, out = build(batch)
    assert code == 0 and counts(out) == {"runs": 3, "done": 0, "skipped": 3, "failed": 0}
    assert (built.folder / "his_analyse.slides.html").stat().st_mtime_ns == before


@pytest.mark.parametrize("report", DECKS)
def test_the_deck_runs_offline_and_moves_with_the_keyboard(built, browser, report):
    deck = built.folder / f"{report}.slides.html"
    label = json.loads((built.outputs / built.quarter / "manifest.json").read_text())["runs"][
        f"{built.agb}-{report}"]["label"]
    shown = f"{label} · {Quarter.parse(built.quarter).label_nl}"
    opened = open_offline(browser, deck)
    page = opened.page
    try:
        wait_until(page, "window.Reveal && Reveal.isReady()")
        total = page.evaluate("Reveal.getTotalSlides()")
        leaves = page.locator(".slides > section:not(.stack), .slides > section.stack > section").count()
        assert total == leaves and total >= 8, "a title, a slide per section with outputs, sub-slides, provenance"
        assert page.evaluate("[Reveal.getIndices().h, Reveal.getIndices().v]") == [0, 0]

        def current():
            return page.evaluate("Reveal.getCurrentSlide().querySelector('h1, h2').innerText")

        footer = page.locator(".spiegel-deck-footer")
        seen = [current()]
        stacked = False
        for _ in range(total - 1):
            assert footer.is_visible() and shown in footer.inner_text(), "practice and quarter on every slide"
            h, v = page.evaluate("[Reveal.getIndices().h, Reveal.getIndices().v]")
            if not stacked and page.evaluate("Reveal.availableRoutes().down"):
                page.keyboard.press("ArrowDown")
                stacked = True
                assert page.evaluate("Reveal.getIndices()")["v"] == v + 1, "ArrowDown opens the sub-slide"
            elif page.evaluate("Reveal.availableRoutes().right"):
                page.keyboard.press("ArrowRight")
                assert page.evaluate("Reveal.getIndices()")["h"] == h + 1, "ArrowRight goes to the next section"
            else:
                break
            seen.append(current())
        assert stacked, "a section has vertical sub-slides"
        assert seen[0] == page.evaluate("document.querySelector('.slides h1').innerText")
        assert len(set(seen)) >= 5, f"the visible heading changes as the deck moves: {seen}"
        assert current() == "Herkomst" or page.evaluate("Reveal.availableRoutes().right")
        assert opened.requests == [], "a deck never touches the network"
        assert opened.violations() == [] and opened.errors == [] and opened.dialogs == []
    finally:
        opened.close()


def test_the_portal_links_each_deck_as_presentatie(built, browser):
    portal = built.outputs / built.quarter / "index.html"
    opened = open_offline(browser, portal)
    try:
        links = opened.page.locator("a", has_text="Presentatie")
        hrefs = sorted(links.evaluate_all("els => els.map(a => a.getAttribute('href'))"))
        assert hrefs == sorted(f"{built.agb}/{r}.slides.html" for r in DECKS)
        links.first.click()
        opened.page.wait_for_url(re.compile(r".*\.slides\.html$"))
        wait_until(opened.page, "window.Reveal && Reveal.isReady()")
        assert opened.page.url.endswith(".slides.html") and opened.requests == []
    finally:
        opened.close()
