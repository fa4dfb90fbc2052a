"""Tables for reports: Dutch number formats, no index column, one CSS class.

A table of more than ``INTERACTIVE_ROWS`` rows (worklists, findings, the frequent attenders)
is marked ``spiegel-interactive``: the screen HTML gets sorting and a search box for it
(``helpers.render.html``, DataTables as itables bundles it, inlined, offline), while the table
itself stays the plain, escaped HTML table below, which the PDF prints as it is.

>>> nl_number(1234.5, 1)
'1.234,5'
>>> nl_pct(12.345)
'12,3%'
"""

from __future__ import annotations

import pandas as pd

from .escape import html_text


def nl_number(x, decimals: int = 0) -> str:
    """A number in Dutch notation (thousands '.', decimals ',')."""
    if x is None or pd.isna(x):
        return "–"
    s = f"{x:,.{decimals}f}"
    return s.replace(",", "_").replace(".", ",").replace("_", ".")


def nl_pct(x, decimals: int = 1) -> str:
    return "–" if x is None or pd.isna(x) else nl_number(x, decimals) + "%"


def nl_delta(now, before) -> str:
    """A change against the previous quarter with its sign (``+3``, ``−2``, ``0``)."""
    if before is None or pd.isna(before) or now is None or pd.isna(now):
        return "–"
    d = int(now) - int(before)
    return f"+{d}" if d > 0 else ("0" if d == 0 else f"−{abs(d)}")


#: a table with more rows than this becomes sortable and searchable in the screen HTML
INTERACTIVE_ROWS = 15

#: the class that marks such a table (``helpers.render.html`` looks for it)
INTERACTIVE_CLASS = "spiegel-interactive"


def to_html(df: pd.DataFrame, align_right: tuple[str, ...] = (), empty: str = "Geen.",
            css_class: str = "spiegel-table", interactive: bool | None = None) -> str:
    """A display-ready DataFrame as an HTML table without index; cells are escaped.
    ``interactive`` (default: more than ``INTERACTIVE_ROWS`` rows) adds ``INTERACTIVE_CLASS``.

    >>> "spiegel-interactive" in to_html(pd.DataFrame({"a": range(16)})), "spiegel-interactive" in to_html(pd.DataFrame({"a": [1]}))
    (True, False)
    """
    if df is None or df.empty:
        return f'<p class="spiegel-empty">{html_text(empty)}</p>'
    head = "".join(f'<th class="{"num" if c in align_right else ""}">{html_text(c)}</th>' for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = "".join(
            f'<td class="{"num" if c in align_right else ""}">{html_text("" if pd.isna(v) else v)}</td>'
            for c, v in zip(df.columns, row))
        body.append(f"<tr>{cells}</tr>")
    if interactive if interactive is not None else len(df) > INTERACTIVE_ROWS:
        css_class = f"{css_class} {INTERACTIVE_CLASS}"
    return (f'<table class="{css_class}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def show(df: pd.DataFrame, align_right: tuple[str, ...] = (), empty: str = "Geen.",
         interactive: bool | None = None):
    """Display a table in a notebook (HTML), as every report table is shown; ``interactive``
    as for ``to_html`` (long tables sort and search in the screen HTML)."""
    from IPython.display import HTML, display
    display(HTML(to_html(df, align_right, empty, interactive=interactive)))
