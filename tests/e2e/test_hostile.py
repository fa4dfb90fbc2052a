"""A hostile delivery: markup, script, formulas, line breaks, quotes and mathtext in every
text column of practices.csv and in patient numbers. Built with the real ``spiegel build``
(HTML and PDF), opened in headless Chromium: no script runs, no markup renders, the text is
shown literally, and the worklists hold no formula. A second, small practice checks that
the shared outputs (manifest, portal) hold only suppressed key figures.

What the contract accepts (``helpers.contract``): every payload below. Text columns are
trimmed (so a leading tab or carriage return never reaches a report) but otherwise taken as
delivered, line breaks in quoted CSV fields included; only the AGB code is restricted.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import Group, build, counts, quarter_of, strings

from helpers.render.html import interactive_assets
from helpers.render.portal import SEARCH_JS

pytestmark = pytest.mark.slow

#: each payload sets window.__pwned or opens a dialog if it ever runs
PAYLOADS = {
    "name": ("Huisarts <img src=x onerror=\"window.__pwned=1;alert(1)\"> 't \"Hof\" "
             "[klik](javascript:window.__pwned=2)\n# Nepkop $x^2$ <script>window.__pwned=3</script>"),
    "region": '=HYPERLINK("http://evil.example/";"klik") <b onmouseover="window.__pwned=4">Noord</b>',
    "hagro": '+SUM(1;2) <a href="javascript:window.__pwned=5">hagro</a>\n## Nephagro',
    "his_system": "-2+3 @SUM(A1) <svg onload=\"window.__pwned=6\"></svg> $\\alpha$ <iframe src=x></iframe>",
}
ID_PREFIXES = ('=HYPERLINK("http://evil.example/";"klik")', "+", "-", "@",
               '<img src=x onerror="window.__pwned=7">', "'\"", "$x$", "P\n# ")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
SHOWN_NAME = " ".join(PAYLOADS["name"].split("\n"))


def _rewrite(path: Path, edit) -> None:
    raw = path.read_bytes()
    rows = edit(list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""), delimiter=";")))
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\n").writerows(rows)
    path.write_text(("\ufeff" if raw.startswith(b"\xef\xbb\xbf") else "") + out.getvalue(), encoding="utf-8")


def _edit_patients(folder: Path, change) -> dict[str, str]:
    """Apply ``change`` (patient rows -> {old id: new id or None to drop}) to every file of
    one practice's extraction, so every reference stays consistent."""
    mapping: dict[str, str | None] = {}

    def patients(rows):
        mapping.update(change(rows))
        i = rows[0].index("patient_id")
        return [rows[0]] + [r[:i] + [mapping[r[i]]] + r[i + 1:] for r in rows[1:] if mapping.get(r[i])]

    _rewrite(folder / "patients.csv", patients)

    def others(rows):
        i = rows[0].index("patient_id")
        return [rows[0]] + [r[:i] + [mapping[r[i]]] + r[i + 1:] for r in rows[1:] if r and mapping.get(r[i])]

    for f in sorted(folder.glob("*.csv")):
        if f.name != "patients.csv":
            _rewrite(f, others)
    return {k: v for k, v in mapping.items() if v}


class Built:
    def __init__(self, root: Path):
        self.group = Group(root)
        hostile, small = self.group.practices[0], self.group.practices[1]
        self.hostile, self.small = hostile, small

        def practices(rows):
            head = rows[0]
            for r in rows[1:]:
                if r[0] == hostile:
                    for col, text in PAYLOADS.items():
                        r[head.index(col)] = text
            return rows
        _rewrite(self.group.dataset / "practices.csv", practices)
        extracts = self.group.dataset / "extracts"
        self.ids = _edit_patients(extracts / hostile, lambda rows: {
            r[0]: ID_PREFIXES[k % len(ID_PREFIXES)] + r[0] for k, r in enumerate(rows[1:])})
        # a small practice: its key figures include counts under 10
        _edit_patients(extracts / small, lambda rows: {r[0]: (r[0] if k < 250 else None)
                                                        for k, r in enumerate(rows[1:])})
        self.outputs = root / "out-hostile"
        code, self.out = build(self.group.batch("hostile", workers=1))
        assert code == 0, self.out
        assert counts(self.out)["failed"] == 0
        self.quarter = quarter_of(self.outputs)
        self.qdir = self.outputs / self.quarter


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    return Built(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    from helpers.render import CHROMIUM_FLAGS, find_chromium
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=list(CHROMIUM_FLAGS))
        yield b
        b.close()


INJECTED = ('img[src="x"], iframe, svg[onload], a[href^="javascript" i], '
            "[onerror], [onload], [onmouseover], [onclick]")


def _open(browser, page_file: Path):
    """Open a page as a consultant would; returns the page and the dialogs it opened."""
    context = browser.new_context()
    context.route(re.compile(r"^(https?|wss?)://"), lambda route: route.abort())
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.add_init_script("document.addEventListener('securitypolicyviolation', "
                         "e => (window.__violations = window.__violations || []).push(e.violatedDirective));")
    page.goto(page_file.resolve().as_uri(), wait_until="load")
    page.wait_for_timeout(300)
    return page, dialogs


def _assert_inert(page, dialogs):
    assert dialogs == []
    assert page.evaluate("window.__pwned") is None, "a payload ran"
    assert page.locator(INJECTED).count() == 0, "payload markup became elements"
    scripts = page.evaluate("[...document.scripts].map(s => s.textContent)")
    assert set(scripts) <= {SEARCH_JS, interactive_assets()[0]}, \
        "no script but the portal's own search and the long tables' bundle (helpers.render.html)"
    csp = page.locator('meta[http-equiv="Content-Security-Policy"]')
    assert csp.count() == 1 and "default-src 'none'" in csp.get_attribute("content")


def test_report_runs_no_script_and_shows_the_name_literally(built, browser):
    html_file = built.qdir / built.hostile / "his_analyse.html"
    page, dialogs = _open(browser, html_file)
    try:
        _assert_inert(page, dialogs)
        text = page.inner_text("body")
        assert SHOWN_NAME in text, "the practice name is shown as delivered, on one line"
        headings = [t.strip() for t in page.locator("h1, h2, h3").all_inner_texts()]
        assert not [h for h in headings if h.startswith(("Nepkop", "Nephagro"))], headings
        assert page.locator("h2").first.inner_text().startswith(SHOWN_NAME)
        assert SHOWN_NAME in page.title()
        assert page.locator("h1").count() == 1
        ids_shown = [v for v in built.ids.values() if " ".join(v.split("\n")) in text]
        assert ids_shown, "hostile patient numbers are listed literally in the report"
        assert page.evaluate("window.__violations || []") == []
    finally:
        page.context.close()


def test_pdf_shows_the_name_as_text(built):
    pdf = built.qdir / built.hostile / "his_analyse.pdf"
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    text = " ".join(text.split())
    assert "<img src=x onerror=" in text and "<script>window.__pwned=3</script>" in text
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    title = next(line for line in info.splitlines() if line.startswith("Title:"))
    assert "Nepkop" in title and "<img src=x" in title, "the PDF title is the literal name, on one line"


def test_portal_runs_no_script_and_its_search_still_works(built, browser):
    for page_file in (built.outputs / "index.html", built.qdir / "index.html"):
        page, dialogs = _open(browser, page_file)
        try:
            _assert_inert(page, dialogs)
            if page_file.parent == built.qdir:
                assert SHOWN_NAME in page.inner_text("body")
                page.fill("#zoek", built.small)   # the portal's own script is allowed by its hash
                visible = page.locator("tbody tr:visible").all_inner_texts()
                assert len(visible) == 1 and built.small in visible[0]
            assert page.evaluate("window.__violations || []") == []
        finally:
            page.context.close()


def test_worklist_cells_are_neutral(built):
    cells = []
    for path in sorted((built.qdir / built.hostile).glob("werklijst_*.csv")):
        with open(path, encoding="utf-8-sig", newline="") as f:
            cells += [c for row in list(csv.reader(f, delimiter=";"))[1:] for c in row]
    assert cells
    assert not [c for c in cells if c.startswith(FORMULA_START)]
    assert any(c.startswith("'=HYPERLINK(") for c in cells)
    assert any(c.startswith(("'+", "'-", "'@")) for c in cells)


def _exact_figures(built, agb) -> dict:
    from helpers.reports import his_analyse
    from helpers.config import cube_dir
    return his_analyse.key_figures(his_analyse.load(cube_dir(built.group.warehouse, built.quarter), agb))


def test_shared_outputs_hold_only_suppressed_figures(built):
    exact = _exact_figures(built, built.small)
    assert any(isinstance(v, int) and 0 < v < 10 for v in exact.values()), exact   # the case that matters
    manifest = json.loads((built.qdir / "manifest.json").read_text(encoding="utf-8"))
    for name, run in manifest["runs"].items():
        for key, value in run["figures"].items():
            assert isinstance(value, str), (name, key, value)
            assert not re.fullmatch(r"[1-9]", value), (name, key, value)
    small = manifest["runs"][f"{built.small}-his_analyse"]["figures"]
    assert any(0 < exact[key] < 10 for key in small), (exact, small)
    for key, shown in small.items():
        assert shown == ("<10" if 0 < exact[key] < 10 else f"{exact[key]:,}".replace(",", "."))
    portal = (built.qdir / "index.html").read_text(encoding="utf-8")
    cells = re.findall(r'<td class="num">([^<]*)</td>', portal)
    assert cells and "&lt;10" in cells
    assert not [c for c in cells if re.fullmatch(r"[1-9]", c)]


def test_shared_outputs_hold_no_patient_ids(built):
    from helpers.cube import read_slice
    from helpers.config import cube_dir
    findings = read_slice(cube_dir(built.group.warehouse, built.quarter), "findings")
    ids = set(findings["patient_id"])
    assert ids
    shared = [built.qdir / "manifest.json", built.qdir / "index.html", built.outputs / "index.html"]
    for f in shared:
        text = f.read_text(encoding="utf-8")
        if f.suffix == ".json":   # its numbers are sizes and timings
            text = "\n".join(strings(json.loads(text)))
        tokens = set(re.findall(r"\b\d{5,}\b", text))
        plain = {i for i in ids if i.isdigit()}
        assert not tokens & plain, f"patient numbers in {f.name}"
        assert not [i for i in ids if not i.isdigit() and i in text], f"hostile ids in {f.name}"
