"""The one place that makes delivery text safe for where it lands.

A value from a delivery (practice name, region, hagro, HIS system, AGB, patient number,
code) is data, never markup: each output context has its own function here, and every
module that puts such a value into a report, the portal, a figure or a worklist calls
the one for its context. Single-line contexts (headings, list items, titles, labels,
cells) get line breaks and other control characters collapsed to one space, so a name
cannot start a new Markdown block ("\\n# fake heading") or a new header line.

>>> markdown("<img src=x onerror=alert(1)>")
'&#60;img src&#61;x onerror&#61;alert&#40;1&#41;&#62;'
>>> markdown("[klik](javascript:alert(1))")
'&#91;klik&#93;&#40;javascript&#58;alert&#40;1&#41;&#41;'
>>> csv_cell("=HYPERLINK(\\"http://x\\")")
'\\'=HYPERLINK("http://x")'
>>> mpl_text("$x$")
'\\\\$x\\\\$'
"""

from __future__ import annotations

import base64
import hashlib
import html as _html
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")

# HTML's specials, CommonMark's ASCII punctuation that can open or close inline or block
# syntax, `$` (nbconvert's Markdown treats $...$ as math) and `:` (the autolinks of some
# renderers, `javascript:` among them), each as a numeric character reference: every
# Markdown renderer (mistune in nbconvert, marked in JupyterLab) shows them as the
# literal character and never parses them as syntax, unlike backslash escapes, which
# some renderers ignore inside some constructs.
_MARKDOWN_SPECIAL = re.compile(r"[&<>\"'\\`*_{}\[\]()#+\-.!|~$:=]")

#: first characters that make Excel/LibreOffice read a cell as a formula (OWASP CSV injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def single_line(value) -> str:
    """``value`` as text on one line: line breaks and control characters become one space."""
    return _CONTROL.sub(" ", "" if value is None else str(value))


def html_text(value) -> str:
    """Text for an HTML element's content or a quoted attribute value (one line)."""
    return _html.escape(single_line(value), quote=True)


def markdown(value) -> str:
    """Text for a Markdown cell or ``IPython.display.Markdown`` (one line): HTML is escaped
    and every Markdown special character is a character reference, so no link, emphasis,
    heading, list, table, math or raw HTML can come out of a value."""
    return _MARKDOWN_SPECIAL.sub(lambda m: f"&#{ord(m.group())};", single_line(value))


def mpl_text(value) -> str:
    """Text for a matplotlib title, label or tick (one line): a ``$`` would start mathtext.
    The SVG backend escapes XML itself."""
    return single_line(value).replace("$", r"\$")


def svg_text(value) -> str:
    """Text for an SVG ``<text>`` element written by ``helpers.svgchart`` (one line): XML's
    specials escaped, so a label is always text and never markup.

    >>> svg_text('<tspan onload="x">&')
    '&lt;tspan onload=&quot;x&quot;&gt;&amp;'
    """
    return html_text(value)


def csv_cell(value):
    """A worklist cell for Excel. Text that starts with a formula character gets a leading
    ``'`` (OWASP), which Excel shows as text. Only text is touched: numbers we computed
    (birth year) stay numbers, while text that looks like a negative number (a patient
    number ``-12``) is neutralised too, because a delivered ``-1+2`` is a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def pdf_text(value) -> str:
    """Text for the PDF's title (the HTML ``<title>``) and its header/footer templates,
    which Chromium renders as HTML: one line, HTML-escaped."""
    return html_text(value)


NO_SCRIPT = "'none'"


def csp_meta(*scripts: str) -> str:
    """The second wall: a Content-Security-Policy ``<meta>`` for the head of a report or a
    portal page. Nothing is loaded from anywhere (images only as data: URIs), inline styles
    are allowed (the house CSS, matplotlib's SVG), and the only script that runs is one of
    ``scripts``, by hash: no inline event handler, no ``javascript:`` URL, no injected
    ``<script>``."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in scripts)
    policy = (f"default-src 'none'; script-src {hashes or NO_SCRIPT}; "
              "style-src 'unsafe-inline'; img-src data:; font-src data:; "
              "base-uri 'none'; form-action 'none'; object-src 'none'")
    return f'<meta http-equiv="Content-Security-Policy" content="{_html.escape(policy, quote=True)}">'
