"""The plan: which practices, regions and quarters (``resolve_selection``), the named runs with
their fixed output paths and validated parameters (``plan_runs``), and what a refused or stale
delivery means for them.

A selection or a run that cannot be planned is a :class:`~helpers.errors.Problem` of the batch
file's key (or the report's parameter), one line each, all raised together as for the batch
file itself (``helpers.batch.batchfile``):

>>> import pandas as pd
>>> df = pd.DataFrame({"practice_agb": ["01000001"], "region": ["N"], "extraction_date": ["2025-07-01"]})
>>> resolve_selection(Batch(name="b", source="b.yaml", practices=["01000009"], quarters=["2025Q2"],
...                         warehouse=Path("w.duckdb")), df, {})
Traceback (most recent call last):
...
helpers.errors.ParameterError: b.yaml, practices: found '01000009', expected a practice in the warehouse w.duckdb (known: 01000001); check --practice or `practices:` in b.yaml
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path

from ..config import PROJECT_ROOT, cube_dir
from ..errors import ParameterError, Problem
from ..identifiers import is_agb
from ..quarter import Quarter
from ..reports import KEY_TYPES, REPORTS, validate_params
from .batchfile import At, Batch
from .cache import code_version, environment_fingerprint, key_params, region_data_hash, run_cache_key, _sha


def slug(text: str) -> str:
    """A region name as a folder name: ``Utrecht-West`` stays, spaces and slashes go."""
    s = re.sub(r"[^\w.-]+", "-", str(text).strip(), flags=re.UNICODE).strip("-.")
    return s or "onbekend"


def _fmt_date(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    try:
        import pandas as pd
        if pd.isna(value):
            return "–"
        return pd.Timestamp(value).strftime("%d-%m-%Y")
    except (ValueError, TypeError):
        return str(value)


#: the folder of each shared scope under ``outputs/<quarter>/``, and how a run of it is named
SCOPE_FOLDERS = {"hagro": "hagro", "region": "regio", "zorggroep": "regio"}
#: the one key of the care group's run (and its folder under ``regio/``)
ZORGGROEP_KEY = "zorggroep"
#: the practices table's column that groups practices into a shared scope's keys
SCOPE_COLUMNS = {"hagro": "hagro", "region": "region"}
#: the Dutch label of a run per scope (the portal's first column)
SCOPE_LABELS_NL = {"hagro": "Hagro {key}", "region": "Regio {key}", "zorggroep": "Zorggroep (alle praktijken)"}


def scope_label(scope: str, key: str) -> str:
    """The Dutch label of a shared run, without saying the scope twice.

    >>> scope_label("hagro", "Hagro Zeist"), scope_label("hagro", "Zeist"), scope_label("region", "Utrecht")
    ('Hagro Zeist', 'Hagro Zeist', 'Regio Utrecht')
    """
    word = SCOPE_LABELS_NL[scope].split(" ")[0]
    if "{key}" in SCOPE_LABELS_NL[scope] and str(key).lower().startswith(word.lower() + " "):
        return str(key)
    return SCOPE_LABELS_NL[scope].format(key=key)


def run_name(report_id: str, scope: str, key: str) -> str:
    """``<agb>-<report>``, ``regio-<slug>-<report>``, ``hagro-<slug>-<report>``, ``zorggroep-<report>``.

    >>> run_name("his_analyse", "practice", "01000001"), run_name("r", "region", "Utrecht West")
    ('01000001-his_analyse', 'regio-Utrecht-West-r')
    """
    if scope == "practice":
        return f"{key}-{report_id}"
    if scope == "zorggroep":
        return f"zorggroep-{report_id}"
    prefix = SCOPE_FOLDERS[scope]
    return f"{prefix}-{slug(key)}-{report_id}"


def run_dir(outputs: Path, quarter: str, scope: str, key: str) -> Path:
    """practice: ``<q>/<agb>/``; region: ``<q>/regio/<slug>/``; hagro: ``<q>/hagro/<slug>/``;
    zorggroep: ``<q>/regio/zorggroep/``.

    >>> [run_dir(Path("out"), "2026Q3", s, k).as_posix() for s, k in
    ...  [("practice", "01000001"), ("region", "Utrecht West"), ("hagro", "Hagro Zeist"), ("zorggroep", "zorggroep")]]
    ['out/2026Q3/01000001', 'out/2026Q3/regio/Utrecht-West', 'out/2026Q3/hagro/Hagro-Zeist', 'out/2026Q3/regio/zorggroep']
    """
    if scope == "practice":
        return outputs / quarter / key
    if scope == "zorggroep":
        return outputs / quarter / SCOPE_FOLDERS["zorggroep"] / ZORGGROEP_KEY
    return outputs / quarter / SCOPE_FOLDERS[scope] / slug(key)


def _groups(practices_df, column: str) -> dict[str, str]:
    """practice_agb -> its group in ``column`` (region, hagro); practices without one are left out."""
    if not len(practices_df) or column not in practices_df.columns:
        return {}
    return {str(r["practice_agb"]): str(r[column]) for r in practices_df.to_dict("records")
            if r.get(column) is not None and str(r[column]).strip() not in ("", "nan", "None", "<NA>")}


def scope_members(scope: str, practices_df) -> dict[str, str]:
    """practice_agb -> the key of the run of ``scope`` it belongs to (practice: itself; the
    care group: ``zorggroep`` for every practice). A practice without a hagro is in no hagro.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"practice_agb": ["01000001", "01000002"], "region": ["N", "N"], "hagro": ["H1", None]})
    >>> scope_members("hagro", df), scope_members("zorggroep", df)
    ({'01000001': 'H1'}, {'01000001': 'zorggroep', '01000002': 'zorggroep'})
    """
    if scope == "practice":
        return {str(a): str(a) for a in practices_df["practice_agb"]} if len(practices_df) else {}
    if scope == "zorggroep":
        return {str(a): ZORGGROEP_KEY for a in practices_df["practice_agb"]} if len(practices_df) else {}
    return _groups(practices_df, SCOPE_COLUMNS[scope])


def resolve_selection(b: Batch, practices_df, refused: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """Practices, regions and quarters of the batch, checked against the warehouse."""
    problems: list[Problem] = []
    in_warehouse = [str(a) for a in practices_df["practice_agb"]] if len(practices_df) else []
    # a refused practice still gets a (failed) run that says why; a key that is not even an
    # AGB code (a stray folder under extracts/) cannot, and is reported by ingest instead
    runnable_refused = sorted(a for a in refused if is_agb(str(a)))
    known = list(dict.fromkeys(in_warehouse + runnable_refused))
    if not known:
        raise ParameterError.from_problems([At(b.source, "warehouse").problem(
            b.warehouse, "a warehouse that holds practices (this one holds no practices)",
            f"run `spiegel ingest <dataset>` first (or name the dataset in {b.source})")])
    if b.practices is None:
        practices = known
    else:
        practices = []
        for agb in b.practices:
            if agb not in known:
                problems.append(At(b.source, "practices").problem(
                    agb, f"a practice in the warehouse {b.warehouse.name} "
                         f"(known: {', '.join(known[:12])}{' ...' if len(known) > 12 else ''})",
                    f"check --practice or `practices:` in {b.source}"))
            else:
                practices.append(agb)
    regions_of = {str(r["practice_agb"]): r.get("region") for r in practices_df.to_dict("records")}
    regions = sorted({str(regions_of[a]) for a in practices if regions_of.get(a) is not None
                      and str(regions_of[a]) not in ("", "nan", "None")})
    dates = {a: d for a, d in extraction_dates(practices_df).items() if a in practices}
    if b.quarters is None:
        quarters = []
        if dates:
            q = Quarter.latest_complete(max(dates.values()))
            for _ in range(b.latest):            # `latest N`: the N latest, oldest first
                quarters.insert(0, str(q))
                q = q.previous()
        if not dates and not problems:  # with unknown practices that is the one problem to show
            problems.append(At(b.source, "quarters").problem(
                "latest", "an extraction date in the warehouse for the selected practices (there is none)",
                "name the quarter (--quarter 2025Q2)"))
    else:
        quarters = list(b.quarters)
        problems += [p for p in (_beyond_every_extraction(Quarter.parse(q), dates, At(b.source, "quarters"))
                                 for q in quarters) if p]
    if problems:
        raise ParameterError.from_problems(problems)
    return practices, regions, quarters


def _beyond_every_extraction(q: Quarter, dates: dict[str, date], where: At) -> Problem | None:
    """A quarter that no selected practice's data cover completely refuses the whole build (a
    quarter some practices cover runs for those; the others fail with the reason, _not_covered)."""
    if not dates or any(d >= q.last_day for d in dates.values()):
        return None
    newest = max(dates.values())
    limiting = sorted(a for a, d in dates.items() if d == newest)
    names = ", ".join(limiting[:5]) + (f" and {len(limiting) - 5} more" if len(limiting) > 5 else "")
    return where.problem(
        str(q), f"a quarter complete at the newest extraction date of the selected practices, {newest:%d-%m-%Y} "
                f"(practice{'s' if len(limiting) > 1 else ''} {names}): the latest quarter possible is "
                f"{Quarter.latest_complete(newest)}", "choose it or an earlier one, or `latest`")


def plan_runs(b: Batch, practices_df, hashes: dict[str, str], refused: dict[str, str],
              practices: list[str], regions: list[str], quarters: list[str]) -> list:
    """Every named run of the sweep with its parameters validated, paths and cache key.

    Per report, its scope (registry) decides the runs: one per selected practice, per hagro or
    region of the selected practices, or one for the care group; the parameter of the matching
    type (``practice``, ``hagro``, ``region``) takes the run's key, ``sweep`` parameters the
    warehouse and the cube."""
    from ..cube.prepare import code_hash, parameters_hash
    from ..runner import RunSpec
    from ..runner.spec import output_name
    env = environment_fingerprint()
    p_hash, c_hash = parameters_hash(), code_hash()
    version = code_version(c_hash)
    rows = {str(r["practice_agb"]): r for r in practices_df.to_dict("records")}
    practice_regions = _groups(practices_df, "region")
    practice_hagros = _groups(practices_df, "hagro")
    known = {"practice": set(rows) | set(refused), "region": set(practice_regions.values()),
             "hagro": set(practice_hagros.values())}
    selected_hagros = sorted({practice_hagros[a] for a in practices if a in practice_hagros})
    keys_of = {"practice": list(practices), "region": list(regions), "hagro": selected_hagros,
               "zorggroep": [ZORGGROEP_KEY] if practices else []}
    dataset_label = _dataset_label(b)
    extracted_on = extraction_dates(practices_df)
    specs: list = []
    problems: list[Problem] = []
    for quarter in quarters:
        q = Quarter.parse(quarter)
        cube = cube_dir(b.warehouse, quarter)
        for report_id in b.reports:
            if report_id not in REPORTS:
                problems.append(At(b.source, "reports").problem(report_id, f"a report id: {', '.join(REPORTS)}"))
                continue
            spec = REPORTS[report_id]
            nb_path = Path(spec.notebook)
            if not nb_path.exists():
                problems.append(Problem(str(nb_path), None, None, None, f"the notebook of report {report_id} "
                                        "(the file does not exist)", fix="restore it or fix the report's notebook path"))
                continue
            nb_hash = _sha(nb_path.read_bytes())
            formats = [f for f in b.formats if f in spec.formats]
            groups = scope_members(spec.scope, practices_df) if spec.scope != "practice" else {}
            for key in keys_of[spec.scope]:
                params = {}
                for p in spec.params:
                    if p.type == KEY_TYPES.get(spec.scope):
                        params[p.name] = key
                    elif p.type == "quarter":
                        params[p.name] = quarter
                    elif p.sweep == "warehouse":
                        params[p.name] = str(b.warehouse)
                    elif p.sweep == "cube":
                        params[p.name] = str(cube)
                params.update(b.params.get(report_id, {}))
                try:
                    params = validate_params(report_id, params, known["practice"], known["region"], known["hagro"])
                except ParameterError as e:
                    if not e.problems:
                        raise
                    problems += e.problems
                    continue
                if spec.scope == "practice":
                    members = [key]
                    row = rows.get(key, {})
                    data_hash = hashes.get(key, "")
                    label = str(row.get("name") or key)
                    extraction = _fmt_date(row.get("extraction_date"))
                    data_version = f"{key}: {data_hash[:12] or 'niet geladen'}"
                else:
                    members = [a for a, g in groups.items() if g == key]
                    data_hash = region_data_hash(key, groups, hashes)
                    label = scope_label(spec.scope, key)
                    dates = sorted(_fmt_date(rows[a].get("extraction_date")) for a in members)
                    extraction = dates[0] if len(set(dates)) == 1 else f"{dates[0]} t/m {dates[-1]}"
                    data_version = f"{len(members)} praktijken: {data_hash[:12]}"
                kp = key_params(report_id, params)
                cache_key = run_cache_key(notebook_hash=nb_hash, params=kp, data_hash=data_hash,
                                          parameters_hash=p_hash, code_hash=c_hash, environment=env,
                                          formats=formats)
                name = run_name(report_id, spec.scope, key)
                outdir = run_dir(b.outputs, quarter, spec.scope, key)
                files = {f: str(outdir / output_name(report_id, f)) for f in ("ipynb", "html", *formats)}
                provenance = {
                    "extraction_date": extraction,
                    "dataset": f"{dataset_label}; gegevens {data_version}",
                    "code_version": version,
                    "parameter_hash": _sha(json.dumps(kp, sort_keys=True) + p_hash)[:12],
                }
                pre_failed = None
                if spec.scope == "practice" and key in refused and key not in rows:
                    pre_failed = {"stage": "ingest", "message": refusal_line(key, refused[key])}
                elif spec.scope == "practice" and key in refused:
                    provenance["dataset"] += "; vorige levering (de nieuwe is geweigerd)"
                if pre_failed is None:
                    pre_failed = _not_covered(q, {a: extracted_on[a] for a in members if a in extracted_on},
                                              spec.scope, key)
                specs.append(RunSpec(
                    name=name, quarter=quarter, report=report_id, scope=spec.scope, key=key, label=label,
                    notebook=str(nb_path), params=params, formats=formats, outdir=str(outdir), files=files,
                    partial_path=str(outdir / f"{report_id}.failed.ipynb"),
                    log_path=str(b.outputs / quarter / "logs" / f"{name}.log"), cube_path=str(cube),
                    cache_key=cache_key, timeout=b.timeout, title=spec.title_nl,
                    subtitle=f"{label} · {q.label_nl}", provenance=provenance, pre_failed=pre_failed))
    if problems:
        raise ParameterError.from_problems(problems)
    return specs


def first_problem(message: str) -> str:
    """The first problem of an ingest refusal (``file, line, column: ...``), scrubbed for shared
    outputs; an ingest failure without a problem list gives its first line.

    >>> first_problem("practice 01000001 refused: 2 problem(s) with the data contract\\n"
    ...               "  - patients.csv, line 14, column birth_year: found '19x5', expected a whole number\\n  - x")
    "patients.csv, line 14, column birth_year: found '…', expected a whole number"
    """
    items = [line.strip()[2:] for line in str(message).splitlines() if line.strip().startswith("- ")]
    return _first_line(items[0] if items else message)


def refusal_line(agb: str, message: str) -> str:
    """One line for a practice whose delivery was refused: the first problem, and how many more."""
    m = re.search(r"refused: ([0-9]+) problem", str(message))
    more = int(m.group(1)) - 1 if m else 0
    verb = "refused" if m else "not loaded"
    return f"delivery of practice {agb} {verb}: {first_problem(message)}" + (f" (and {more} more)" if more > 0 else "")


def previous_loads(warehouse: Path) -> dict[str, str]:
    """practice_agb -> when its data now in the warehouse were loaded (ISO)."""
    from ..warehouse import Warehouse
    if not Path(warehouse).exists():
        return {}
    with Warehouse(warehouse).connect(read_only=True) as con:
        rows = con.execute("SELECT practice_agb, loaded_at FROM loads").fetchall()
    return {str(agb): (at.isoformat(timespec="seconds") if hasattr(at, "isoformat") else str(at)) for agb, at in rows}


def stale_data(refused: dict[str, str], loads: dict[str, str], unreadable=frozenset()) -> dict[str, dict]:
    """The practices whose new delivery was refused (or, in ``unreadable``, could not be read)
    while their previous delivery is intact in the warehouse: their reports are (re)built from
    it, and the manifest entry says so (``stale_data``)."""
    out = {}
    for agb, message in refused.items():
        if agb in loads:
            failed = agb in unreadable
            loaded = datetime.fromisoformat(loads[agb]).strftime("%d-%m-%Y %H:%M")
            out[agb] = {
                "reason": "failed" if failed else "refused",
                "first_problem": first_problem(message),
                "previous_loaded_at": loads[agb],
                "note_nl": f"Gebaseerd op de vorige levering (geladen {loaded}): de nieuwe levering is "
                           f"{'niet te lezen' if failed else 'geweigerd'}.",
            }
    return out


def stale_of(spec, stale: dict[str, dict]) -> dict | None:
    """The manifest's ``stale_data`` for a run of a practice whose new delivery was refused."""
    if spec.scope == "practice" and spec.key in stale:
        return {"stale_data": stale[spec.key]}
    return None


def stale_line(agb: str, info: dict) -> str:
    what = "not readable" if info["reason"] == "failed" else "refused"
    return (f"  practice {agb}: new delivery {what} ({info['first_problem']}); its report is built "
            f"from the previous delivery still in the warehouse (loaded {info['previous_loaded_at'][:16].replace('T', ' ')})")


def extraction_dates(practices_df) -> dict[str, date]:
    """practice_agb -> extraction date of its data in the warehouse."""
    import pandas as pd
    stamps = pd.to_datetime(practices_df["extraction_date"], errors="coerce") if len(practices_df) else []
    return {str(a): d.date() for a, d in zip(practices_df["practice_agb"], stamps) if pd.notna(d)}


def _not_covered(q: Quarter, dates: dict[str, date], scope: str, key: str) -> dict | None:
    """A run whose quarter is not complete at its practices' extraction date cannot start: a
    partly covered quarter would report missing controls that were simply not extracted yet."""
    late = {a: d for a, d in dates.items() if d < q.last_day}
    if not late:
        return None
    agb, day = min(late.items(), key=lambda kv: kv[1])
    whose = {"practice": f"practice {agb}", "zorggroep": f"practice {agb} of the care group"}.get(
        scope, f"practice {agb} of {scope} {key}")
    return {"stage": "quarter",
            "message": f"quarter {q} ends on {q.last_day:%d-%m-%Y}, after the extraction date {day:%d-%m-%Y} of "
                       f"{whose}: its data cover up to {Quarter.latest_complete(day)}; deliver a newer "
                       f"extraction or build an earlier quarter"}


def _first_line(text: str, limit: int = 240) -> str:
    """First line of a message, with quoted values scrubbed (it goes to shared outputs)."""
    from ..suppression import scrub_message
    lines = [s.strip() for s in str(text).splitlines() if s.strip()]
    line = scrub_message(lines[0]) if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _dataset_label(b: Batch) -> str:
    target = b.dataset if b.dataset is not None else b.warehouse
    try:
        return str(Path(target).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return Path(target).name


def notebook_imports(paths) -> list[str]:
    """Modules the notebooks import at top level: the kernel factory pre-imports them."""
    import ast
    mods: list[str] = []
    for path in paths:
        try:
            nb = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for cell in nb.get("cells", []):
            if cell.get("cell_type") != "code":
                continue
            src = "".join(cell.get("source", []))
            src = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
            try:
                tree = ast.parse(src)
            except SyntaxError:
                continue
            for node in tree.body:
                if isinstance(node, ast.Import):
                    mods += [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    mods.append(node.module)
                    mods += [f"{node.module}.{a.name}" for a in node.names]
    return list(dict.fromkeys(mods))
