"""``spiegel build``: a batch file -> every report for every practice and quarter.

A batch file (``parameters/<batch>.yaml``) names the dataset, the warehouse, the quarters
(a list, or ``latest``), the practices (``all`` or a list), the reports, the formats and the
executor. Everything is parsed explicitly (the YAML is read with every scalar as text:
``01000001`` stays an AGB code, not an octal number; ``2025Q2`` a quarter) and checked
before anything runs; each problem is one line. Command-line flags override the file.

The build, in order:

1. ingest the dataset when its files changed since the last build (in a worker: the
   coordinator never loads patient tables); a refused practice becomes a failed run;
2. expand practices x quarters x reports into named runs with fixed output paths,
   ``outputs/<quarter>/<practice>/<report>.html|.pdf|.ipynb`` and
   ``outputs/<quarter>/regio/<region>/<report>.*``, each with its parameters validated;
3. skip a run whose cache key (notebook bytes, parameters, the data of its practice or
   region, the rules (``parameters_hash``), the helpers' code (``code_hash``) and the
   environment) matches the manifest and whose files are all there (``--force``: rerun);
4. prepare the quarter cube once (in a worker), then run the rest on the executor;
5. record every run in ``outputs/<quarter>/manifest.json`` as it finishes (atomically:
   an interrupted batch resumes where it stopped), rebuild the portal, print the summary.

Decisions worth knowing:

- A quarter must be complete at a practice's extraction date (``latest`` picks the latest
  quarter complete at the newest extraction date). A quarter no selected practice covers
  refuses the build in one line (``--quarter 2030Q1``); a quarter only some practices cover
  runs for those, and the others' runs fail with their extraction date and latest quarter:
  a partly extracted quarter would report controls as missing that were not extracted yet.
- A practice whose new delivery is refused (or cannot be read) while its previous delivery is
  intact in the warehouse keeps its report: it is (re)built from that previous delivery when
  needed, its manifest entry holds ``stale_data`` (reason, first problem with file, line and
  column, when the previous data were loaded, a Dutch note), the summary names the first
  problem, and the exit status is 1. A first delivery that is refused is a failed run.
- SIGTERM stops a build like Ctrl-C. After an interrupt no run starts and none is kept any
  more; a file a run replaced without being recorded is removed, so every file the manifest
  describes has the hash it states. The same command without ``--force`` resumes.

Exit status (``errors.EXIT_CODES``, shown in ``spiegel build --help``): 0 all done or skipped,
1 a run failed or a practice was refused, 2 a user error (batch file, flags, dataset, outputs),
3 the warehouse is busy, 130 interrupted (Ctrl-C or SIGTERM).

>>> parser = argparse.ArgumentParser(); add_build_arguments(parser)      # doctest: +SKIP
>>> run_build(parser.parse_args(["parameters/demo.yaml", "--practice", "01000001"]))  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path

from . import __version__
from .atomic import clean_stale, write_atomic
from .config import DEFAULT_WAREHOUSE, PARAMETERS_DIR, PROJECT_ROOT, Settings, cube_dir
from .errors import EXIT_CODES_HELP, ContractError, ParameterError, SpiegelError, exit_code
from .identifiers import ISO_DATE_RE, is_agb, is_ascii_int
from .quarter import Quarter
from .reports import REPORTS, get_report, validate_params

FORMATS = ("html", "pdf")
EXECUTORS = ("local", "dask")
DEFAULT_TIMEOUT = 900

#: every key a batch file may hold, with what it means (unknown keys are refused)
BATCH_KEYS = {
    "description": "free text",
    "dataset": "the delivered dataset folder; ingested when its files changed (empty: use the warehouse as it is)",
    "warehouse": "the DuckDB warehouse file (default data/warehouse.duckdb)",
    "ingest": "true (default when a dataset is named) or false",
    "quarters": "a list of quarters (2025Q2) or `latest` (latest complete quarter of the extraction dates)",
    "practices": "`all` or a list of AGB codes (quote them: '01000001')",
    "reports": f"a list of report ids ({', '.join(REPORTS)})",
    "formats": "a list from html, pdf (the executed .ipynb is always kept)",
    "executor": "local (default) or dask",
    "scheduler": "the Dask scheduler address (executor dask)",
    "workers": "number of local worker processes (default: the machine's cores)",
    "timeout": "time limit per run in seconds (or 90s, 15m, 1h)",
    "outputs": "the outputs folder (default outputs/)",
    "params": "extra notebook parameters per report, e.g. {his_analyse: {name: value}} (checked against the report)",
}

#: packages whose version is part of every run's cache key and of the manifest
KEY_PACKAGES = ("pandas", "numpy", "pyarrow", "duckdb", "matplotlib", "seaborn", "scipy", "papermill",
                "nbclient", "nbconvert", "nbformat", "ipykernel", "jupyter_client", "playwright", "spiegel")


# ---------------------------------------------------------------------------------------
# The batch file
# ---------------------------------------------------------------------------------------


@dataclass
class Batch:
    """A parsed, validated batch file (with command-line overrides applied)."""

    name: str
    source: str
    dataset: Path | None = None
    warehouse: Path = DEFAULT_WAREHOUSE
    ingest: bool = True
    quarters: list[str] | None = None        # None: latest
    practices: list[str] | None = None       # None: all
    reports: list[str] = field(default_factory=lambda: ["his_analyse"])
    formats: list[str] = field(default_factory=lambda: ["html", "pdf"])
    executor: str = "local"
    scheduler: str | None = None
    workers: int | None = None
    timeout: int = DEFAULT_TIMEOUT
    outputs: Path = field(default_factory=lambda: Settings.from_env().outputs)
    params: dict = field(default_factory=dict)   # report -> {parameter: text}
    force: bool = False


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str) and "," in value:
        return [v.strip() for v in value.split(",") if v.strip()]
    return [value]


def _path(value: str, base: Path = PROJECT_ROOT) -> Path:
    """A path from a batch file, relative to the project, resolved (``../x`` shows where it lands)."""
    p = Path(os.path.expanduser(str(value).strip()))
    return (p if p.is_absolute() else (base / p)).resolve()


def parse_quarters(values, where: str, problems: list[str]) -> list[str] | None:
    """``latest`` -> None; otherwise each value parsed as a quarter (problems collected)."""
    values = _as_list(values)
    if not values or (len(values) == 1 and str(values[0]).strip().lower() == "latest"):
        return None
    out = []
    for v in values:
        if isinstance(v, (dict, list)):
            problems.append(f"{where}: {v!r} is not a quarter: write it as YYYYQn, e.g. 2025Q2")
            continue
        if ISO_DATE_RE.fullmatch(str(v).strip()):
            problems.append(f"{where}: {v!r} is a date, not a quarter: write it as YYYYQn, e.g. 2025Q2")
            continue
        if str(v).strip().lower() == "latest":
            problems.append(f"{where}: `latest` cannot be mixed with explicit quarters")
            continue
        try:
            q = str(Quarter.parse(v))
        except ParameterError as e:
            problems.append(f"{where}: {e}")
            continue
        if q not in out:
            out.append(q)
    return out


def parse_practices(values, where: str, problems: list[str]) -> list[str] | None:
    values = _as_list(values)
    if not values or (len(values) == 1 and str(values[0]).strip().lower() == "all"):
        return None
    out = []
    for v in values:
        s = str(v).strip()
        if not is_agb(s):
            problems.append(f"{where}: practice {s!r} is not an AGB code (8 digits 0-9; quote it in YAML: '01000001')")
        elif s not in out:
            out.append(s)
    return out


def parse_reports(values, where: str, problems: list[str]) -> list[str]:
    out = []
    for v in _as_list(values):
        s = str(v).strip()
        if s not in REPORTS:
            problems.append(f"{where}: report {s!r} is unknown; choose from {', '.join(REPORTS)}")
        elif s not in out:
            out.append(s)
    if not _as_list(values):
        problems.append(f"{where}: name at least one report ({', '.join(REPORTS)})")
    return out


def parse_formats(values, where: str, problems: list[str]) -> list[str]:
    out = []
    for v in _as_list(values):
        s = str(v).strip().lower().lstrip(".")
        if s == "ipynb":
            continue   # always written
        if s not in FORMATS:
            problems.append(f"{where}: format {s!r} is unknown; choose from {', '.join(FORMATS)}")
        elif s not in out:
            out.append(s)
    return out


_TIMEOUT_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|sec|m|min|h)?\s*", re.ASCII)


def parse_timeout(value, where: str, problems: list[str]) -> int | None:
    """Whole seconds, rounded up: the notebook executor only takes whole seconds.

    >>> parse_timeout("90.5", "timeout", []), parse_timeout("1.5m", "timeout", [])
    (91, 90)
    """
    m = _TIMEOUT_RE.fullmatch(str(value))
    if not m:
        problems.append(f"{where}: {value!r} is not a time limit: give seconds (900) or 15m / 1h")
        return None
    seconds = float(m.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, None: 1}[m.group(2)]
    if seconds <= 0:
        problems.append(f"{where}: the time limit must be more than 0 seconds")
        return None
    return math.ceil(seconds)


def parse_workers(value, where: str, problems: list[str]) -> int | None:
    s = str(value).strip().lower()
    if s in ("", "auto", "none"):
        return None
    if not is_ascii_int(s) or int(s) < 1:
        problems.append(f"{where}: workers {value!r} must be a whole number of at least 1 (or auto)")
        return None
    return int(s)


def parse_bool(value, where: str, problems: list[str]) -> bool | None:
    s = str(value).strip().lower()
    if s in ("true", "yes", "on", "1"):
        return True
    if s in ("false", "no", "off", "0"):
        return False
    problems.append(f"{where}: {value!r} is not true or false")
    return None


def _decode(path: Path, raw: bytes) -> str:
    """A batch file's text: UTF-8, or UTF-16/32 with a byte-order mark (as Windows editors save it)."""
    import codecs
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise ParameterError(f"{path}: not valid {encoding.upper()} text (byte {e.start}): "
                                     "save it as UTF-8") from None
    if b"\x00" in raw:
        raise ParameterError(f"{path}: looks like UTF-16 without a byte-order mark: save it as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ParameterError(f"{path}: line {line} is not UTF-8 text (byte 0x{raw[e.start]:02x}; Latin-1?): "
                             "save the file as UTF-8") from None


def load_batch_file(path: Path | str) -> dict:
    """The raw batch file: a mapping whose scalars are all strings (nothing guessed by YAML)."""
    import yaml
    path = Path(path)
    if not path.exists():
        raise ParameterError(f"batch file {path} does not exist (the demo batch is {PARAMETERS_DIR / 'demo.yaml'})")
    if not path.is_file():
        raise ParameterError(f"batch file {path} is not a file: give a .yaml batch file, e.g. {PARAMETERS_DIR / 'demo.yaml'}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ParameterError(f"batch file {path} cannot be read ({e.strerror})") from None
    try:
        data = yaml.load(_decode(path, raw), Loader=yaml.BaseLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ParameterError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: a batch file is a mapping of {', '.join(BATCH_KEYS)}")
    return data


#: the shape of each key's value: one value, one value or a list of them, or a mapping
_SHAPES = {"quarters": "list", "practices": "list", "reports": "list", "formats": "list", "params": "mapping"}


def _shape_problem(source: str, key: str, value) -> str | None:
    """One line when a batch value has the wrong shape (``outputs: {a: b}``), else None."""
    shape = _SHAPES.get(key, "value")
    if shape == "mapping":
        ok, must = isinstance(value, dict), "a mapping"
    elif shape == "list":
        ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        must = "one value or a list of values"
    else:
        ok, must = isinstance(value, str), "one value"
    if ok:
        return None
    if isinstance(value, dict):
        found = "a mapping"
    elif isinstance(value, list):
        found = "a list of lists or mappings" if shape == "list" else "a list"
    else:
        found = f"the single value {value!r}"
    return f"{source}: {key} must be {must}, not {found}; {key} is {BATCH_KEYS[key]}"


def parse_batch(data: dict, source: str = "<batch>") -> tuple[Batch, list[str]]:
    """A Batch from the raw mapping, and every problem found (one line each)."""
    problems: list[str] = []
    name = Path(source).stem
    b = Batch(name=name, source=source)
    for key in sorted(set(data) - set(BATCH_KEYS)):
        problems.append(f"{source}: unknown key {key!r}; a batch file takes {', '.join(BATCH_KEYS)}")
    data = dict(data)
    for key in [k for k in data if k in BATCH_KEYS]:
        problem = _shape_problem(source, key, data[key])
        if problem:
            problems.append(problem)
            del data[key]   # checked once: no second message about the same value

    def where(key):
        return f"{source}: {key}"

    if data.get("dataset"):
        b.dataset = _path(data["dataset"])
    b.warehouse = _path(data["warehouse"]) if data.get("warehouse") else Settings.from_env().warehouse
    if "ingest" in data:
        v = parse_bool(data["ingest"], where("ingest"), problems)
        b.ingest = bool(v) if v is not None else True
    b.quarters = parse_quarters(data.get("quarters", "latest"), where("quarters"), problems)
    b.practices = parse_practices(data.get("practices", "all"), where("practices"), problems)
    b.reports = parse_reports(data.get("reports", ["his_analyse"]), where("reports"), problems)
    b.formats = parse_formats(data.get("formats", list(FORMATS)), where("formats"), problems)
    executor = str(data.get("executor", "local")).strip().lower()
    if executor not in EXECUTORS:
        problems.append(f"{where('executor')}: {executor!r} is unknown; choose local or dask")
    else:
        b.executor = executor
    if data.get("scheduler"):
        b.scheduler = str(data["scheduler"]).strip()
    if "workers" in data:
        b.workers = parse_workers(data["workers"], where("workers"), problems)
    if "timeout" in data:
        b.timeout = parse_timeout(data["timeout"], where("timeout"), problems) or DEFAULT_TIMEOUT
    if data.get("outputs"):
        b.outputs = _path(data["outputs"])
    if "params" in data:
        b.params = parse_extra_params(data["params"], b.reports, where("params"), problems)
    return b, problems


#: parameter types the sweep fills in itself (a batch file cannot set them)
SWEEP_TYPES = ("practice", "region", "quarter")
SWEEP_NAMES = ("warehouse", "cube_path")


def parse_extra_params(value, reports: list[str], where: str, problems: list[str]) -> dict:
    """``params: {report: {name: value}}``: names must be parameters the report declares."""
    if not isinstance(value, dict):
        problems.append(f"{where}: write it as a mapping per report, e.g. {{his_analyse: {{name: value}}}}")
        return {}
    out = {}
    for report_id, values in value.items():
        if report_id not in REPORTS:
            problems.append(f"{where}: report {report_id!r} is unknown; choose from {', '.join(REPORTS)}")
            continue
        if not isinstance(values, dict):
            problems.append(f"{where}: {report_id}: write its parameters as a mapping name: value")
            continue
        spec = REPORTS[report_id]
        types = {p.name: p.type for p in spec.params}
        for name, v in values.items():
            if name not in types:
                problems.append(f"{where}: {report_id}: unknown parameter {name!r}; it takes "
                                f"{', '.join(spec.param_names())}")
            elif types[name] in SWEEP_TYPES or name in SWEEP_NAMES:
                problems.append(f"{where}: {report_id}: parameter {name!r} is set by the sweep "
                                f"(use practices/quarters/warehouse instead)")
            elif isinstance(v, (dict, list)):
                problems.append(f"{where}: {report_id}: parameter {name!r} must be a single value")
            else:
                out.setdefault(report_id, {})[name] = str(v)
    return out


def apply_overrides(b: Batch, args: argparse.Namespace, problems: list[str]) -> Batch:
    """Command-line flags win over the batch file."""
    b = replace(b)
    if getattr(args, "practice", None):
        b.practices = parse_practices(args.practice, "--practice", problems)
    if getattr(args, "quarter", None):
        b.quarters = parse_quarters(args.quarter, "--quarter", problems)
    if getattr(args, "report", None):
        b.reports = parse_reports(args.report, "--report", problems)
    if getattr(args, "format", None):
        b.formats = parse_formats([f for v in args.format for f in str(v).split(",")], "--format", problems)
    if getattr(args, "workers", None) is not None:
        b.workers = parse_workers(args.workers, "--workers", problems)
    if getattr(args, "executor", None):
        b.executor = args.executor
    if getattr(args, "scheduler", None):
        b.scheduler = args.scheduler
    if getattr(args, "timeout", None) is not None:
        b.timeout = parse_timeout(args.timeout, "--timeout", problems) or b.timeout
    if getattr(args, "outputs", None):
        b.outputs = Path(args.outputs).resolve()
    if getattr(args, "warehouse", None):
        b.warehouse = Path(args.warehouse).resolve()
    if getattr(args, "force", False):
        b.force = True
    if b.executor == "dask" and not b.scheduler:
        problems.append("executor dask needs a scheduler address: --scheduler tcp://host:8786 "
                        "(or `scheduler:` in the batch file)")
    if b.dataset is not None and b.dataset.exists() and not b.dataset.is_dir():
        problems.append(f"{b.source}: dataset {b.dataset} is a file: give the folder that holds practices.csv")
    elif b.dataset is not None and not b.dataset.is_dir():
        problems.append(f"{b.source}: dataset {b.dataset} does not exist (generate the demo with "
                        f"`spiegel demo-data --out data/demo`)")
    if b.warehouse.is_dir():
        problems.append(f"warehouse {b.warehouse} is a folder: give the DuckDB file, e.g. "
                        f"{b.warehouse / 'warehouse.duckdb'} (--warehouse or `warehouse:` in {b.source})")
    blocker = next((p for p in (b.outputs, *b.outputs.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        problems.append(f"outputs {b.outputs}: {blocker} is a file, not a folder: give a folder "
                        f"(--outputs or `outputs:` in {b.source})")
    if not b.formats:
        problems.append(f"{b.source}: formats: name html and/or pdf")
    return b


def load_batch(path: Path | str, args: argparse.Namespace | None = None) -> Batch:
    """Parse and check a batch file (plus overrides); ParameterError lists every problem."""
    source = str(path)
    data = load_batch_file(path)
    b, problems = parse_batch(data, source)
    b = apply_overrides(b, args or argparse.Namespace(), problems)
    if problems:
        raise ParameterError("\n".join(problems))
    return b


# ---------------------------------------------------------------------------------------
# Cache keys and provenance
# ---------------------------------------------------------------------------------------


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def environment_fingerprint() -> dict:
    """Python and the versions of the packages a report's look depends on."""
    from importlib.metadata import PackageNotFoundError, version
    packages = {}
    for name in KEY_PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {"python": sys.version.split()[0], "platform": sys.platform, "packages": packages}


def key_params(report_id: str, params: dict) -> dict:
    """The parameters that enter the cache key: paths are left out (their content is the
    data hash), so moving the warehouse does not rebuild everything."""
    spec = get_report(report_id)
    types = {p.name: p.type for p in spec.params}
    return {k: v for k, v in sorted(params.items()) if types.get(k) != "path"}


def run_cache_key(*, notebook_hash: str, params: dict, data_hash: str, parameters_hash: str,
                  code_hash: str, environment: dict, formats: list[str] | tuple = ()) -> str:
    """What a run depends on, as one hash.

    >>> a = run_cache_key(notebook_hash="n", params={"practice_agb": "01000001"}, data_hash="d",
    ...                   parameters_hash="p", code_hash="c", environment={"python": "3.11"})
    >>> a == run_cache_key(notebook_hash="n", params={"practice_agb": "01000002"}, data_hash="d",
    ...                    parameters_hash="p", code_hash="c", environment={"python": "3.11"})
    False
    """
    payload = {"notebook": notebook_hash, "params": params, "data": data_hash,
               "parameters": parameters_hash, "code": code_hash, "environment": environment,
               "formats": sorted(formats)}
    return _sha(json.dumps(payload, sort_keys=True, default=str))


def region_data_hash(region: str, practice_regions: dict[str, str], hashes: dict[str, str]) -> str:
    """The data of every practice in the region (a change in any of them reruns the region)."""
    members = sorted((agb, hashes.get(agb, "")) for agb, r in practice_regions.items() if r == region)
    return _sha(json.dumps(members))


def code_version(code_hash: str) -> str:
    """``git describe`` of the project when it is a repository with commits, else the
    package version; always with the helpers' code hash."""
    import subprocess
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=5)
        described = out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        described = ""
    base = f"git {described}" if described else f"spiegel {__version__}"
    return f"{base} (code {code_hash[:12]})"


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


# ---------------------------------------------------------------------------------------
# Planning: named runs with fixed paths
# ---------------------------------------------------------------------------------------


def run_name(report_id: str, scope: str, key: str) -> str:
    return f"{key}-{report_id}" if scope == "practice" else f"regio-{slug(key)}-{report_id}"


def run_dir(outputs: Path, quarter: str, scope: str, key: str) -> Path:
    return outputs / quarter / key if scope == "practice" else outputs / quarter / "regio" / slug(key)


def resolve_selection(b: Batch, practices_df, refused: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """Practices, regions and quarters of the batch, checked against the warehouse."""
    problems = []
    in_warehouse = [str(a) for a in practices_df["practice_agb"]] if len(practices_df) else []
    # a refused practice still gets a (failed) run that says why; a key that is not even an
    # AGB code (a stray folder under extracts/) cannot, and is reported by ingest instead
    runnable_refused = sorted(a for a in refused if is_agb(str(a)))
    known = list(dict.fromkeys(in_warehouse + runnable_refused))
    if not known:
        raise ParameterError(f"warehouse {b.warehouse} holds no practices: run `spiegel ingest <dataset>` "
                             f"first (or name the dataset in {b.source})")
    if b.practices is None:
        practices = known
    else:
        practices = []
        for agb in b.practices:
            if agb not in known:
                problems.append(f"practice {agb} is not in the warehouse {b.warehouse.name} "
                                f"(known: {', '.join(known[:12])}{' ...' if len(known) > 12 else ''}): "
                                f"check --practice or `practices:` in {b.source}")
            else:
                practices.append(agb)
    regions_of = {str(r["practice_agb"]): r.get("region") for r in practices_df.to_dict("records")}
    regions = sorted({str(regions_of[a]) for a in practices if regions_of.get(a) is not None
                      and str(regions_of[a]) not in ("", "nan", "None")})
    dates = {a: d for a, d in extraction_dates(practices_df).items() if a in practices}
    if b.quarters is None:
        quarters = [str(Quarter.latest_complete(max(dates.values())))] if dates else []
        if not dates and not problems:  # with unknown practices that is the one problem to show
            problems.append("quarters: latest: no extraction date in the warehouse for the selected practices; "
                            "name the quarter (--quarter 2025Q2)")
    else:
        quarters = list(b.quarters)
        problems += [p for p in (_beyond_every_extraction(Quarter.parse(q), dates) for q in quarters) if p]
    if problems:
        raise ParameterError("\n".join(problems))
    return practices, regions, quarters


def _beyond_every_extraction(q: Quarter, dates: dict[str, date]) -> str | None:
    """A quarter that no selected practice's data cover completely refuses the whole build (a
    quarter some practices cover runs for those; the others fail with the reason, _not_covered)."""
    if not dates or any(d >= q.last_day for d in dates.values()):
        return None
    newest = max(dates.values())
    limiting = sorted(a for a, d in dates.items() if d == newest)
    names = ", ".join(limiting[:5]) + (f" and {len(limiting) - 5} more" if len(limiting) > 5 else "")
    return (f"quarter {q} is not complete at the newest extraction date of the selected practices, "
            f"{newest:%d-%m-%Y} (practice{'s' if len(limiting) > 1 else ''} {names}): the latest quarter possible is "
            f"{Quarter.latest_complete(newest)}; choose it or an earlier one, or `latest`")


def plan_runs(b: Batch, practices_df, hashes: dict[str, str], refused: dict[str, str],
              practices: list[str], regions: list[str], quarters: list[str]) -> list:
    """Every named run of the sweep with its parameters validated, paths and cache key."""
    from .cube.prepare import code_hash, parameters_hash
    from .runner import RunSpec
    env = environment_fingerprint()
    p_hash, c_hash = parameters_hash(), code_hash()
    version = code_version(c_hash)
    rows = {str(r["practice_agb"]): r for r in practices_df.to_dict("records")}
    practice_regions = {a: str(r.get("region")) for a, r in rows.items()}
    known_regions = set(practice_regions.values())
    known_practices = set(rows) | set(refused)
    dataset_label = _dataset_label(b)
    extracted_on = extraction_dates(practices_df)
    specs, problems = [], []
    for quarter in quarters:
        q = Quarter.parse(quarter)
        cube = cube_dir(b.warehouse, quarter)
        for report_id in b.reports:
            spec = get_report(report_id)
            nb_path = Path(spec.notebook)
            if not nb_path.exists():
                problems.append(f"report {report_id}: notebook {nb_path} does not exist")
                continue
            nb_hash = _sha(nb_path.read_bytes())
            formats = [f for f in b.formats if f in spec.formats]
            keys = practices if spec.scope == "practice" else regions
            for key in keys:
                params = {}
                for p in spec.params:
                    if p.type in ("practice", "region"):
                        params[p.name] = key
                    elif p.type == "quarter":
                        params[p.name] = quarter
                    elif p.name == "warehouse":
                        params[p.name] = str(b.warehouse)
                    elif p.name == "cube_path":
                        params[p.name] = str(cube)
                params.update(b.params.get(report_id, {}))
                try:
                    params = validate_params(report_id, params, known_practices, known_regions)
                except ParameterError as e:
                    problems.append(str(e))
                    continue
                if spec.scope == "practice":
                    row = rows.get(key, {})
                    data_hash = hashes.get(key, "")
                    label = str(row.get("name") or key)
                    extraction = _fmt_date(row.get("extraction_date"))
                    data_version = f"{key}: {data_hash[:12] or 'niet geladen'}"
                else:
                    members = [a for a, r in practice_regions.items() if r == key]
                    data_hash = region_data_hash(key, practice_regions, hashes)
                    label = f"Regio {key}"
                    dates = sorted(_fmt_date(rows[a].get("extraction_date")) for a in members)
                    extraction = dates[0] if len(set(dates)) == 1 else f"{dates[0]} t/m {dates[-1]}"
                    data_version = f"{len(members)} praktijken: {data_hash[:12]}"
                kp = key_params(report_id, params)
                cache_key = run_cache_key(notebook_hash=nb_hash, params=kp, data_hash=data_hash,
                                          parameters_hash=p_hash, code_hash=c_hash, environment=env,
                                          formats=formats)
                name = run_name(report_id, spec.scope, key)
                outdir = run_dir(b.outputs, quarter, spec.scope, key)
                files = {"ipynb": str(outdir / f"{report_id}.ipynb")}
                for f in ("html", *formats):
                    files[f] = str(outdir / f"{report_id}.{f}")
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
                members = [key] if spec.scope == "practice" else [a for a, r in practice_regions.items() if r == key]
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
        raise ParameterError("\n".join(dict.fromkeys(problems)))
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
    from .warehouse import Warehouse
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
    whose = f"practice {agb}" if scope == "practice" else f"practice {agb} of region {key}"
    return {"stage": "quarter",
            "message": f"quarter {q} ends on {q.last_day:%d-%m-%Y}, after the extraction date {day:%d-%m-%Y} of "
                       f"{whose}: its data cover up to {Quarter.latest_complete(day)}; deliver a newer "
                       f"extraction or build an earlier quarter"}


def _first_line(text: str, limit: int = 240) -> str:
    """First line of a message, with quoted values scrubbed (it goes to shared outputs)."""
    from .suppression import scrub_message
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


# ---------------------------------------------------------------------------------------
# Skipping, the manifest
# ---------------------------------------------------------------------------------------


class Manifest:
    """``outputs/<quarter>/manifest.json``: every run with parameters, status, timings,
    cache key, output hashes and versions. No patient data: counts and names only."""

    def __init__(self, outputs: Path, quarter: str):
        self.path = Path(outputs) / quarter / "manifest.json"
        self.quarter = quarter
        self.data = {"quarter": quarter, "runs": {}}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
                self.data.setdefault("runs", {})
            except ValueError:
                pass   # a damaged manifest means: rebuild everything of this quarter

    @property
    def runs(self) -> dict:
        return self.data["runs"]

    def up_to_date(self, spec) -> bool:
        entry = self.runs.get(spec.name)
        if not entry or entry.get("status") != "done" or entry.get("cache_key") != spec.cache_key:
            return False
        root = self.path.parent
        records = list(entry.get("outputs", {}).values()) + list(entry.get("extras", []))
        wanted = {"ipynb", "html", *spec.formats}
        if not wanted <= set(entry.get("outputs", {})):
            return False
        for rec in records:
            p = root / rec["path"]
            if not p.exists() or p.stat().st_size != rec.get("bytes"):
                return False
        return True

    def renderable(self, spec) -> bool:
        """The run was executed with this very cache key and its notebook kept, but a later stage
        failed (no browser for the PDF): the next build renders from that notebook, not executing it."""
        entry = self.runs.get(spec.name)
        if not entry or entry.get("status") == "done" or entry.get("cache_key") != spec.cache_key:
            return False
        rec = entry.get("outputs", {}).get("ipynb")
        path = self.path.parent / rec["path"] if rec else None
        return bool(path and path.is_file() and _file_sha(path) == rec.get("sha256"))

    def record(self, spec, result, batch_name: str, extra: dict | None = None) -> None:
        root = self.path.parent

        def rel(rec):
            rec = dict(rec)
            try:
                rec["path"] = str(Path(rec["path"]).resolve().relative_to(root.resolve()))
            except ValueError:
                pass
            return rec

        previous = self.runs.get(spec.name, {})
        entry = {
            "report": spec.report, "scope": spec.scope, "key": spec.key, "label": spec.label,
            "quarter": spec.quarter, "params": spec.params, "status": result.status,
            "cache_key": spec.cache_key, "timings_s": result.timings,
            "outputs": {k: rel(v) for k, v in result.outputs.items()}, "outputs_done": result.outputs_done,
            "extras": [rel(x) for x in result.extras], "figures": result.figures,
            "error": result.error, "log": rel({"path": spec.log_path})["path"],
            "partial_notebook": rel({"path": result.error["partial_notebook"]})["path"]
            if result.error and result.error.get("partial_notebook") else None,
            "attempts": result.attempts, "worker": result.worker, "memory_mb": result.memory_mb,
            "finished_at": result.finished_at, "batch": batch_name,
            "provenance": spec.provenance,
        }
        if extra:
            entry.update(extra)
        if result.status != "done" and previous.get("status") == "done":
            entry["previous_success"] = {"finished_at": previous.get("finished_at"),
                                         "outputs": previous.get("outputs", {})}
        self.runs[spec.name] = entry

    def mark_skipped(self, spec, batch_name: str, extra: dict | None = None) -> None:
        """An up-to-date run; ``extra`` (``stale_data``) replaces what the last build said about its data."""
        entry = self.runs[spec.name]
        entry["last_checked"] = {"at": _now_iso(), "batch": batch_name, "outcome": "skipped"}
        entry.pop("stale_data", None)
        entry.update(extra or {})

    def save(self, meta: dict | None = None) -> None:
        if meta:
            self.data.update(meta)
        self.data["updated_at"] = _now_iso()
        self.data["runs"] = dict(sorted(self.runs.items()))
        write_atomic(self.path, json.dumps(self.data, indent=1, default=str, ensure_ascii=False))


def _now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------
# Ingest (only when the dataset's files changed) and prepare, both in a worker
# ---------------------------------------------------------------------------------------


def dataset_fingerprint(dataset: Path) -> str:
    """Names, sizes and modification times of every file: cheap, and any edit changes it."""
    items = []
    for root, dirs, files in os.walk(dataset):
        dirs.sort()
        for f in sorted(files):
            p = Path(root) / f
            try:
                st = p.stat()
                items.append((str(p.relative_to(dataset)), st.st_size, st.st_mtime_ns))
            except OSError:  # a broken link or unreadable file: ingest reports it per practice
                items.append((str(p.relative_to(dataset)), -1, -1))
    return _sha(json.dumps(items))


def check_register(b: Batch, in_warehouse) -> None:
    """Before the (long) ingest: the dataset's practices.csv is usable (else ContractError, one
    line), and every practice the batch names is in it or already in the warehouse."""
    from .contract import read_practices
    register = read_practices(b.dataset)
    known = set(register.known) | set(in_warehouse)
    unknown = [agb for agb in b.practices or [] if agb not in known]
    if unknown:
        listed = ", ".join(register.known[:12]) + (" ..." if len(register.known) > 12 else "")
        raise ParameterError(f"practice {', '.join(unknown)} is neither in {b.dataset / register.source} nor in "
                             f"the warehouse {b.warehouse.name} (the register lists {listed or 'none'}): "
                             f"check --practice or `practices:` in {b.source}")


def ingest_task(warehouse: str, dataset: str) -> dict:
    """Run in a worker: load changed practices; return counts and messages (no rows)."""
    from .warehouse import Warehouse
    report = Warehouse(warehouse).ingest(Path(dataset))
    return {"loaded": report.loaded, "unchanged": report.unchanged, "refused": report.refused,
            "failed": report.failed, "dataset_problems": report.dataset_problems,
            "warnings": report.warnings, "seconds": report.timings.get("total")}


def prepare_task(warehouse: str, quarter: str, force: bool = False) -> dict:
    """Run in a worker: compute (or reuse) the quarter cube; return its key and timing."""
    from .cube import prepare_quarter, read_meta
    t0 = time.perf_counter()
    path = prepare_quarter(warehouse, quarter, force=force)
    meta = read_meta(path)
    return {"path": str(path), "key": meta.get("key"), "seconds": round(time.perf_counter() - t0, 3),
            "computed_at": meta.get("computed_at"), "timings_s": meta.get("timings_s")}


def _fresh_cube(warehouse: Path, quarter: str) -> dict | None:
    """The cube's record when it is up to date (same key as the data, rules and code now)."""
    from .cube.prepare import cube_key
    meta_file = cube_dir(warehouse, quarter) / "cube.json"
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("key") != cube_key(warehouse, Quarter.parse(quarter)):
            return None
    except (OSError, ValueError):
        return None
    return {"path": str(meta_file.parent), "key": meta["key"], "seconds": 0.0,
            "computed_at": meta.get("computed_at"), "timings_s": meta.get("timings_s")}


def _ingest_if_changed(b: Batch, executor_factory, out) -> dict | None:
    """Ingest the batch's dataset when its files or the warehouse changed since the last build.

    The state file beside the warehouse remembers the dataset's fingerprint and the refused
    practices, so an unchanged dataset costs a directory listing, not a worker."""
    from .warehouse import Warehouse
    state_path = Path(str(b.warehouse) + ".ingest.json")
    fingerprint = dataset_fingerprint(b.dataset)
    hashes = Warehouse(b.warehouse).practice_hashes() if b.warehouse.exists() else {}
    if state_path.exists() and not b.force:
        try:
            state = json.loads(state_path.read_text())
            if (state.get("dataset") == str(b.dataset.resolve()) and state.get("fingerprint") == fingerprint
                    and state.get("practice_hashes") == hashes):
                return {"skipped": True, "refused": state.get("refused", {}), "failed": state.get("failed", {})}
        except ValueError:
            pass
    check_register(b, hashes)
    out(f"ingest {b.dataset} -> {b.warehouse} ...")
    t0 = time.perf_counter()
    result = executor_factory().call("helpers.batch:ingest_task", str(b.warehouse), str(b.dataset))
    result["seconds"] = round(time.perf_counter() - t0, 3)
    hashes = Warehouse(b.warehouse).practice_hashes()
    write_atomic(state_path, json.dumps({
        "dataset": str(b.dataset.resolve()), "fingerprint": fingerprint, "practice_hashes": hashes,
        "refused": result["refused"], "failed": result["failed"], "checked_at": _now_iso()}, indent=1))
    return result


# ---------------------------------------------------------------------------------------
# Progress and summary
# ---------------------------------------------------------------------------------------


class Progress:
    """A tqdm bar with counts and ETA on a terminal; one plain line per run otherwise (CI)."""

    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.counts = {"done": 0, "failed": 0}
        self.n = 0
        self.bar = None
        if total and hasattr(self.stream, "isatty") and self.stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="run", file=self.stream, dynamic_ncols=True,
                            desc="build", smoothing=0.1)

    def update(self, spec, result) -> None:
        self.n += 1
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if self.bar is not None:
            self.bar.set_postfix(done=self.counts["done"], failed=self.counts["failed"], refresh=False)
            self.bar.update(1)
            if result.status != "done":
                self.bar.write(f"failed  {spec.quarter} {spec.key} {spec.report}: {_error_line(result.error)}")
        else:
            width = len(str(self.total))
            line = (f"[{self.n:>{width}}/{self.total}] {result.status:<6} {spec.quarter} {spec.key} "
                    f"{spec.report} {result.timings.get('total', 0):.1f}s")
            if result.status != "done":
                line += f"  {_error_line(result.error)}"
            print(line, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _error_line(error: dict | None) -> str:
    if not error:
        return ""
    parts = [f"[{error.get('stage')}]"]
    if error.get("cell_index") is not None:
        parts.append(f"cell {error['cell_index']} (`{error.get('cell_source', '')}`):")
    parts.append(str(error.get("message", "")))
    return " ".join(parts)


def _stage_table(results: list) -> list[str]:
    stages = ("kernel_start", "execute", "html", "pdf", "extras", "total")
    rows = []
    for st in stages:
        vals = [r.timings[st] for r in results if st in r.timings and r.status == "done"]
        if vals:
            rows.append(f"  {st:<13} {len(vals):>5} {sum(vals):>9.2f} {sum(vals) / len(vals):>8.2f} {max(vals):>8.2f}")
    if not rows:
        return []
    return ["stage timings (s)   runs       sum     mean      max", *rows]


def print_summary(plan_specs, results: dict, skipped: list, elapsed: float, extra_lines: list[str],
                  outputs: Path, portal: Path | None, out=print) -> None:
    done = [r for r in results.values() if r.status == "done"]
    failed = [(s, results[s.name]) for s in plan_specs if s.name in results and results[s.name].status != "done"]
    out("")
    out(f"batch summary: {len(plan_specs)} runs: {len(done)} done, {len(skipped)} skipped (up to date), "
        f"{len(failed)} failed, in {elapsed:.1f}s")
    if len(plan_specs) <= 40:
        out(f"  {'quarter':<8} {'practice/region':<22} {'report':<16} {'status':<8} {'execute':>8} {'html':>6} {'pdf':>6}")
        for s in plan_specs:
            r = results.get(s.name)
            status = r.status if r else "skipped"
            t = r.timings if r else {}

            def f(k):
                return f"{t[k]:.1f}" if k in t else "-"
            out(f"  {s.quarter:<8} {s.key[:22]:<22} {s.report[:16]:<16} {status:<8} {f('execute'):>8} {f('html'):>6} {f('pdf'):>6}")
    for line in _stage_table(list(results.values())):
        out(line)
    for line in extra_lines:
        out(line)
    if failed:
        out("failures:")
        for s, r in failed:
            e = r.error or {}
            out(f"  {s.quarter} {s.key} ({s.label}) report {s.report}: stage {e.get('stage')}")
            if e.get("cell_index") is not None:
                out(f"    cell {e['cell_index']}: {e.get('cell_source', '')}")
            out(f"    error: {e.get('message', '')}")
            if e.get("partial_notebook"):
                out(f"    partial notebook: {_rel(e['partial_notebook'])}")
            kept = [fmt for fmt, written in r.outputs_done.items() if written]
            if kept:
                out(f"    written: {', '.join(kept)} (the next build only renders what is missing)")
            out(f"    log: {_rel(s.log_path)}")
    if portal is not None:
        out(f"portal: {_rel(portal)}  (open in a browser: file://{Path(portal).resolve()})")


def _rel(path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------


def add_build_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``spiegel build`` arguments (the batch file's values, overridable)."""
    parser.add_argument("batch_file", nargs="?", default=str(PARAMETERS_DIR / "demo.yaml"),
                        help="the batch file, e.g. parameters/demo.yaml (the default)")
    parser.add_argument("--practice", action="append", metavar="AGB",
                        help="only this practice (repeatable; overrides `practices`)")
    parser.add_argument("--quarter", action="append", metavar="YYYYQn",
                        help="only this quarter (repeatable, or `latest`; overrides `quarters`)")
    parser.add_argument("--report", action="append", metavar="ID",
                        help=f"only this report (repeatable; {', '.join(REPORTS)})")
    parser.add_argument("--format", action="append", metavar="FMT",
                        help="html and/or pdf (repeatable or comma-separated; overrides `formats`)")
    parser.add_argument("--workers", metavar="N", help="worker processes (default: the machine's cores)")
    parser.add_argument("--executor", choices=EXECUTORS, help="local process pool (default) or dask")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--force", action="store_true", help="rerun every run, even when up to date")
    parser.add_argument("--timeout", metavar="SECONDS", help="time limit per run (default 900)")
    parser.add_argument("--outputs", metavar="DIR", help="outputs folder (default outputs/)")
    parser.add_argument("--warehouse", metavar="FILE", help="the DuckDB warehouse (overrides `warehouse`)")
    parser.epilog = (f"{EXIT_CODES_HELP} (Ctrl-C or SIGTERM; the same command without --force resumes). "
                     "A practice whose new delivery is refused keeps a report built from its previous "
                     "delivery, still in the warehouse.")
    return parser


class _BuildLock:
    """One build at a time per outputs folder (two would race on the same files)."""

    def __init__(self, outputs: Path):
        self.path = Path(outputs) / ".build.lock"
        self.fh = None

    def __enter__(self):
        import fcntl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            raise SpiegelError(f"another `spiegel build` is writing to {self.path.parent} "
                               f"(pid {self.fh.read().strip() or '?'}); wait for it to finish") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc):
        import fcntl
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def error_lines(exc: SpiegelError) -> list[str]:
    """What the build prints for a user error: one line per problem, a refused delivery in one line."""
    if isinstance(exc, ContractError) and exc.problems:
        more = len(exc.problems) - 1
        return [f"{exc.subject} refused: {exc.problems[0].describe()}"
                f"{f' (and {more} more problem(s))' if more else ''}; correct the file and run the build "
                "again (the contract is spec/his-extract.md; `spiegel ingest <dataset>` lists every problem)"]
    return [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]


def check_outputs_writable(outputs: Path) -> None:
    """Create the outputs folder and write a probe file in it: a read-only folder (or disk) is
    one line now, not a traceback halfway through the build."""
    import tempfile
    try:
        outputs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=outputs, prefix=".write-probe-"):
            pass
    except OSError as e:
        raise ParameterError(f"outputs folder {outputs} is not writable ({e.strerror}): choose another "
                             "folder with --outputs or make this one writable") from None


def check_scheduler(address: str, timeout: float = 3.0) -> None:
    """Refuse an unreachable Dask scheduler in seconds (the Dask client waits 30 s per try)."""
    import socket
    from urllib.parse import urlsplit
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        return   # inproc:// and other transports: the client itself will tell
    try:
        host, port = parts.hostname, parts.port or 8786
    except ValueError:
        raise ParameterError(f"scheduler {address!r} is not an address: write it as tcp://host:8786") from None
    if not host:
        raise ParameterError(f"scheduler {address!r} names no host: write it as tcp://host:8786")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__.replace("Error", " error").lower()
        raise ParameterError(f"Dask scheduler {address} is not reachable ({reason}): start it "
                             f"(`dask scheduler`) or give the right address with --scheduler") from None


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (``timeout``, CI cancellation, service managers) stops the build exactly like
    Ctrl-C: a KeyboardInterrupt in the main thread. The previous handler comes back on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_held():
    """No second Ctrl-C or SIGTERM while an interrupted build records what it has."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_build(args: argparse.Namespace) -> int:
    """Run ``spiegel build``; returns the exit status (the build command's epilog lists them)."""
    with sigterm_as_interrupt():
        try:
            b = load_batch(args.batch_file, args)
            check_outputs_writable(b.outputs)
            if b.executor == "dask":
                check_scheduler(b.scheduler)
            with _BuildLock(b.outputs):
                return _build(b)
        except SpiegelError as e:
            for line in error_lines(e):
                print(f"spiegel build: {line}", file=sys.stderr)
            return exit_code(e)


def _build(b: Batch) -> int:
    from .runner import RunResult, make_executor
    started = time.perf_counter()
    extra_lines: list[str] = []
    executor = None
    manifests: dict[str, Manifest] = {}
    in_flight: dict[str, object] = {}    # runs handed to the executor, not yet recorded
    meta_common = {"spiegel_version": __version__, "environment": environment_fingerprint(), "batch": b.name}

    def get_executor():
        nonlocal executor
        if executor is None:
            preload = notebook_imports([get_report(r).notebook for r in b.reports])
            try:
                executor = make_executor(b.executor, b.workers, b.scheduler, preload)
            except Exception as exc:  # noqa: BLE001 - whatever the Dask client raises, the address is wrong
                if b.executor != "dask":
                    raise
                raise ParameterError(f"Dask scheduler {b.scheduler} does not answer as a Dask scheduler "
                                     f"({type(exc).__name__}): give its address with --scheduler "
                                     "(tcp://host:8786)") from None
        return executor

    print(f"spiegel build {b.name}: outputs {b.outputs}, warehouse {b.warehouse}", flush=True)
    try:
        # 1. ingest
        refused: dict[str, str] = {}
        ingest: dict = {}
        if b.dataset is not None and b.ingest:
            ingest = _ingest_if_changed(b, get_executor, print)
            refused = {**ingest.get("refused", {}), **ingest.get("failed", {})}
            if not ingest.get("skipped"):
                extra_lines.append(f"ingest: {len(ingest['loaded'])} loaded, {len(ingest['unchanged'])} unchanged, "
                                   f"{len(ingest['refused'])} refused, {len(ingest['failed'])} failed "
                                   f"in {ingest['seconds']:.1f}s")
                for p in ingest.get("dataset_problems", []):
                    extra_lines.append(f"  dataset problem: {p}")
        if not b.warehouse.exists():
            raise ParameterError(f"warehouse {b.warehouse} does not exist: run `spiegel ingest <dataset>` first "
                                 f"(or name the dataset in {b.source})")
        # 2. plan
        from .warehouse import Warehouse
        wh = Warehouse(b.warehouse)
        practices_df = wh.practices()
        hashes = wh.practice_hashes()
        stale = stale_data(refused, previous_loads(b.warehouse) if hashes else {}, set(ingest.get("failed", {})))
        practices, regions, quarters = resolve_selection(b, practices_df, refused)
        specs = plan_runs(b, practices_df, hashes, refused, practices, regions, quarters)
        extra_lines += [stale_line(agb, stale[agb]) for agb in practices if agb in stale]
        # 3. skip what is up to date
        for q in quarters:   # what an interrupted build left (the outputs lock says it is gone)
            clean_stale(b.outputs / q, everyone=True)
        manifests = {q: Manifest(b.outputs, q) for q in quarters}
        to_run, skipped = [], []
        for s in specs:
            if b.force or s.pre_failed is not None:
                to_run.append(s)
            elif manifests[s.quarter].up_to_date(s):
                skipped.append(s)
                manifests[s.quarter].mark_skipped(s, b.name, stale_of(s, stale))
            else:
                to_run.append(replace(s, render_only=manifests[s.quarter].renderable(s)))
        print(f"spiegel build {b.name}: {len(specs)} runs ({len(practices)} practices, {len(regions)} regions, "
              f"quarters {', '.join(quarters)}, reports {', '.join(b.reports)}, formats {', '.join(b.formats)}): "
              f"{len(to_run)} to run{_render_only_note(to_run)}, {len(skipped)} up to date", flush=True)
        results: dict = {}
        worker_mem = []
        # 4. prepare + run
        if to_run:
            # runs that cannot start (refused first delivery, quarter past the extraction) fail without a kernel
            for s in [s for s in to_run if s.pre_failed]:
                results[s.name] = _fail_without_kernel(s)
            runnable = [s for s in to_run if not s.pre_failed]
            prepared = {}
            for q in sorted({s.quarter for s in runnable}):
                t0 = time.perf_counter()
                fresh = None if b.force else _fresh_cube(b.warehouse, q)
                if fresh is not None:   # up to date: no need to wait for a worker to say so
                    prepared[q] = fresh
                    extra_lines.append(f"prepare {q}: cube up to date (key {str(fresh['key'])[:12]})")
                    continue
                try:
                    prepared[q] = get_executor().call("helpers.batch:prepare_task", str(b.warehouse), q, b.force)
                    prepared[q]["seconds"] = round(time.perf_counter() - t0, 3)
                    extra_lines.append(f"prepare {q}: {prepared[q]['seconds']:.2f}s (cube {Path(prepared[q]['path']).name}, "
                                       f"key {str(prepared[q]['key'])[:12]})")
                except SpiegelError:
                    raise   # a busy or unusable warehouse stops the build with its own exit status
                except Exception as exc:  # noqa: BLE001 - every run of the quarter fails with it
                    msg = f"{type(exc).__name__}: {_first_line(exc)}"
                    for s in [s for s in runnable if s.quarter == q]:
                        results[s.name] = RunResult(name=s.name, error={"stage": "prepare", "message": msg})
            runnable = [s for s in runnable if s.name not in results]
            progress = Progress(len(to_run))
            by_name = {s.name: s for s in to_run}
            for s in to_run:
                if s.name in results:
                    _record(manifests, s, results[s.name], b, prepared, meta_common, stale)
                    progress.update(s, results[s.name])
            try:
                in_flight.update((s.name, s) for s in runnable)
                if runnable:
                    for result in get_executor().run_all(runnable):
                        s = by_name[result.name]
                        results[s.name] = result
                        _record(manifests, s, result, b, prepared, meta_common, stale)
                        in_flight.pop(s.name, None)
                        progress.update(s, result)
            finally:
                progress.close()
            worker_mem = get_executor().memory() if runnable else []
        for m in manifests.values():
            m.save(meta_common)
        # 5. portal and summary
        from .render.portal import build_portal
        portal = build_portal(b.outputs)
        extra_lines.append(_memory_line(results, worker_mem))
        print_summary(specs, results, skipped, time.perf_counter() - started, extra_lines, b.outputs, portal)
        refused_here = any(s.key in refused for s in specs if s.scope == "practice")
        failed = any(r.status != "done" for r in results.values())
        return 1 if failed or refused_here else 0
    except KeyboardInterrupt:
        with _signals_held():
            if executor is not None:
                # from now on no run starts and none that finishes is kept; the grace lets the
                # workers end their kernels themselves before they are terminated
                executor.close(grace=2)
            discarded = discard_unrecorded(manifests, in_flight.values())
            for m in manifests.values():
                m.save(meta_common)
            if manifests:   # no link to a discarded file
                from .render.portal import build_portal
                build_portal(b.outputs)
        print(f"\n{interrupt_message(b, discarded)}", file=sys.stderr)
        return exit_code(KeyboardInterrupt())
    finally:
        if executor is not None:
            executor.close()
        for q in manifests:   # the workers are gone: what a killed one was writing goes too
            clean_stale(b.outputs / q, everyone=True)


def _render_only_note(to_run: list) -> str:
    n = sum(1 for s in to_run if s.render_only)
    return f" ({n} only rendered again from their executed notebook)" if n else ""


def interrupt_message(b: Batch, discarded: int = 0) -> str:
    """What an interrupted build says: how to resume (without --force, which would rerun everything)."""
    dropped = f"; {discarded} file(s) written after the interrupt were removed" if discarded else ""
    if b.force:
        how = ("run the same command without --force to resume (it runs only what is missing; "
               "with --force everything runs again)")
    else:
        how = "run the same command again to resume (it runs only what is missing)"
    return f"spiegel build: interrupted; finished runs are kept{dropped}; {how}"


def discard_unrecorded(manifests: dict, specs) -> int:
    """After an interrupt: a run that was under way may have replaced some of its files without
    being recorded. Each file whose bytes differ from the manifest's record is removed (with its
    record), so no file is described by a stale hash; the next build redoes the run."""
    removed = 0
    for spec in specs:
        m = manifests.get(spec.quarter)
        if m is None:
            continue
        entry = m.runs.get(spec.name) or {}
        recorded = {str((m.path.parent / r["path"]).resolve()): r
                    for r in [*entry.get("outputs", {}).values(), *entry.get("extras", [])]}
        candidates = {str(Path(p).resolve()) for p in spec.files.values()} | set(recorded)
        for path in sorted(candidates):
            rec = recorded.get(path)
            if not os.path.exists(path) or (rec is not None and _file_sha(path) == rec.get("sha256")):
                continue
            os.unlink(path)
            removed += 1
            if entry:
                entry["outputs"] = {k: v for k, v in entry.get("outputs", {}).items() if v is not rec}
                entry["extras"] = [x for x in entry.get("extras", []) if x is not rec]
                entry["status"] = "failed"
                entry["error"] = {"stage": "interrupted",
                                  "message": "the build was interrupted while this run wrote its files; "
                                             "the next build runs it again"}
    return removed


def _file_sha(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _memory_line(results: dict, worker_mem: list[dict]) -> str:
    from .runner import peak_rss_mb
    mem = f"memory: coordinator peak {peak_rss_mb():.0f} MB"
    peaks: dict[str, float] = {}
    for r in results.values():
        if r.worker and r.memory_mb.get("worker_peak"):
            peaks[r.worker] = max(peaks.get(r.worker, 0), r.memory_mb["worker_peak"])
    for m in worker_mem:
        if m.get("worker"):
            peaks[m["worker"]] = max(peaks.get(m["worker"], 0), m.get("worker_peak") or 0)
    if peaks:
        mem += "; workers peak " + ", ".join(f"{v:.0f}" for v in peaks.values()) + " MB"
    factories = [m["factory_rss"] for m in worker_mem if m.get("factory_rss")]
    if factories:
        mem += "; kernel factory " + ", ".join(f"{v:.0f}" for v in factories) + " MB"
    kernels = [r.memory_mb.get("kernel_peak") for r in results.values() if r.memory_mb.get("kernel_peak")]
    if kernels:
        mem += f"; kernel peak {max(kernels):.0f} MB (pages shared with the factory included)"
    return mem


def _record(manifests, spec, result, b: Batch, prepared: dict, meta_common: dict, stale: dict) -> None:
    m = manifests[spec.quarter]
    prep = prepared.get(spec.quarter)
    if prep:
        result.timings.setdefault("prepare_shared", prep["seconds"])
    m.record(spec, result, b.name, stale_of(spec, stale))
    meta = dict(meta_common)
    if prep:
        meta["cube"] = {"key": prep["key"], "computed_at": prep.get("computed_at"),
                        "prepare_s": prep["seconds"], "timings_s": prep.get("timings_s")}
    m.save(meta)


def _fail_without_kernel(spec):
    from .runner import RunResult
    result = RunResult(name=spec.name, error=dict(spec.pre_failed), finished_at=_now_iso(), attempts=0)
    write_atomic(Path(spec.log_path),
                 f"{time.strftime('%H:%M:%S')} run {spec.name}: not started\n"
                 f"{time.strftime('%H:%M:%S')} {spec.pre_failed['stage']}: {spec.pre_failed['message']}\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spiegel build", description=__doc__.splitlines()[0])
    add_build_arguments(parser)
    return run_build(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
