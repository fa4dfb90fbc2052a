"""The batch on a small demo care group, end to end, with the real HIS-analyse notebook.

The tests run in file order and share one build: first build -> checks of what it wrote ->
a rebuild that skips everything -> one practice changed -> one practice's extraction broken.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from html.parser import HTMLParser

import pytest

from helpers.demo import edit_first_patient
from helpers.suppression import RULE_TEXT

from conftest import build, counts, manifest, strings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first(care_group):
    batch = care_group.batch("demo")
    code, out = build(batch)
    m = re.search(r"quarters (\d{4}Q[1-4])", out)
    assert m, out
    care_group.quarter = m.group(1)
    care_group.outputs = care_group.root / "out-demo"
    care_group.batch_file = batch
    return code, out


def _runs(group):
    return manifest(group.outputs, group.quarter)["runs"]


def test_first_build_writes_every_promised_file(first, care_group):
    code, out = first
    assert code == 0, out
    assert counts(out) == {"runs": 3, "done": 3, "skipped": 0, "failed": 0}
    q = care_group.outputs / care_group.quarter
    for agb in care_group.practices:
        for ext in ("html", "pdf", "ipynb"):
            assert (q / agb / f"his_analyse.{ext}").stat().st_size > 1000
        assert sorted(p.name for p in (q / agb).glob("werklijst_*.csv")), "worklists written beside the report"
        assert (q / "logs" / f"{agb}-his_analyse.log").exists()
    assert not list(care_group.outputs.rglob(".*.tmp-*")), "no temporary files left"
    assert "portal: " in out and "index.html" in out


def test_manifest_records_every_run(first, care_group):
    runs = _runs(care_group)
    assert sorted(runs) == sorted(f"{agb}-his_analyse" for agb in care_group.practices)
    q = care_group.outputs / care_group.quarter
    for name, r in runs.items():
        assert r["status"] == "done"
        assert r["params"]["quarter"] == care_group.quarter
        assert len(r["cache_key"]) == 64
        for stage in ("execute", "html", "pdf", "prepare_shared", "total"):
            assert stage in r["timings_s"], (name, stage)
        for fmt in ("ipynb", "html", "pdf"):
            rec = r["outputs"][fmt]
            data = (q / rec["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == rec["sha256"]
        assert r["extras"] and all((q / x["path"]).exists() for x in r["extras"])
        assert set(r["figures"]) >= {"list_size", "registration_findings"}
    top = manifest(care_group.outputs, care_group.quarter)
    assert top["environment"]["packages"]["pandas"]
    assert top["cube"]["key"]


def test_manifest_and_logs_hold_no_patient_ids(first, care_group):
    text = "\n".join(strings(manifest(care_group.outputs, care_group.quarter)))   # numbers are sizes/counts
    logs = "".join(p.read_text() for p in (care_group.outputs / care_group.quarter / "logs").glob("*.log"))
    logs = re.sub(r"\d+ bytes", "", logs)
    tokens = set(re.findall(r"\b\d{4,}\b", text + logs))
    for agb in care_group.practices:
        ids = _patient_ids(care_group, agb)
        assert ids
        assert not (tokens & ids), f"patient ids of {agb} in the manifest or logs"


def _numbers(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, (*path, str(k)))
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v, path)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def test_manifest_holds_no_unsuppressed_count(first, care_group):
    """The manifest is a shared output: its numbers are sizes, timings and attempts only; the
    key figures are stored as the portal shows them (small counts as <10)."""
    allowed = {"timings_s", "memory_mb", "bytes", "pages", "attempts", "prepare_s", "cell_index"}
    top = manifest(care_group.outputs, care_group.quarter)
    for path, _value in _numbers(top):
        assert allowed & set(path[-2:]), f"a number at {'.'.join(path)} in the manifest"
    for r in top["runs"].values():
        assert r["figures"] and all(isinstance(v, str) for v in r["figures"].values()), r["figures"]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v:
                self.links.append((tag, k, v))


def test_portal_links_resolve(first, care_group):
    pages = [care_group.outputs / "index.html", care_group.outputs / care_group.quarter / "index.html"]
    seen = 0
    for page in pages:
        parser = _Links()
        parser.feed(page.read_text())
        for tag, attr, link in parser.links:
            assert not link.startswith(("http://", "https://", "//")), link
            target = (page.parent / link.split("#")[0]).resolve()
            assert target.exists(), f"{page.name}: broken link {link}"
            seen += 1
    quarter_page = pages[1].read_text()
    assert seen >= 3 * 3 + 1
    assert 'id="zoek"' in quarter_page, "search box"
    for agb in care_group.practices:
        assert f"{agb}/his_analyse.pdf" in quarter_page
        assert f"{agb}/werklijst_" in quarter_page


def test_html_is_self_contained_house_style_with_provenance(first, care_group):
    html = (care_group.outputs / care_group.quarter / care_group.practices[0] / "his_analyse.html").read_text()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=\s*[\"']?(https?:)?//", html, re.I)
    assert "require.js" not in html and "mathjax" not in html.lower()
    assert ("data:image/png;base64," in html or "data:image/svg+xml;base64," in html
            or "<svg" in html), "figures embedded"
    assert "jp-InputArea-editor" not in html and "In&nbsp;[" not in html, "no code, no prompts"
    assert "spiegel-header" in html and care_group.quarter[:4] in html
    stamp = html[html.index("spiegel-provenance"):]
    for label in ("Datum HIS-extractie", "Codeversie", "Parameterhash", "Gegenereerd op"):
        assert label in stamp
    assert RULE_TEXT.replace(">", "&gt;").replace("<", "&lt;") in stamp


def test_pdf_has_expected_pages_and_text(first, care_group):
    pdf = care_group.outputs / care_group.quarter / care_group.practices[0] / "his_analyse.pdf"
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    runs = _runs(care_group)
    assert runs[f"{care_group.practices[0]}-his_analyse"]["outputs"]["pdf"]["pages"] == pages
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert text.count("\f") in (pages, pages - 1)
    assert "HIS-analyse ketenzorg" in text
    assert "Samenvatting" in text and "Werklijsten" in text
    assert f"pagina 1 van {pages}" in text and f"pagina {pages} van {pages}" in text
    assert "Herkomst van dit rapport" in text


def test_html_in_headless_chromium_shows_the_headings(first, care_group):
    from helpers.render import PdfPrinter
    html = care_group.outputs / care_group.quarter / care_group.practices[0] / "his_analyse.html"
    with PdfPrinter() as browser:
        headings = browser.headings(html)
    assert "HIS-analyse ketenzorg" in headings
    assert any(h.startswith("1. Samenvatting") for h in headings)
    assert any(h.startswith("5. Werklijsten") for h in headings)
    assert "Herkomst van dit rapport" in headings


def _patient_ids(group, agb) -> set[str]:
    import duckdb
    con = duckdb.connect(str(group.warehouse), read_only=True)
    try:
        return {r[0] for r in con.execute("SELECT patient_id FROM patients WHERE practice_agb = ?", [agb]).fetchall()}
    finally:
        con.close()


def test_a_report_holds_no_patient_of_an_earlier_run_in_the_same_worker(first, care_group):
    """Three runs on two workers: at least two shared a worker (and its kernel factory)."""
    runs = sorted(_runs(care_group).values(), key=lambda r: r["finished_at"])
    by_worker = {}
    for r in runs:
        by_worker.setdefault(r["worker"], []).append(r)
    pairs = [(a, b) for rs in by_worker.values() for a, b in zip(rs, rs[1:])]
    assert pairs, "three runs on two workers share a worker"
    q = care_group.outputs / care_group.quarter
    for a, b in pairs:
        own_ids = _patient_ids(care_group, b["key"])
        a_ids = _patient_ids(care_group, a["key"]) - own_ids
        html = (q / b["outputs"]["html"]["path"]).read_text()
        shown = set(re.findall(r"<td[^>]*>(\d{4,})</td>", html))
        assert shown, "the report lists patient numbers"
        assert not (shown & a_ids), f"{b['key']}'s report shows patients of {a['key']}"


def test_second_build_skips_everything(first, care_group):
    before = {n: r["finished_at"] for n, r in _runs(care_group).items()}
    code, out = build(care_group.batch_file)
    assert code == 0, out
    assert counts(out) == {"runs": 3, "done": 0, "skipped": 3, "failed": 0}
    assert {n: r["finished_at"] for n, r in _runs(care_group).items()} == before


def test_changing_one_practice_reruns_only_its_runs(first, care_group):
    agb = care_group.practices[1]
    edit_first_patient(care_group.dataset, agb)
    before = {n: r["finished_at"] for n, r in _runs(care_group).items()}
    code, out = build(care_group.batch_file)
    assert code == 0, out
    assert counts(out) == {"runs": 3, "done": 1, "skipped": 2, "failed": 0}
    after = {n: r["finished_at"] for n, r in _runs(care_group).items()}
    changed = {n for n in after if after[n] != before[n]}
    assert changed == {f"{agb}-his_analyse"}


def test_broken_reload_keeps_the_previous_report_marked_and_recovers(first, care_group):
    agb = care_group.practices[2]
    patients = care_group.dataset / "extracts" / agb / "patients.csv"

    def break_birth_year(line):
        cols = line.split(";")
        cols[1] = "19x5"
        return ";".join(cols)
    original = edit_first_patient(care_group.dataset, agb, break_birth_year)
    code, out = build(care_group.batch_file)
    assert code == 1, out
    # the warehouse still holds the previous delivery intact: its report stays, marked as such
    assert counts(out) == {"runs": 3, "done": 0, "skipped": 3, "failed": 0}
    first_problem = f"extracts/{agb}/patients.csv, line 2, column birth_year: found '…', expected"
    assert f"practice {agb}: new delivery refused ({first_problem}" in out
    assert "refused: 1 problem(s)" not in out
    entry = _runs(care_group)[f"{agb}-his_analyse"]
    assert entry["status"] == "done" and entry["stale_data"]["first_problem"].startswith(first_problem)
    assert (care_group.outputs / care_group.quarter / entry["outputs"]["html"]["path"]).exists()
    # the portal serves the previous report and says it stands on the previous delivery, and why
    page = (care_group.outputs / care_group.quarter / "index.html").read_text()
    row = next(r for r in page.split("<tr ") if f"<td>{agb}</td>" in r)
    assert f"{agb}/his_analyse.html" in row
    assert "vorige levering" in row and "Eerste probleem: extracts/" in row and "line 2, column birth_year" in row
    # the delivery is fixed: the mark goes, nothing needs to run
    patients.write_bytes(original)
    code, out = build(care_group.batch_file)
    assert code == 0, out
    assert counts(out) == {"runs": 3, "done": 0, "skipped": 3, "failed": 0}
    assert "stale_data" not in _runs(care_group)[f"{agb}-his_analyse"]
