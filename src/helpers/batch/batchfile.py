"""The batch file and the flags that override it: parsed explicitly (every scalar read as text)
and checked before anything runs, one :class:`~helpers.errors.Problem` per mistake, all of them
raised together (``load_batch``).

>>> b, problems = parse_batch({"quarters": "2025Q5", "formats": "html"}, "b.yaml")
>>> [p.describe() for p in problems]
["b.yaml, quarters: found '2025Q5', expected a quarter YYYYQn (n from 1 to 4, year 1900 to 2100); e.g. 2025Q2"]
"""

from __future__ import annotations

import argparse
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import DEFAULT_WAREHOUSE, PARAMETERS_DIR, PROJECT_ROOT, Settings
from ..errors import ParameterError, Problem
from ..identifiers import ISO_DATE_RE, is_agb, is_ascii_int
from ..quarter import Quarter
from ..reports import REPORTS


#: every output format; ``slides`` (``<report>.slides.html``, a reveal.js deck) only for the
#: report kinds whose ``ReportSpec.formats`` lists it, skipped for the others
FORMATS = ("html", "pdf", "slides")

#: the formats of a batch file that names none
DEFAULT_FORMATS = ("html", "pdf")


#: the names of ``helpers.runner.EXECUTORS`` (kept here so reading a batch file imports no
#: runner; tests/unit/test_batch.py keeps the two in step)
EXECUTORS = ("local", "dask")


DEFAULT_TIMEOUT = 900


#: every key a batch file may hold, with what it means (unknown keys are refused)
BATCH_KEYS = {
    "description": "free text",
    "dataset": "the delivered dataset folder; ingested when its files changed (empty: use the warehouse as it is)",
    "warehouse": "the DuckDB warehouse file (default data/warehouse.duckdb)",
    "ingest": "true (default when a dataset is named) or false",
    "quarters": "a list of quarters (2025Q2), `latest` (the latest complete quarter of the extraction dates) or `latest N` (the N latest)",
    "practices": "`all` or a list of AGB codes (quote them: '01000001')",
    "reports": f"a list of report ids ({', '.join(REPORTS)})",
    "formats": "a list from html, pdf, slides (the executed .ipynb is always kept; slides only for the report kinds that have them)",
    "executor": "local (default) or dask",
    "scheduler": "the Dask scheduler address (executor dask)",
    "workers": "number of local worker processes (default: the machine's cores)",
    "timeout": "time limit per run in seconds (or 90s, 15m, 1h)",
    "outputs": "the outputs folder (default outputs/)",
    "params": "extra notebook parameters per report, e.g. {his_analyse: {name: value}} (checked against the report)",
}


@dataclass(frozen=True)
class At:
    """Where a batch value comes from: a key of the batch file ``file``, or a command-line flag
    (``file`` None, ``key`` the flag); makes that place's :class:`Problem`.

    >>> At(None, "--workers").problem("0", "a whole number of at least 1").describe()
    "--workers: found '0', expected a whole number of at least 1"
    """

    file: str | None
    key: str

    def problem(self, value, expected: str, fix: str | None = None) -> Problem:
        """The problem of ``value`` found here."""
        return Problem(self.file, None, None, value, expected, fix=fix, key=self.key)

    def sub(self, key: str) -> "At":
        """A key inside this one (``params.his_analyse``)."""
        return At(self.file, f"{self.key}.{key}")


@dataclass
class Batch:
    """A parsed, validated batch file (with command-line overrides applied); ``quarters`` None
    means the latest, ``practices`` None all of them.

    >>> Batch(name="demo", source="demo.yaml").reports
    ['his_analyse']
    """

    name: str
    source: str
    dataset: Path | None = None
    warehouse: Path = DEFAULT_WAREHOUSE
    ingest: bool = True
    quarters: list[str] | None = None        # None: the latest `latest` complete quarters
    latest: int = 1
    practices: list[str] | None = None       # None: all
    reports: list[str] = field(default_factory=lambda: ["his_analyse"])
    formats: list[str] = field(default_factory=lambda: list(DEFAULT_FORMATS))
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


_QUARTER = "a quarter YYYYQn (n from 1 to 4, year 1900 to 2100)"


_LATEST = re.compile(r"latest(?:\s+(\S+))?", re.IGNORECASE)
#: at most this many latest quarters (two years of rolling windows)
MAX_LATEST = 8


def latest_count(values, where: At, problems: list[Problem]) -> int | None:
    """``latest`` -> 1, ``latest N`` -> N (1 to ``MAX_LATEST``); None when ``values`` names quarters.

    >>> latest_count("latest", At(None, "q"), []), latest_count("Latest 2", At(None, "q"), []), latest_count(["2025Q2"], At(None, "q"), [])
    (1, 2, None)
    >>> from helpers.errors import format_problem
    >>> p = []; latest_count("latest two", At("b.yaml", "quarters"), p), format_problem(p[0])
    (None, "b.yaml, quarters: found 'latest two', expected `latest` or `latest N` with N a whole number from 1 to 8; e.g. latest 2")
    """
    values = _as_list(values)
    if not values:
        return 1
    if len(values) != 1 or isinstance(values[0], (dict, list)):
        return None
    m = _LATEST.fullmatch(str(values[0]).strip())
    if not m:
        return None
    if m.group(1) is None:
        return 1
    if m.group(1).isdigit() and 1 <= int(m.group(1)) <= MAX_LATEST:
        return int(m.group(1))
    problems.append(where.problem(values[0], f"`latest` or `latest N` with N a whole number from 1 to {MAX_LATEST}",
                                  "e.g. latest 2"))
    return None


def parse_quarters(values, where: At, problems: list[Problem]) -> list[str] | None:
    """``latest`` (or ``latest N``, see ``latest_count``) -> None; otherwise each value parsed
    as a quarter (problems collected).

    >>> parse_quarters(["2025q2", "2025-Q3"], At(None, "--quarter"), []), parse_quarters("latest", At(None, "q"), [])
    (['2025Q2', '2025Q3'], None)
    """
    values = _as_list(values)
    if not values or (len(values) == 1 and _LATEST.fullmatch(str(values[0]).strip())):
        return None
    out = []
    for v in values:
        if isinstance(v, (dict, list)):
            problems.append(where.problem(v, _QUARTER, "e.g. 2025Q2"))
            continue
        if ISO_DATE_RE.fullmatch(str(v).strip()):
            problems.append(where.problem(v, "a quarter, not a date", "write it as YYYYQn, e.g. 2025Q2"))
            continue
        if str(v).strip().lower() == "latest":
            problems.append(where.problem(v, "either `latest` or explicit quarters, not both"))
            continue
        try:
            q = str(Quarter.parse(v))
        except ParameterError:
            problems.append(where.problem(v, _QUARTER, "e.g. 2025Q2"))
            continue
        if q not in out:
            out.append(q)
    return out


def parse_practices(values, where: At, problems: list[Problem]) -> list[str] | None:
    """``all`` -> None; otherwise each value checked as an AGB code (problems collected).

    >>> problems = []
    >>> parse_practices(["01000001", "123"], At("b.yaml", "practices"), problems), problems[0].describe()
    (['01000001'], "b.yaml, practices: found '123', expected an AGB code (8 digits 0-9); quote it in YAML: '01000001'")
    """
    values = _as_list(values)
    if not values or (len(values) == 1 and str(values[0]).strip().lower() == "all"):
        return None
    out = []
    for v in values:
        s = str(v).strip()
        if not is_agb(s):
            problems.append(where.problem(s, "an AGB code (8 digits 0-9)", "quote it in YAML: '01000001'"))
        elif s not in out:
            out.append(s)
    return out


def parse_reports(values, where: At, problems: list[Problem]) -> list[str]:
    """The report ids, each known to the registry, at least one (problems collected).

    >>> parse_reports("his_analyse", At(None, "--report"), [])
    ['his_analyse']
    """
    out = []
    for v in _as_list(values):
        s = str(v).strip()
        if s not in REPORTS:
            problems.append(where.problem(s, f"a report id: {', '.join(REPORTS)}"))
        elif s not in out:
            out.append(s)
    if not _as_list(values):
        problems.append(where.problem(None, f"at least one report ({', '.join(REPORTS)})"))
    return out


def parse_formats(values, where: At, problems: list[Problem]) -> list[str]:
    """The output formats; ``ipynb`` is dropped (always written).

    >>> parse_formats(["HTML", ".pdf", "ipynb"], At(None, "--format"), [])
    ['html', 'pdf']
    """
    out = []
    for v in _as_list(values):
        s = str(v).strip().lower().lstrip(".")
        if s == "ipynb":
            continue   # always written
        if s not in FORMATS:
            problems.append(where.problem(s, f"a format: {' or '.join(FORMATS)}"))
        elif s not in out:
            out.append(s)
    return out


_TIMEOUT_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|sec|m|min|h)?\s*", re.ASCII)


def parse_timeout(value, where: At, problems: list[Problem]) -> int | None:
    """Whole seconds, rounded up: the notebook executor only takes whole seconds.

    >>> parse_timeout("90.5", At(None, "--timeout"), []), parse_timeout("1.5m", At(None, "--timeout"), [])
    (91, 90)
    """
    m = _TIMEOUT_RE.fullmatch(str(value))
    if not m:
        problems.append(where.problem(value, "a time limit: seconds (900) or 15m / 1h"))
        return None
    seconds = float(m.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, None: 1}[m.group(2)]
    if seconds <= 0:
        problems.append(where.problem(value, "a time limit of more than 0 seconds"))
        return None
    return math.ceil(seconds)


def parse_workers(value, where: At, problems: list[Problem]) -> int | None:
    """A number of worker processes; ``auto`` (or empty) -> None, one per core.

    >>> parse_workers("3", At(None, "--workers"), []), parse_workers("auto", At(None, "--workers"), [])
    (3, None)
    """
    s = str(value).strip().lower()
    if s in ("", "auto", "none"):
        return None
    if not is_ascii_int(s) or int(s) < 1:
        problems.append(where.problem(value, "a number of workers: a whole number of at least 1 (or auto)"))
        return None
    return int(s)


def parse_bool(value, where: At, problems: list[Problem]) -> bool | None:
    """true/yes/on/1 or false/no/off/0 (YAML's scalars arrive as text).

    >>> parse_bool("no", At("b.yaml", "ingest"), [])
    False
    """
    s = str(value).strip().lower()
    if s in ("true", "yes", "on", "1"):
        return True
    if s in ("false", "no", "off", "0"):
        return False
    problems.append(where.problem(value, "true or false"))
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
    """The raw batch file: a mapping whose scalars are all strings (nothing guessed by YAML).

    >>> load_batch_file(PARAMETERS_DIR / "demo.yaml")["practices"]
    'all'
    """
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


def _shape_problem(source: str, key: str, value) -> Problem | None:
    """The problem when a batch value has the wrong shape (``outputs: {a: b}``), else None."""
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
    return At(source, key).problem(None, f"{must}, not {found}", f"{key} is {BATCH_KEYS[key]}")


def parse_batch(data: dict, source: str = "<batch>") -> tuple[Batch, list[Problem]]:
    """A Batch from the raw mapping, and every problem found.

    >>> b, problems = parse_batch({"practices": ["01000001"], "formats": "html"}, "b.yaml")
    >>> b.practices, b.formats, problems
    (['01000001'], ['html'], [])
    """
    problems: list[Problem] = []
    name = Path(source).stem
    b = Batch(name=name, source=source)
    for key in sorted(set(data) - set(BATCH_KEYS)):
        problems.append(Problem(source, None, None, key, f"a batch file key: {', '.join(BATCH_KEYS)}"))
    data = dict(data)
    for key in [k for k in data if k in BATCH_KEYS]:
        problem = _shape_problem(source, key, data[key])
        if problem:
            problems.append(problem)
            del data[key]   # checked once: no second message about the same value

    def where(key):
        return At(source, key)

    if data.get("dataset"):
        b.dataset = _path(data["dataset"])
    b.warehouse = _path(data["warehouse"]) if data.get("warehouse") else Settings.from_env().warehouse
    if "ingest" in data:
        v = parse_bool(data["ingest"], where("ingest"), problems)
        b.ingest = bool(v) if v is not None else True
    b.quarters = parse_quarters(data.get("quarters", "latest"), where("quarters"), problems)
    b.latest = latest_count(data.get("quarters", "latest"), where("quarters"), problems) or 1
    b.practices = parse_practices(data.get("practices", "all"), where("practices"), problems)
    b.reports = parse_reports(data.get("reports", ["his_analyse"]), where("reports"), problems)
    b.formats = parse_formats(data.get("formats", list(DEFAULT_FORMATS)), where("formats"), problems)
    executor = str(data.get("executor", "local")).strip().lower()
    if executor not in EXECUTORS:
        problems.append(where("executor").problem(executor, f"an executor: {' or '.join(EXECUTORS)}"))
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
SWEEP_TYPES = ("practice", "hagro", "region", "quarter")


def parse_extra_params(value, reports: list[str], where: At, problems: list[Problem]) -> dict:
    """``params: {report: {name: value}}``: names must be parameters the report declares.

    >>> problems = []
    >>> parse_extra_params({"his_analyse": {"colour": "red"}}, ["his_analyse"], At("b.yaml", "params"), problems)
    {}
    >>> problems[0].describe().split(", expected")[0]
    "b.yaml, params.his_analyse: found 'colour'"
    """
    if not isinstance(value, dict):
        problems.append(where.problem(None, "a mapping per report", "e.g. {his_analyse: {name: value}}"))
        return {}
    out = {}
    for report_id, values in value.items():
        if report_id not in REPORTS:
            problems.append(where.problem(report_id, f"a report id: {', '.join(REPORTS)}"))
            continue
        if not isinstance(values, dict):
            problems.append(where.sub(report_id).problem(None, "its parameters as a mapping name: value"))
            continue
        spec = REPORTS[report_id]
        types = {p.name: p.type for p in spec.params}
        swept = {p.name for p in spec.params if p.type in SWEEP_TYPES or p.sweep}
        for name, v in values.items():
            if name not in types:
                problems.append(where.sub(report_id).problem(
                    name, f"a parameter of {report_id}: {', '.join(spec.param_names())}"))
            elif name in swept:
                problems.append(where.sub(report_id).problem(
                    name, "a parameter the sweep does not set", "use practices/quarters/warehouse instead"))
            elif isinstance(v, (dict, list)):
                problems.append(where.sub(report_id).sub(name).problem(None, "a single value"))
            else:
                out.setdefault(report_id, {})[name] = str(v)
    return out


def apply_overrides(b: Batch, args: argparse.Namespace, problems: list[Problem]) -> Batch:
    """Command-line flags win over the batch file; then the checks of the whole (a Dask
    executor has a scheduler, the dataset, warehouse and outputs paths are usable)."""
    b = replace(b)
    if getattr(args, "practice", None):
        b.practices = parse_practices(args.practice, At(None, "--practice"), problems)
    if getattr(args, "quarter", None):
        b.quarters = parse_quarters(args.quarter, At(None, "--quarter"), problems)
        b.latest = latest_count(args.quarter, At(None, "--quarter"), problems) or 1
    if getattr(args, "report", None):
        b.reports = parse_reports(args.report, At(None, "--report"), problems)
    if getattr(args, "format", None):
        b.formats = parse_formats([f for v in args.format for f in str(v).split(",")], At(None, "--format"), problems)
    if getattr(args, "workers", None) is not None:
        b.workers = parse_workers(args.workers, At(None, "--workers"), problems)
    if getattr(args, "executor", None):
        b.executor = args.executor
    if getattr(args, "scheduler", None):
        b.scheduler = args.scheduler
    if getattr(args, "timeout", None) is not None:
        b.timeout = parse_timeout(args.timeout, At(None, "--timeout"), problems) or b.timeout
    if getattr(args, "outputs", None):
        b.outputs = Path(args.outputs).resolve()
    if getattr(args, "warehouse", None):
        b.warehouse = Path(args.warehouse).resolve()
    if getattr(args, "force", False):
        b.force = True
    if b.executor == "dask" and not b.scheduler:
        problems.append(At(None, "--scheduler").problem(
            None, "a scheduler address: executor dask needs one",
            "--scheduler tcp://host:8786 (or `scheduler:` in the batch file)"))
    if b.dataset is not None and b.dataset.exists() and not b.dataset.is_dir():
        problems.append(At(b.source, "dataset").problem(
            b.dataset, "a dataset folder, not a file", "give the folder that holds practices.csv"))
    elif b.dataset is not None and not b.dataset.is_dir():
        problems.append(At(b.source, "dataset").problem(
            b.dataset, "a dataset folder that exists", "generate the demo with `spiegel demo-data --out data/demo`"))
    if b.warehouse.is_dir():
        problems.append(At(b.source, "warehouse").problem(
            b.warehouse, "the DuckDB file, not a folder",
            f"e.g. {b.warehouse / 'warehouse.duckdb'} (--warehouse or `warehouse:` in {b.source})"))
    blocker = next((p for p in (b.outputs, *b.outputs.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        problems.append(At(b.source, "outputs").problem(
            b.outputs, f"a folder, but {blocker} is a file", f"give a folder (--outputs or `outputs:` in {b.source})"))
    if not b.formats:
        problems.append(At(b.source, "formats").problem(None, "html, pdf and/or slides"))
    return b


def load_batch(path: Path | str, args: argparse.Namespace | None = None) -> Batch:
    """Parse and check a batch file (plus overrides); ParameterError lists every problem.

    >>> b, problems = parse_batch(load_batch_file(PARAMETERS_DIR / "demo.yaml"), "demo.yaml")
    >>> "his_analyse" in b.reports, problems
    (True, [])
    >>> load_batch(PARAMETERS_DIR / "demo.yaml")      # doctest: +SKIP
    Batch(...)

    (The last one checks that ``dataset: data/demo`` exists: after ``make demo``.)
    """
    source = str(path)
    data = load_batch_file(path)
    b, problems = parse_batch(data, source)
    b = apply_overrides(b, args or argparse.Namespace(), problems)
    if problems:
        raise ParameterError.from_problems(problems)
    return b
