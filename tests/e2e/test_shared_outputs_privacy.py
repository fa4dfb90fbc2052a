"""Every shared output of a demo batch (the hagro packs, the regional reports, the portal) is
scanned as a reader would see it (table cells, text, and the text inside the figures): no
patient number of the care group appears, and no count from 1 to 9 stands in a table cell,
except in columns that count no patients (practices, indicators, discussion points)."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from conftest import build, counts, write_batch

pytestmark = pytest.mark.slow

SHARED_REPORTS = ["spiegelbijeenkomst", "regio", "regio_zorggroep", "verkenning"]
#: table columns whose numbers count no patients (declared plain in the reports' SharedTable/KeyFigures)
PLAIN_HEADERS = ("praktijken", "indicatoren op streefwaarde", "gespreksonderwerpen", "kwartaal", "positie",
                 "interval", "afgesproken maximum", "δ", "klaar", "mislukt", "rapporten", "rondes", "facturen")


class _Cells(HTMLParser):
    """Table cells with their column header, and all visible text."""

    def __init__(self):
        super().__init__()
        self.cells, self.text, self._headers, self._row, self._in, self._buf = [], [], [], [], None, []

    def handle_starttag(self, tag, attrs):
        if tag == "thead":
            self._headers = []
        if tag == "tr":
            self._row = []
        if tag in ("td", "th"):
            self._in, self._buf = tag, []
        if tag == "img":
            src = dict(attrs).get("src") or ""
            if src.startswith("data:image/svg+xml;base64,"):
                svg = base64.b64decode(src.split(",", 1)[1]).decode()
                self.text.append(" ".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg)))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._in:
            value = " ".join("".join(self._buf).split())
            if self._in == "th":
                self._headers.append(value)
            else:
                header = self._headers[len(self._row)] if len(self._row) < len(self._headers) else ""
                self.cells.append((header, value))
            self._row.append(value)
            self._in = None

    def handle_data(self, data):
        self.text.append(data)
        if self._in:
            self._buf.append(data)


@pytest.fixture(scope="module")
def shared_outputs(demo_warehouse, demo_dataset, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shared-privacy")
    batch = write_batch(root / "shared.yaml", warehouse=demo_warehouse, quarters="latest", practices="all",
                        reports=SHARED_REPORTS, formats=["html"], outputs=root / "out", ingest="no")
    code, out = build(batch)
    assert code == 0, out
    assert counts(out)["failed"] == 0
    return root / "out"


def _patient_ids(warehouse: Path) -> set[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {str(r[0]) for r in con.execute("SELECT DISTINCT patient_id FROM patients").fetchall()}


def test_no_patient_number_and_no_small_count_in_any_shared_output(shared_outputs, demo_warehouse):
    pages = [p for p in shared_outputs.rglob("*.html")
             if "hagro" in p.parts or "regio" in p.parts or p.name == "index.html"]
    kinds = {("hagro" if "hagro" in p.parts else "regio" if "regio" in p.parts else "portal") for p in pages}
    assert kinds == {"hagro", "regio", "portal"}, sorted(map(str, pages))
    ids = _patient_ids(demo_warehouse)
    assert len(ids) > 1000
    for page in pages:
        parser = _Cells()
        parser.feed(page.read_text())
        text = " ".join(parser.text)
        assert parser.cells, f"{page}: no table read (the scan would prove nothing)"
        tokens = set(re.findall(r"(?<![\w.,])[A-Za-z0-9-]{3,}(?![\w])", text))
        assert not tokens & ids, (page, sorted(tokens & ids)[:5])
        for header, value in parser.cells:
            if any(h in header.lower() for h in PLAIN_HEADERS):
                continue
            assert not re.fullmatch(r"[1-9]", value), (page.relative_to(shared_outputs), header, value)
        assert not re.search(r"(?<![\d,.−+-])[1-9]\s+patiënt", text), page
