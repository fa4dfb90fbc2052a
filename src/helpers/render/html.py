"""Executed notebook -> self-contained HTML in the house style.

HTML: nbconvert's ``HTMLExporter`` in-process (0.1 s against 2.5 s for the
``jupyter nbconvert`` command), without input cells or prompts, through a template held
here: one file per report that opens offline at a practice. Figures stay embedded as
base64 PNG or SVG; no script, stylesheet or font is fetched from anywhere
(``strip_external`` removes any a cell's output smuggled in). A report runs no script at
all: the template has none, JavaScript and widget outputs are dropped, ``strip_scripts``
removes script elements, event-handler attributes and ``javascript:`` URLs from what the
cells put out, and a Content-Security-Policy in the head blocks whatever got past (the
values from a delivery are escaped where they are written, ``helpers.escape``). Every
report ends with a provenance stamp: data extraction date, dataset and code version,
parameter hash, generation time and the small-number rule (``suppression.RULE_TEXT``).
Long tables (``helpers.tables``: more than 15 rows, class ``spiegel-interactive``) sort and
search on screen: the page then carries DataTables, as itables bundles it (``dt_bundle.js``,
inlined, nothing fetched), and one line that enhances those tables in place. That is the only
script a report runs, allowed by its hash; the table stays the escaped HTML table (DataTables
takes the rows from the page and moves them, it never turns a cell's text into markup), and the
PDF's browser runs no script (``pdf``), so the PDF prints that plain table.
The same notebook gives the same HTML bytes (cell ids are numbered) apart from the
generation time in the stamp; with ``SOURCE_DATE_EPOCH`` set (the reproducible-builds
convention) that time and the PDF's dates are fixed too, and a rebuild is byte-identical.

>>> html = render_html(nb, title="HIS-analyse ketenzorg",
...                    subtitle="De Linde · 2e kwartaal 2025", provenance={})   # doctest: +SKIP
"""

from __future__ import annotations

import html as _html
import os
import re
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from .. import escape
from ..suppression import RULE_TEXT


HOUSE_CSS = r"""
:root { --ink: #1d2430; --muted: #5b6675; --line: #d9dee5; --accent: #1f5f8b; --band: #f3f6f9; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
html { font-size: 10.5pt; }
body { margin: 0; color: var(--ink); background: #fff;
       font-family: "DejaVu Sans", "Segoe UI", "Helvetica Neue", Arial, sans-serif; line-height: 1.45; }
main { max-width: 1000px; margin: 0 auto; padding: 0 24px 40px; }
.spiegel-header { max-width: 1000px; margin: 0 auto; padding: 24px 24px 10px; border-bottom: 2px solid var(--accent);
                  display: flex; justify-content: space-between; align-items: baseline; gap: 1em; }
.spiegel-header .report { font-size: 1.05rem; font-weight: 700; color: var(--accent); }
.spiegel-header .subject { color: var(--muted); text-align: right; }
h1 { font-size: 1.7rem; margin: 1.1em 0 .3em; line-height: 1.2; }
h2 { font-size: 1.3rem; margin: 1.4em 0 .4em; color: var(--accent); line-height: 1.25; }
h3 { font-size: 1.08rem; margin: 1.1em 0 .3em; }
h1, h2, h3, h4 { break-after: avoid; page-break-after: avoid; }
p, li { orphans: 3; widows: 3; }
a { color: var(--accent); }
a.anchor-link { display: none; }
blockquote { margin: .8em 0; padding: .5em .9em; border-left: 4px solid #d98e04; background: #fff7e6; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: .9em; background: var(--band); padding: 0 .2em; }
.jp-Cell { margin: 0; padding: 0; }
.jp-OutputArea-child, .jp-OutputArea-output { margin: 0; padding: 0; overflow-x: auto; }
.jp-InputPrompt, .jp-OutputPrompt, .jp-Collapser { display: none; }
.jp-RenderedText pre, pre { font-family: "DejaVu Sans Mono", monospace; font-size: .85em; white-space: pre-wrap;
                            background: var(--band); padding: .5em .7em; border-radius: 3px; }
img, svg { max-width: 100%; height: auto; }
.jp-RenderedImage, .jp-RenderedSVG, img, svg, figure { break-inside: avoid; page-break-inside: avoid; }
.jp-RenderedImage { margin: .6em 0 1em; }
table { border-collapse: collapse; margin: .5em 0 1.1em; font-size: .9rem; width: auto; max-width: 100%;
        break-inside: avoid; page-break-inside: avoid; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
th { text-align: left; font-weight: 600; border-bottom: 1.5px solid var(--ink); padding: .3em .6em; vertical-align: bottom; }
td { border-bottom: 1px solid var(--line); padding: .25em .6em; vertical-align: top; }
tbody tr:nth-child(even) td { background: #fafbfc; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.dataframe td, table.dataframe th { text-align: right; }
.spiegel-empty { color: var(--muted); font-style: italic; }
.spiegel-provenance { margin-top: 2.5em; padding-top: .8em; border-top: 1px solid var(--line);
                      color: var(--muted); font-size: .8rem; break-inside: avoid; page-break-inside: avoid; }
.spiegel-provenance h2 { font-size: .95rem; color: var(--muted); margin: 0 0 .4em; }
.spiegel-provenance dl { display: grid; grid-template-columns: max-content 1fr; gap: .15em 1.2em; margin: 0; }
.spiegel-provenance dt { font-weight: 600; }
.spiegel-provenance dd { margin: 0; overflow-wrap: anywhere; }
@page { size: A4; margin: 14mm 12mm 16mm 12mm; }
@media print {
  html { font-size: 9.5pt; }
  main, .spiegel-header { max-width: none; padding-left: 0; padding-right: 0; }
  .spiegel-header { padding-top: 0; }
  a { color: inherit; text-decoration: none; }
  tbody tr:nth-child(even) td { background: none; }
  .spiegel-newpage { break-before: page; page-break-before: always; }
  .dt-search, .dt-info, .dt-length, .dt-paging { display: none !important; }
}
div.dt-container { margin: .5em 0 1.1em; }
div.dt-container .dt-search { margin: 0 0 .4em; text-align: left; }
div.dt-container .dt-search input { font: inherit; padding: 3px 8px; border: 1px solid var(--line); border-radius: 3px;
                                    width: 18em; margin-left: .4em; }
div.dt-container .dt-info { color: var(--muted); font-size: .85rem; padding-top: .3em; }
table.dataTable.spiegel-table th, table.dataTable.spiegel-table td { text-align: left; }
table.dataTable.spiegel-table th.num, table.dataTable.spiegel-table td.num { text-align: right; }
table.dataTable.spiegel-table thead th { cursor: pointer; }
"""

TEMPLATE = r"""{%- extends 'base.html.j2' -%}
{%- block header -%}
<!DOCTYPE html>
<html lang="nl">
<head>
<meta charset="utf-8">
{{ resources.spiegel.csp }}
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<meta name="generator" content="spiegel">
<title>{{ resources.spiegel.page_title | e }}</title>
<style type="text/css">{{ resources.spiegel.css }}</style>
</head>
{%- endblock header -%}
{%- block body_header -%}
<body>
<header class="spiegel-header">
  <div class="report">{{ resources.spiegel.title | e }}</div>
  <div class="subject">{{ resources.spiegel.subtitle | e }}</div>
</header>
<main>
{%- endblock body_header -%}
{%- block body_footer -%}
{{ resources.spiegel.provenance_html }}
</main>
</body>
{%- endblock body_footer -%}
{%- block footer -%}
</html>
{%- endblock footer -%}
{%- block data_javascript -%}{%- endblock data_javascript -%}
{%- block data_widget_view -%}{%- endblock data_widget_view -%}
"""

PROVENANCE_LABELS = (
    ("extraction_date", "Datum HIS-extractie"),
    ("dataset", "Dataset"),
    ("code_version", "Codeversie"),
    ("parameter_hash", "Parameterhash"),
    ("generated_at", "Gegenereerd op"),
    ("rule", "Regel kleine aantallen"),
)


_IMG_WITHOUT_ALT = re.compile(r"<img(?![^>]*\salt=)")


def _report_exporter_class():
    """nbconvert's HTMLExporter without its BeautifulSoup pass.

    After rendering its template, ``HTMLExporter.from_notebook_node`` parses the whole page
    with BeautifulSoup to give images a default alt text and cells a ``tabindex``, and prints
    it again: half of a long report's export (measured on a HIS-analyse of the demo, 0.8 s of
    1.6 s). The reports have no code cells to focus, and ``render_html`` gives every figure
    its alt text with one regular expression; the rest of the method is kept as it is."""
    from nbconvert import HTMLExporter
    from nbconvert.exporters.templateexporter import TemplateExporter
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

    class ReportExporter(HTMLExporter):
        def from_notebook_node(self, nb, resources=None, **kw):
            langinfo = nb.metadata.get("language_info", {})
            lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
            self.register_filter("highlight_code", self.filters.get(
                "highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self)))
            resources = self._init_resources(resources)
            self.register_filter("filter_data_type", WidgetsDataTypeFilter(
                notebook_metadata=self._nb_metadata, parent=self, resources=resources))
            return TemplateExporter.from_notebook_node(self, nb, resources, **kw)

    return ReportExporter


@lru_cache(maxsize=1)
def html_exporter():
    """The configured exporter (built once per process: its set-up costs more than a render)."""
    from jinja2 import DictLoader
    exporter = _report_exporter_class()(
        template_name="lab",
        extra_loaders=[DictLoader({"spiegel.html.j2": TEMPLATE})],
        template_file="spiegel.html.j2",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    # the pygments stylesheet is only for code cells, and there are none
    exporter._preprocessors = [p for p in exporter._preprocessors
                               if type(p).__name__ != "CSSHTMLHeaderPreprocessor"]
    return exporter


def source_date() -> datetime | None:
    """``SOURCE_DATE_EPOCH`` (seconds since 1970, UTC) as a time, when set: the time a
    reproducible build stamps instead of now, so a rebuild of the same inputs gives the
    same bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    return datetime.fromtimestamp(int(epoch), tz=timezone.utc) if epoch.isascii() and epoch.isdigit() else None


def generated_at() -> str:
    """The generation time for the stamp: now, or ``source_date()``."""
    return (source_date() or datetime.now().astimezone()).strftime("%d-%m-%Y %H:%M %Z").strip()


def provenance_html(provenance: dict) -> str:
    """The stamp at the end of every report."""
    values = dict(provenance)
    values.setdefault("generated_at", generated_at())
    values.setdefault("rule", RULE_TEXT)
    rows = "".join(f"<dt>{_html.escape(label)}</dt><dd>{_html.escape(str(values.get(key, '–') or '–'))}</dd>"
                   for key, label in PROVENANCE_LABELS)
    extra = {k: v for k, v in values.items() if k not in dict(PROVENANCE_LABELS)}
    rows += "".join(f"<dt>{_html.escape(str(k))}</dt><dd>{_html.escape(str(v))}</dd>" for k, v in extra.items())
    return (f'<section class="spiegel-provenance" id="verantwoording-rapport"><h2>Herkomst van dit rapport</h2>'
            f"<dl>{rows}</dl></section>")


#: outputs that only run code in the browser: a report has no use for them
_SCRIPT_MIMES = ("application/javascript", "text/javascript", "application/vnd.jupyter.widget-view+json",
                 "application/vnd.jupyter.widget-state+json")


def _drop_diagnostics(nb):
    """The consultant's report shows results, not warnings: drop stderr streams and the
    papermill error banner; cells tagged ``remove``/``remove-cell`` go entirely. Script
    outputs go too, and the cells are numbered (``cell-0``, ...) instead of carrying
    papermill's random ids, which nbconvert writes into the page."""
    import copy
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & {"remove", "remove-cell", "remove_cell", "papermill-error-cell-tag"}:
            continue
        if cell.get("cell_type") == "code":
            cell["outputs"] = [o for o in cell.get("outputs", [])
                               if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
            if tags & {"remove-output", "remove_output"}:
                cell["outputs"] = []
            for o in cell["outputs"]:
                for mime in _SCRIPT_MIMES:
                    o.get("data", {}).pop(mime, None)
            cell["outputs"] = [o for o in cell["outputs"] if o.get("data", True)]
        cell["id"] = f"cell-{len(cells)}"
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    return nb


_EXTERNAL = [
    re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script\s*>", re.I | re.S),
    re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*/?>", re.I | re.S),
    re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.I | re.S),
    re.compile(r"@import\s+(?:url\()?\s*[\"']?(?:https?:)?//[^;]*;", re.I),
    re.compile(r"<iframe\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//.*?</iframe\s*>", re.I | re.S),
]
_CSS_URL = re.compile(r"url\(\s*[\"']?(?:https?:)?//[^)]*\)", re.I)


def strip_external(page: str) -> str:
    """Remove scripts, stylesheets, fonts and frames fetched from the network."""
    for pattern in _EXTERNAL:
        page = pattern.sub("", page)
    return _CSS_URL.sub("none", page)


# an opening or closing tag with its attributes; quoted values may hold '>'
_TAG = re.compile(r"<(/?[a-zA-Z][^\s/>]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")
# a namespace prefix (``<svg:script>`` in XHTML/SVG) is the same element
_SCRIPT_ELEMENT = re.compile(r"<(?:[a-z][\w.-]*:)?script\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*>.*?"
                             r"</(?:[a-z][\w.-]*:)?script\s*>", re.I | re.S)
_EMBEDDING = {"script", "iframe", "frame", "object", "embed", "base"}
_EVENT_ATTR = re.compile(r"(?<=[\s\"'/])on[a-z0-9_-]+\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>]*)", re.I)
_URL_ATTR = re.compile(r"(?<=[\s\"'/])((?:xlink:)?href|src|action|formaction|data|srcdoc)\s*=\s*"
                       r"(\"[^\"]*\"|'[^']*'|[^\s>]*)", re.I)
_SCRIPT_URL = re.compile(r"^(?:javascript|vbscript|data:text/html|data:application)", re.I)
_REFRESH = re.compile(r"http-equiv\s*=\s*[\"']?\s*refresh", re.I)


def _neutral_url(m: re.Match) -> str:
    value = m.group(2).strip("\"'")
    plain = re.sub(r"[\x00-\x20]+", "", _html.unescape(value))
    if m.group(1).lower() == "srcdoc" or _SCRIPT_URL.match(plain):
        return f'{m.group(1)}="#"'
    return m.group(0)


#: anything ``strip_scripts`` could change: an embedding or meta tag, an ``on*=`` attribute, a
#: ``srcdoc``, or a URL attribute whose value holds a ``:`` or an ``&`` (a scheme, or an entity
#: that could spell one); text without any of these is returned as it is, without the tag-by-tag
#: pass (a chart's SVG has thousands of tags and none of these)
_RISKY_TAG = re.compile(r"</?\s*(?:[a-z][\w.-]*:)?(?:script|iframe|frame|object|embed|base|meta)\b|srcdoc\s*=", re.I)
_RISKY_EVENT = re.compile(r"on[a-z0-9_-]+\s*=", re.I)
_RISKY_URL = re.compile(r"(?:href|src|action|data)\s*=\s*(?:\"[^\"]*[:&]|'[^']*[:&]|[^\s>]*[:&])", re.I)


def _risky(page: str) -> bool:
    """Whether ``strip_scripts`` could change anything in ``page`` (a superset of its patterns)."""
    if _RISKY_TAG.search(page) or _RISKY_URL.search(page):
        return True
    return any(m.start() > 0 and (page[m.start() - 1].isspace() or page[m.start() - 1] in "\"'/")
               for m in _RISKY_EVENT.finditer(page))


def strip_scripts(page: str) -> str:
    """Remove what could run script from the exported page: script elements (and frames,
    objects, embeds, <base>, a <meta> refresh that would navigate away), ``on*=``
    event-handler attributes and ``javascript:`` (or HTML ``data:``) URLs. The report's own
    markup has none of these.

    >>> strip_scripts('<p onclick="x()">a</p><script>y()</script>'), strip_scripts('<svg><g id="a"/></svg>')
    ('<p >a</p>', '<svg><g id="a"/></svg>')
    >>> strip_scripts('<svg:script>y()</svg:script><x:iframe src="a"></x:iframe>b')
    'b'

    """
    return _strip_scripts(page) if _risky(page) else page


def _strip_scripts(page: str) -> str:
    """``strip_scripts``' full pass, tag by tag."""
    page = _SCRIPT_ELEMENT.sub("", page)

    def tag(m: re.Match) -> str:
        name = m.group(1).lstrip("/").lower().rsplit(":", 1)[-1]   # svg:script is script
        if name in _EMBEDDING or (name == "meta" and _REFRESH.search(m.group(2))):
            return ""
        attrs = _URL_ATTR.sub(_neutral_url, _EVENT_ATTR.sub("", m.group(2)))
        return f"<{m.group(1)}{attrs}>"
    return _TAG.sub(tag, page)


INTERACTIVE_CLASS = "spiegel-interactive"   # helpers.tables.INTERACTIVE_CLASS

#: what turns the marked tables into DataTables: no paging (every row stays on the page, in the
#: report's order until a header is clicked), a search box, Dutch labels and number format
INTERACTIVE_INIT = """
document.querySelectorAll("table.spiegel-interactive").forEach(function (table) {
  new DataTable(table, {
    paging: false, order: [], autoWidth: false,
    layout: {topStart: "search", topEnd: null, bottomStart: "info", bottomEnd: null},
    language: {search: "Zoeken:", info: "_TOTAL_ rijen", infoEmpty: "Geen rijen",
               infoFiltered: "(gevonden in _MAX_ rijen)", zeroRecords: "Niets gevonden",
               emptyTable: "Geen rijen", decimal: ",", thousands: "."}
  });
});
"""

_EXPORT = re.compile(r"export\s*\{([^{}]*)\}\s*;?")


@lru_cache(maxsize=1)
def interactive_assets() -> tuple[str, str]:
    """(script, stylesheet) for the interactive tables: itables' DataTables bundle (an ES
    module; its export becomes a local ``DataTable``) followed by ``INTERACTIVE_INIT``, to be
    inlined as one ``<script type="module">``."""
    import itables
    folder = Path(itables.__file__).resolve().parent / "html"
    bundle = (folder / "dt_bundle.js").read_text(encoding="utf-8")
    exports = list(_EXPORT.finditer(bundle))
    names = dict(reversed(part.split(" as ")) if " as " in part else (part, part)
                 for part in (p.strip() for p in exports[-1].group(1).split(",")) if part) if exports else {}
    if "default" not in names or "</script" in bundle.lower():
        raise ValueError(f"{folder / 'dt_bundle.js'}: not the DataTables bundle this version of spiegel knows "
                         "(no default export, or it cannot be inlined); pin itables as in pyproject.toml")
    m = exports[-1]
    script = bundle[:m.start()] + f"const DataTable = {names['default']};" + bundle[m.end():] + INTERACTIVE_INIT
    return script, (folder / "dt_bundle.css").read_text(encoding="utf-8")


_INTERACTIVE_TABLE = re.compile(r'<table\b[^>]*\bclass\s*=\s*"[^"]*\bspiegel-interactive\b')


def has_interactive_tables(nb) -> bool:
    """Whether a cell output of ``nb`` holds a table marked ``spiegel-interactive``."""
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            page = output.get("data", {}).get("text/html", "")
            if _INTERACTIVE_TABLE.search("".join(page) if isinstance(page, list) else page):
                return True
    return False


def add_interactive_tables(page: str) -> str:
    """``page`` with sorting and search for its ``spiegel-interactive`` tables (unchanged when it
    has none): the bundle and its stylesheet inlined. The page's Content-Security-Policy must
    allow the script by hash (``render_html`` makes it so)."""
    if not _INTERACTIVE_TABLE.search(page):
        return page
    script, css = interactive_assets()
    head_end, body_end = page.find("</head>"), page.rfind("</body>")
    if head_end < 0 or body_end < 0:
        return page
    return (page[:head_end] + f'<style type="text/css">{css}</style>' + page[head_end:body_end]
            + f'<script type="module">{script}</script>' + page[body_end:])


def render_html(nb, title: str, subtitle: str = "", provenance: dict | None = None) -> str:
    """An executed notebook as one self-contained HTML page in the house style."""
    meta = nb.get("metadata", {}).get("spiegel", {}) if hasattr(nb, "get") else {}
    title = escape.single_line(meta.get("title") or title)
    subtitle = escape.single_line(subtitle)
    nb = _drop_diagnostics(nb)
    interactive = has_interactive_tables(nb)
    if interactive:
        try:
            interactive_assets()
        except (OSError, ValueError, ImportError) as exc:   # an itables we do not know: plain tables
            import warnings
            warnings.warn(f"long tables stay plain (no sorting or search): {exc}", stacklevel=2)
            interactive = False
    csp = escape.csp_meta(interactive_assets()[0]) if interactive else escape.csp_meta()
    resources = {"spiegel": {
        "title": title, "subtitle": subtitle, "css": HOUSE_CSS, "csp": csp,
        "page_title": f"{title} · {subtitle}" if subtitle else title,
        "provenance_html": provenance_html(provenance or {}),
    }}
    body, _ = html_exporter().from_notebook_node(nb, resources=resources)
    body = _IMG_WITHOUT_ALT.sub('<img alt="Figuur"', body)
    page = strip_scripts(strip_external(body))
    return add_interactive_tables(page) if interactive else page


# ---------------------------------------------------------------------------------------
# PDF
# ---------------------------------------------------------------------------------------
