"""The portal a consultant opens: ``outputs/index.html`` and ``outputs/<quarter>/index.html``.

Built from the manifests only (no patient data there): per quarter and per scope (the
practices; the hagros; the regions and the care group), every run x report with its status,
the report's key figures (declared in its registry entry) and links to the HTML, the PDF, the
slide deck ("Presentatie") and the extras, plus a search box to find a practice. One self-contained file per page:
inline CSS and a few lines of inline JavaScript, nothing fetched; a Content-Security-Policy
lets only that script run.

The portal and the manifests are shared with care-group staff: the key figures are
suppressed (``suppression.suppress_counts``) before they are stored in the manifest, and
every value from a delivery (a practice name) is escaped (``escape.html_text``).

>>> build_portal(Path("outputs"))          # doctest: +SKIP
PosixPath('outputs/index.html')
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from ..atomic import write_text
from ..escape import csp_meta, html_text
from .html import generated_at
from ..reports import REPORTS
from ..suppression import RULE_TEXT, suppress_counts
from ..tables import nl_number

STATUS_NL = {"done": "klaar", "failed": "mislukt", "skipped": "ongewijzigd"}

#: the portal's sections: (title, first column, the scopes listed in it), in page order
SECTIONS = (("Praktijken", "Praktijk", ("practice",)), ("Hagro's", "Hagro", ("hagro",)),
            ("Regio's en zorggroep", "Regio / zorggroep", ("region", "zorggroep")))

_QUARTER_DIR = re.compile(r"^\d{4}Q[1-4]$")


def figure_columns(report_id: str) -> tuple[tuple[str, str], ...]:
    """A report's key figures in portal column order: (manifest key, Dutch column title)."""
    spec = REPORTS.get(report_id)
    return spec.figure_columns() if spec is not None else ()


def key_figures(report_id: str, cube: Path, key: str) -> dict[str, str]:
    """Headline counts of one run for the manifest and the portal, both shared outputs:
    aggregates only, suppressed here as display text (``<10``). Runs in a worker; the
    figures come from the report's registry entry (a shared scope's from its ``SharedCube``)."""
    spec = REPORTS.get(report_id)
    if spec is None or spec.figures is None:
        return {}
    k = spec.compute_figures(Path(cube), key)
    names = [name for name, _ in spec.figure_columns() if name in k]
    values = pd.Series([k[n] for n in names], dtype="object")
    shown = dict(zip(names, suppress_counts(pd.to_numeric(values, errors="coerce").astype("float64"))))
    for name in spec.figures.plain:   # counts of practices or measures, not of patients
        if name in k and k[name] is not None:
            shown[name] = nl_number(k[name])
    return shown


def _shown(value) -> str:
    """A stored key figure as the portal shows it; a number from a manifest written before
    figures were stored suppressed is suppressed here."""
    return value if isinstance(value, str) else suppress_counts(pd.Series([value], dtype="float64")).iloc[0]


CSS = """
:root { --ink:#1d2430; --muted:#5b6675; --line:#d9dee5; --accent:#1f5f8b; --ok:#1e7b45; --bad:#b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font-family: "DejaVu Sans", "Segoe UI", Arial, sans-serif; color: var(--ink); font-size: 14px; }
header { padding: 18px 28px 12px; border-bottom: 3px solid var(--accent); }
header h1 { margin: 0; font-size: 22px; color: var(--accent); }
header p { margin: 4px 0 0; color: var(--muted); }
main { padding: 16px 28px 40px; }
input[type=search] { font: inherit; padding: 7px 10px; width: 320px; max-width: 100%; border: 1px solid var(--line);
                     border-radius: 4px; margin: 4px 0 14px; }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; font-weight: 600; border-bottom: 2px solid var(--ink); padding: 6px 8px; vertical-align: bottom; }
td { border-bottom: 1px solid var(--line); padding: 6px 8px; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 12px; }
.status.done { background: #e3f3e8; color: var(--ok); }
.status.failed { background: #fbe4e2; color: var(--bad); }
.status.missing { background: #eef0f3; color: var(--muted); }
.stale { color: #8a5a00; font-size: 12px; }
.links a { margin-right: 8px; }
.muted { color: var(--muted); }
.err { color: var(--bad); font-size: 12px; }
details { font-size: 12px; }
h2 { font-size: 16px; margin: 22px 0 6px; }
footer { color: var(--muted); font-size: 12px; padding: 0 28px 24px; }
a { color: var(--accent); }
"""

SEARCH_JS = """
document.getElementById('zoek').addEventListener('input', function () {
  var q = this.value.trim().toLowerCase();
  document.querySelectorAll('tbody tr[data-search]').forEach(function (tr) {
    tr.style.display = (!q || tr.getAttribute('data-search').indexOf(q) >= 0) ? '' : 'none';
  });
});
"""


_e = html_text


def _page(title: str, subtitle: str, body: str, search: bool) -> str:
    script = f"<script>{SEARCH_JS}</script>" if search else ""
    return (f'<!DOCTYPE html><html lang="nl"><head><meta charset="utf-8">{csp_meta(SEARCH_JS)}'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>{_e(title)}</h1><p>{_e(subtitle)}</p></header>"
            f"<main>{body}</main><footer>Gemaakt door spiegel op {_e(generated_at())}. "
            f"Kleine aantallen: {_e(RULE_TEXT)}.</footer>{script}</body></html>")


def _link(root: Path, rel: str | None, label: str) -> str:
    if not rel or not (root / rel).exists():
        return ""
    return f'<a href="{_e(Path(rel).as_posix())}">{_e(label)}</a>'


def quarter_page(outputs: Path, quarter: str) -> Path | None:
    """Write ``outputs/<quarter>/index.html`` from its manifest; None when there is none."""
    root = Path(outputs) / quarter
    manifest_file = root / "manifest.json"
    if not manifest_file.exists():
        return None
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    runs = manifest.get("runs", {})
    counts = {"done": 0, "failed": 0}
    named = {s for _t, _f, scopes in SECTIONS for s in scopes}
    groups = [(title, first, {n: r for n, r in runs.items() if r.get("scope", "practice") in scopes})
              for title, first, scopes in SECTIONS]
    # a scope no section names (a manifest of a newer version): listed last, not lost
    groups.append(("Overig", "Naam", {n: r for n, r in runs.items() if r.get("scope", "practice") not in named}))
    groups = [g for g in groups if g[2]] or [groups[0]]
    sections = [_section(root, title, first, chosen, counts, headed=len(groups) > 1)
                for title, first, chosen in groups]
    n_practices = len({r["key"] for r in runs.values() if r.get("scope", "practice") == "practice"})
    updated = manifest.get("updated_at", "")
    body = (f'<p><a href="../index.html">&larr; alle kwartalen</a></p>'
            f'<input type="search" id="zoek" placeholder="Zoek een praktijk (naam of AGB)" autofocus>'
            + "".join(sections))
    subtitle = (f"{n_practices} praktijken · {counts.get('done', 0)} rapporten klaar, "
                f"{counts.get('failed', 0)} mislukt · bijgewerkt {updated[:16].replace('T', ' ')}")
    out = root / "index.html"
    write_text(out, _page(f"Spiegel · {quarter}", subtitle, body, search=True))
    return out


def _section(root: Path, title: str, first: str, runs: dict, counts: dict, headed: bool) -> str:
    """One table: a row per practice / hagro / region, a column per report and key figure."""
    reports = sorted({r["report"] for r in runs.values()})
    rows: dict[tuple, dict] = {}
    for name, r in runs.items():
        row_key = (r.get("scope", "practice") != "practice", r.get("scope", "practice"), r["key"])
        rows.setdefault(row_key, {"scope": r.get("scope", "practice"), "key": r["key"],
                                  "label": r.get("label", r["key"]), "runs": {}})
        rows[row_key]["runs"][r["report"]] = r
    figure_cols = []
    for rep in reports:
        figure_cols += [(rep, k, t) for k, t in figure_columns(rep)]
    practices = any(r["scope"] == "practice" for r in rows.values())
    head = f"<th>{_e(first)}</th>" + ("<th>AGB</th>" if practices else "")
    head += "".join(f"<th>{_e(REPORTS[rep].title_nl if rep in REPORTS else rep)}</th>" for rep in reports)
    head += "".join(f'<th class="num">{_e(t)}</th>' for _rep, _k, t in figure_cols)
    body_rows = []
    for rk in sorted(rows):
        row = rows[rk]
        scope_nl = {"hagro": "hagro", "zorggroep": "zorggroep"}.get(row["scope"], "regio")
        cells = [f"<td>{_e(row['label'])}</td>"]
        if practices:
            cells.append(f"<td>{_e(row['key']) if row['scope'] == 'practice' else f'<span class=muted>{scope_nl}</span>'}</td>")
        for rep in reports:
            cells.append(_run_cell(root, row["runs"].get(rep), counts))
        for rep, k, _t in figure_cols:
            value = ((row["runs"].get(rep) or {}).get("figures") or {}).get(k)
            cells.append(f'<td class="num">{_e("" if value is None else _shown(value))}</td>')
        search = f"{row['label']} {row['key']}".lower()
        body_rows.append(f'<tr data-search="{_e(search)}">{"".join(cells)}</tr>')
    heading = f"<h2>{_e(title)}</h2>" if headed else ""
    return f"{heading}<table><thead><tr>{head}</tr></thead><tbody>{''.join(body_rows)}</tbody></table>"


def _run_cell(root: Path, r: dict | None, counts: dict) -> str:
    """A report's cell: status, links to HTML, PDF and extras, a stale-data note or the error."""
    if r is None:
        return '<td><span class="status missing">–</span></td>'
    status = r.get("status", "failed")
    counts[status] = counts.get(status, 0) + 1
    outs = r.get("outputs", {})
    links = [_link(root, outs.get("html", {}).get("path"), "HTML"),
             _link(root, outs.get("pdf", {}).get("path"), "PDF"),
             _link(root, outs.get("slides", {}).get("path"), "Presentatie")]
    extras = [_link(root, x.get("path"), Path(x.get("path", "")).stem.replace("werklijst_", ""))
              for x in r.get("extras", [])]
    extras = [x for x in extras if x]
    cell = f'<span class="status {_e(status)}">{_e(STATUS_NL.get(status, status))}</span> '
    cell += '<span class="links">' + "".join(x for x in links if x) + "</span>"
    if extras:
        cell += f"<details><summary>werklijsten ({len(extras)})</summary>{'<br>'.join(extras)}</details>"
    stale = r.get("stale_data")
    if status == "done" and stale:
        # the report stands on the previous delivery: say so, and why the new one was refused
        cell += f'<div class="stale">{_e(stale.get("note_nl", "Gebaseerd op de vorige levering."))}'
        if stale.get("first_problem"):
            cell += f'<br>Eerste probleem: {_e(str(stale["first_problem"])[:200])}'
        cell += "</div>"
    if status != "done" and r.get("error"):
        err = r["error"]
        where = f"cel {err['cell_index']}: " if err.get("cell_index") is not None else ""
        cell += f'<div class="err">{_e(err.get("stage"))}: {_e(where)}{_e(err.get("message", "")[:200])}</div>'
        cell += _link(root, r.get("log"), "log")
    return f"<td>{cell}</td>"


def build_portal(outputs: Path) -> Path:
    """(Re)write every quarter page and ``outputs/index.html``; returns the latter."""
    outputs = Path(outputs)
    quarters = sorted((p.name for p in outputs.iterdir() if p.is_dir() and _QUARTER_DIR.match(p.name)),
                      reverse=True) if outputs.exists() else []
    items = []
    for q in quarters:
        page = quarter_page(outputs, q)
        if page is None:
            continue
        manifest = json.loads((outputs / q / "manifest.json").read_text(encoding="utf-8"))
        runs = manifest.get("runs", {}).values()
        done = sum(1 for r in runs if r.get("status") == "done")
        failed = sum(1 for r in runs if r.get("status") != "done")
        practices = len({r["key"] for r in runs if r.get("scope") == "practice"})
        items.append(f'<tr data-search="{_e(q.lower())}"><td><a href="{_e(q)}/index.html">{_e(q)}</a></td>'
                     f'<td class="num">{practices}</td><td class="num">{done}</td><td class="num">{failed}</td>'
                     f"<td>{_e(manifest.get('updated_at', '')[:16].replace('T', ' '))}</td></tr>")
    body = ('<table><thead><tr><th>Kwartaal</th><th class="num">Praktijken</th><th class="num">Klaar</th>'
            f'<th class="num">Mislukt</th><th>Bijgewerkt</th></tr></thead><tbody>{"".join(items)}</tbody></table>')
    if not items:
        body = '<p class="muted">Nog geen rapporten: draai <code>spiegel build parameters/demo.yaml</code>.</p>'
    out = outputs / "index.html"
    write_text(out, _page("Spiegel · rapporten", f"{len(items)} {'kwartaal' if len(items) == 1 else 'kwartalen'}", body, search=False))
    return out
