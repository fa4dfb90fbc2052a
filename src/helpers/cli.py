"""The ``spiegel`` command: demo-data, ingest, prepare, build, explain, lab.

User errors (``SpiegelError``) are printed as a short message without a traceback and
exit with the status of :data:`helpers.errors.EXIT_CODES` (2, or 3 for a busy warehouse);
everything else is a bug and keeps its traceback. The environment is
read once here (``Settings.from_env()``) and passed down.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .config import DEFAULT_LOCK_WAIT, DEMO_DATASET, INDICATORS_DIR, Settings
from .errors import EXIT_CODES_HELP, ParameterError, SpiegelError, exit_code


def _cmd_demo_data(args, settings: Settings) -> int:
    from .demo import generate
    from .demo.flags import parse_demo_flags
    flags = parse_demo_flags({"practices": args.practices, "regions": args.regions, "seed": args.seed,
                              "extraction_date": args.extraction_date})
    summary = generate(Path(args.out), **flags, force=args.force)
    print(summary.describe())
    return 0


def _cmd_ingest(args, settings: Settings) -> int:
    from .warehouse import Warehouse
    dataset = Path(args.dataset)
    if not dataset.is_dir():
        raise SpiegelError(f"dataset {dataset} is not a folder: give the folder that holds practices.csv "
                           f"(for the demo: {DEMO_DATASET.relative_to(Path.cwd()) if DEMO_DATASET.is_relative_to(Path.cwd()) else DEMO_DATASET})")
    wh = Warehouse(Path(args.warehouse) if args.warehouse else settings.warehouse, lock_wait=settings.lock_wait)
    report = wh.ingest(dataset, practices=args.practice or None, force=args.force)
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_prepare(args, settings: Settings) -> int:
    from .cube import prepare_quarter, read_meta
    from .quarter import Quarter
    wh = Path(args.warehouse) if args.warehouse else settings.warehouse
    q = Quarter.parse(args.quarter)
    t = time.perf_counter()
    path = prepare_quarter(wh, q, force=args.force)
    meta = read_meta(path)
    print(f"quarter cube {q}: {meta['practices']} practices, computed in {meta['seconds']} s "
          f"({', '.join(f'{k} {v} s' for k, v in meta['timings_s'].items())}); "
          f"this call took {time.perf_counter() - t:.1f} s -> {path}")
    return 0


# ------------------------------------------------------------------------------ explain
#: the order of an indicator's fields when explained; any other field of the file follows
_INDICATOR_FIELDS = ("id", "title", "programme", "type", "why", "numerator", "denominator",
                     "denominator_note", "concepts", "window_months", "thresholds", "values", "atc", "group",
                     "min_age", "max_age", "target_pct", "low_is_good", "source", "reviewed_by", "reviewed_on")


@dataclass(frozen=True)
class ExplainKind:
    """One kind of definition ``spiegel explain`` can show: where its files are, how they load
    (validated: id -> definition), the order of their fields, and the SQL of one definition for a
    quarter (None for a kind without SQL). Another kind is one entry in :data:`EXPLAINABLE`."""

    name: str
    directory: Path
    load: Callable[[], dict]
    fields: tuple[str, ...] = ()
    sql: Callable[[object, "Quarter"], str] | None = None
    #: what the SQL needs on the connection before it runs (printed above it)
    sql_needs: str = ""


def _load_indicators() -> dict:
    from .rules.indicators import load_indicators
    return load_indicators()


def _indicator_sql(ind, quarter) -> str:
    from .cube.indicators import indicator_sql
    return indicator_sql(ind, quarter)


_INDICATOR_SQL_NEEDS = """\
It reads the warehouse table `practices` and the temp tables the prepare pass builds for the
quarter (patients on the population day, active diagnoses, enrolments, measurements), so run
it on the warehouse after that pass, in Python:
    from helpers.cube.findings import prepare_state
    from helpers.quarter import Quarter
    from helpers.rules.programmes import load_programmes
    from helpers.warehouse import Warehouse
    with Warehouse("data/warehouse.duckdb").connect(read_only=True) as con:
        prepare_state(con, Quarter.parse("{quarter}"), load_programmes())
        print(con.execute(open("explain.sql").read()).df())
It gives numerator and denominator per practice; the cube's pct is 100 * numerator / denominator."""


#: every kind of definition ``spiegel explain`` knows, by name (mirror measures come next)
EXPLAINABLE: dict[str, ExplainKind] = {
    "indicator": ExplainKind("indicator", INDICATORS_DIR, _load_indicators, _INDICATOR_FIELDS, _indicator_sql,
                             _INDICATOR_SQL_NEEDS),
}


def _yaml_value(value) -> str:
    import yaml
    if isinstance(value, str):
        return value
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, sort_keys=False, width=10**6)
    return text.strip().removesuffix("...").strip()   # as written in the file: true, [a, b], {value: 53}


def _latest_quarter(settings: Settings, warehouse: Path | None):
    """The latest complete quarter of the warehouse's newest extraction date, else of today."""
    from datetime import date

    import pandas as pd

    from .quarter import Quarter
    from .warehouse import Warehouse
    path = warehouse or settings.warehouse
    if path.is_file():
        dates = pd.to_datetime(Warehouse(path, lock_wait=settings.lock_wait).practices()["extraction_date"]).dropna()
        if len(dates):
            newest = dates.max().date()
            return Quarter.latest_complete(newest), f"the latest complete at the newest extraction date in {path}, {newest}"
    return Quarter.latest_complete(date.today()), f"the latest complete today (no warehouse at {path})"


def explain(definition_id: str | None, settings: Settings, quarter: str | None = None,
            warehouse: Path | None = None) -> str:
    """The text of ``spiegel explain``: every definition when ``definition_id`` is None, else the
    definition's fields, its file and, for a kind with SQL, the SQL it runs for the quarter.

    >>> print(explain(None, Settings.from_env()).splitlines()[0])    # doctest: +ELLIPSIS
    indicator (parameters/indicators/<id>.yaml): ... definitions
    """
    import difflib

    import yaml

    from .quarter import Quarter
    loaded = {name: kind.load() for name, kind in EXPLAINABLE.items()}
    if definition_id is None:
        lines = []
        for name, kind in EXPLAINABLE.items():
            defs = loaded[name]
            lines.append(f"{name} ({_shown(kind.directory)}/<id>.yaml): {len(defs)} definitions")
            width = max((len(i) for i in defs), default=0)
            lines += [f"  {i:<{width}}  {getattr(d, 'title', '')}" for i, d in defs.items()]
        lines.append("spiegel explain <id> shows one: its definition, its file and the SQL it runs")
        return "\n".join(lines)
    found = [(name, loaded[name][definition_id]) for name in EXPLAINABLE if definition_id in loaded[name]]
    if not found:
        every = [i for defs in loaded.values() for i in defs]
        close = difflib.get_close_matches(definition_id, every, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "`spiegel explain` lists them"
        raise ParameterError(f"{definition_id!r} is not the id of an {' or '.join(EXPLAINABLE)} "
                             f"({', '.join(_shown(k.directory) + '/' for k in EXPLAINABLE.values())}): {hint}")
    name, definition = found[0]
    kind = EXPLAINABLE[name]
    path = kind.directory / f"{definition_id}.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    order = [f for f in kind.fields if f in raw] + [f for f in raw if f not in kind.fields]
    width = max(len(f) for f in order)
    lines = [f"{name} {definition_id}: {raw.get('title', '')}", f"file: {_shown(path)}", "",
             *(f"  {f + ':':<{width + 1}} {_yaml_value(raw[f])}" for f in order)]
    if kind.sql is not None:
        if quarter is not None:
            q, why = Quarter.parse(quarter), "given with --quarter"
        else:
            q, why = _latest_quarter(settings, warehouse)
        sql = "\n".join(line[8:] if line.startswith(" " * 8) else line.strip()
                        for line in kind.sql(definition, q).strip("\n").splitlines())
        needs = kind.sql_needs.format(quarter=q)
        lines += ["", f"-- The SQL of {name} {definition_id} for quarter {q} ({why}).",
                  *(f"-- {line}".rstrip() for line in needs.splitlines()), sql.rstrip() + ";"]
    return "\n".join(lines)


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the project when inside it."""
    from .config import PROJECT_ROOT
    path = Path(path)
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def _cmd_lab(args, settings: Settings) -> int:
    from .lab import run
    port = None
    if args.port is not None:
        if not str(args.port).isdigit() or not 0 < int(args.port) < 65536:
            raise ParameterError(f"--port: found {args.port!r}, expected a TCP port from 1 to 65535 (or none: a free one)")
        port = int(args.port)
    return run(Path(args.warehouse) if args.warehouse else settings.warehouse, port)


def _cmd_explain(args, settings: Settings) -> int:
    print(explain(args.id, settings, quarter=args.quarter,
                  warehouse=Path(args.warehouse) if args.warehouse else None))
    return 0


_LOCK_WAIT_HELP = (f"While another process holds the warehouse, waits up to $SPIEGEL_LOCK_WAIT seconds "
                   f"(default {DEFAULT_LOCK_WAIT:g}), then exits with status 3.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spiegel",
        description="Spiegel: chain-care reports for Dutch care groups. Typical use: "
                    "`spiegel demo-data`, `spiegel ingest data/demo`, `spiegel build parameters/demo.yaml`.",
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"spiegel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show progress details (never patient rows)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo-data", help="generate the demo care group (seeded, deterministic)",
                       description="Write a realistic demo care group that follows the data contract, "
                                   "plus a ground-truth file of planted registration defects beside it.")
    p.add_argument("--out", default=str(DEMO_DATASET), help="dataset folder to write (default: data/demo)")
    p.add_argument("--practices", default="12", help="number of practices, 1 to 2000 (default 12)")
    p.add_argument("--regions", help="number of regions (default 2, or 1 for one practice)")
    p.add_argument("--seed", default="20261123", help="random seed, a whole number from 0 on (default 20261123)")
    p.add_argument("--extraction-date", default="2026-10-05", help="extraction date YYYY-MM-DD (default 2026-10-05)")
    p.add_argument("--force", action="store_true",
                   help="replace --out even when it is not a dataset written by demo-data (never the project, "
                        "data/, the working or home folder)")
    p.set_defaults(func=_cmd_demo_data)

    p = sub.add_parser("ingest", help="validate a dataset against the contract and load it into the warehouse",
                       description="Validate every file of a dataset against the data contract "
                                   "(spec/his-extract.md) and load each valid practice into the DuckDB "
                                   "warehouse in one transaction. A refused practice loads nothing; the "
                                   "others load. Exit status 1 when any practice was refused. " + _LOCK_WAIT_HELP)
    p.add_argument("dataset", help="dataset folder (holds practices.csv and extracts/)")
    p.add_argument("--warehouse", help="DuckDB file (default: data/warehouse.duckdb or $SPIEGEL_WAREHOUSE)")
    p.add_argument("--practice", action="append", help="load only this practice (AGB; repeatable)")
    p.add_argument("--force", action="store_true", help="reload practices whose files did not change")
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("prepare", help="compute a quarter's figures for all practices (the quarter cube)",
                       description="Compute every finding, indicator and data-quality figure of one quarter "
                                   "for all practices in one set-based pass; `build` does this itself. "
                                   + _LOCK_WAIT_HELP)
    p.add_argument("quarter", help="quarter as YYYYQn, e.g. 2026Q3")
    p.add_argument("--warehouse", help="DuckDB file (default: data/warehouse.duckdb)")
    p.add_argument("--force", action="store_true", help="recompute even when up to date")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("explain", help="show an indicator's definition, its file and the SQL it runs",
                       description="Show a definition of parameters/ as a researcher checks a figure: its "
                                   "fields (title, programme, numerator, denominator, target, source, review), "
                                   "the file it is read from and the SQL it runs for a quarter. Without an id: "
                                   "list every definition.")
    p.add_argument("id", nargs="?", help="the definition's id, e.g. dm2_hba1c_measured (none: list them)")
    p.add_argument("--quarter", help="the quarter of the SQL, YYYYQn (default: the warehouse's latest complete quarter)")
    p.add_argument("--warehouse", help="DuckDB file whose latest quarter is the default (default: data/warehouse.duckdb)")
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("lab", help="JupyterLab on the warehouse's latest quarter, for researchers",
                       description="Prepare the warehouse's latest complete quarter when needed, then start "
                                   "JupyterLab in notebooks/ on 127.0.0.1 with a token and print its URL; every "
                                   "report notebook runs there with empty parameters, and verkenning.ipynb "
                                   "explores the care group's figures. Ctrl-C stops the server and its kernels.")
    p.add_argument("--warehouse", help="DuckDB file (default: data/warehouse.duckdb or $SPIEGEL_WAREHOUSE)")
    p.add_argument("--port", help="TCP port on 127.0.0.1 (default: a free one)")
    p.set_defaults(func=_cmd_lab)

    try:
        from .batch import add_build_arguments, run_build
    except ImportError:  # the batch module is optional while it is being built
        add_build_arguments = run_build = None
    p = sub.add_parser("build", help="run the quarterly batch: every practice x report x quarter to HTML/PDF",
                       description="Expand a batch file (parameters/<batch>.yaml) into runs, prepare each "
                                   "quarter once, execute the notebooks in parallel, export HTML and PDF, "
                                   "and write the manifest and the portal (outputs/index.html).")
    if add_build_arguments:
        add_build_arguments(p)
        p.set_defaults(func=lambda a, s: run_build(a))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # the ingest summary already lists the contract's warnings; don't print them twice
        logging.getLogger("spiegel.contract").setLevel(logging.ERROR)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        settings = Settings.from_env()
        return int(args.func(args, settings) or 0)
    except SpiegelError as exc:
        print(f"spiegel {args.command}: error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt as exc:
        print(f"spiegel {args.command}: interrupted", file=sys.stderr)
        return exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
