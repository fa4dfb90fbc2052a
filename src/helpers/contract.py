"""The input data contract (spec/his-extract.md) as data, and the one loader that enforces it.

Every table of the contract is a :class:`TableSpec` in :data:`TABLES`. Each file is read as
raw text first (so a problem shows the value exactly as delivered), checked per column with
a pandera schema built from the spec (all problems of a file at once, ``lazy=True``), then
typed. Rules across tables (patients exist, dates in range, ends after starts, practice
folders match the register) run vectorised on the typed frames.

>>> from helpers import contract
>>> register = contract.read_practices(dataset)                     # doctest: +SKIP
>>> data = contract.load_practice(dataset, register.practices.iloc[0])  # doctest: +SKIP
>>> data.contacts.head()                                             # doctest: +SKIP

Which files are required is our reading of the contract ("a missing optional file means
no rows"): ``practices.csv`` for the dataset and ``patients.csv`` for each practice are
required (see :data:`REQUIRED_FILES`); every other table, and ``payments.csv``, may be
absent and then has no rows.

Where the contract leaves room, this is how we read it:

- Codes (sex, kind, role, programme, main_practitioner) are case-sensitive as listed. ICPC
  and ATC codes are accepted in either case and stored in upper case.
- Every cell is trimmed; a cell of only spaces is empty (= missing).
- Numbers: one decimal comma or point, an optional sign; no thousands separators
  (``1.234,5`` is refused: ``1.234`` would be ambiguous). ``int`` holds up to 9 digits.
- ``insurer_uzovi`` is 4 digits in payments.csv too. ``invoice_number`` is not checked.
- payments.csv dates are only bounded below (1900-01-01): payment rounds come after the
  HIS extraction. A payments row with a problem refuses the practice it belongs to; a row
  whose practice_agb is not in practices.csv is a problem of no practice.
- ``x.csv`` and ``x.parquet`` side by side is a problem. An empty (0-byte) optional file is
  no rows, with a warning. Hidden folders under extracts/ (``.x``, ``__x``) are ignored.
- For a parquet file, ``line`` is the row number + 1, as if it had been exported with a header.
- Problems are listed per file: the first of each kind, then the rest, in line order.

This module touches patient rows. Warnings and logs name files and columns only; patient
values appear only in :class:`~helpers.errors.Problem` entries, which the contract asks for.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import threading
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc
from pandera.errors import SchemaErrors

from .errors import ContractError, Problem
from .identifiers import AGB_PATTERN, POSTCODE4_PATTERN, QUARTER_PATTERN, UZOVI_PATTERN

log = logging.getLogger("spiegel.contract")

# ---------------------------------------------------------------------------------------
# The contract as data
# ---------------------------------------------------------------------------------------

TYPES = ("str", "int", "num", "date", "code")

#: Bounds for every date in a practice's tables: from this day to its extraction_date.
EARLIEST_DATE = pd.Timestamp("1900-01-01")
#: birth_year runs from this year to the extraction year.
EARLIEST_BIRTH_YEAR = 1890

DATE_EXPECTED = "a date as YYYY-MM-DD or DD-MM-YYYY (e.g. 2024-01-05)"
INT_EXPECTED = "a whole number (e.g. 12)"
NUM_EXPECTED = "a number with a decimal comma or point (e.g. 7,4 or 7.4)"


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a contract table.

    ``pattern`` (a full-match regular expression on the raw text) and ``pattern_expected``
    (what a user should write instead) hold the contract's format rules for ``str`` columns;
    ``codes`` holds the closed list of a ``code`` column.
    """

    name: str
    type: str
    required: bool = False
    codes: tuple[str, ...] = ()
    pattern: str | None = None
    pattern_expected: str | None = None
    unique: bool = False
    upper: bool = False  # accepted in either case, stored in upper case (ICPC, ATC)

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type!r}")
        if (self.type == "code") != bool(self.codes):
            raise ValueError(f"column {self.name}: a code column needs codes, others none")


@dataclass(frozen=True)
class TableSpec:
    """One table of the contract: its file name, columns and the periods it holds."""

    name: str
    columns: tuple[ColumnSpec, ...]
    required: bool = False
    scope: str = "practice"  # "practice": extracts/<agb>/<name>.csv; "dataset": <name>.csv
    periods: tuple[tuple[str, str], ...] = ()  # (start, end): end not before start

    @property
    def file(self) -> str:
        return f"{self.name}.csv"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _c(name, type_, required=False, **kw) -> ColumnSpec:
    return ColumnSpec(name, type_, required, **kw)


_AGB = dict(pattern=AGB_PATTERN, pattern_expected="an AGB code of 8 digits (e.g. 01234567)")
_UZOVI = dict(pattern=UZOVI_PATTERN, pattern_expected="a UZOVI code of 4 digits (e.g. 3311)")
_ICPC = dict(
    pattern=r"[A-Za-z][0-9]{2}(\.[0-9]{2})?",
    pattern_expected="an ICPC code: a letter, two digits, optional . and two digits (e.g. T90.02, K86)",
    upper=True,
)
_ATC = dict(
    pattern=r"[A-Za-z][0-9]{2}[A-Za-z0-9]*",
    pattern_expected="an ATC code of at least 3 characters: a letter and two digits first (e.g. A10BA02)",
    upper=True,
)
PROGRAMMES = ("DM2", "COPD", "CVRM", "ASTMA")
CONTACT_KINDS = ("consult", "consult_lang", "visite", "visite_lang", "telefonisch", "e-consult")
CONTACT_ROLES = ("huisarts", "poh-s", "poh-ggz", "assistent")

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TableSpec(
            "practices",
            (
                _c("practice_agb", "str", True, unique=True, **_AGB),
                _c("name", "str", True),
                _c("region", "str", True),
                _c("hagro", "str"),
                _c("his_system", "str"),
                _c("fte_gp", "num"),
                _c("extraction_date", "date", True),
            ),
            required=True,
            scope="dataset",
        ),
        TableSpec(
            "patients",
            (
                _c("patient_id", "str", True, unique=True),
                _c("birth_year", "int", True),
                _c("sex", "code", True, codes=("M", "V", "O")),
                _c("postcode4", "str", pattern=POSTCODE4_PATTERN, pattern_expected="a postcode area of 4 digits (e.g. 3511)"),
                _c("insurer_uzovi", "str", **_UZOVI),
                _c("registered_from", "date", True),
                _c("registered_until", "date"),
                _c("deceased_on", "date"),
            ),
            required=True,
            periods=(("registered_from", "registered_until"),),
        ),
        TableSpec(
            "episodes",
            (
                _c("patient_id", "str", True),
                _c("icpc", "str", True, **_ICPC),
                _c("start_date", "date", True),
                _c("end_date", "date"),
            ),
            periods=(("start_date", "end_date"),),
        ),
        TableSpec(
            "contacts",
            (
                _c("contact_id", "str", True, unique=True),
                _c("patient_id", "str", True),
                _c("date", "date", True),
                _c("kind", "code", True, codes=CONTACT_KINDS),
                _c("role", "code", True, codes=CONTACT_ROLES),
                _c("icpc", "str", **_ICPC),
            ),
        ),
        TableSpec(
            "measurements",
            (
                _c("patient_id", "str", True),
                _c("date", "date", True),
                _c("nhg_code", "int", True),
                _c("value", "str", True),
                _c("unit", "str"),
            ),
        ),
        TableSpec(
            "prescriptions",
            (
                _c("patient_id", "str", True),
                _c("date", "date", True),
                _c("atc", "str", True, **_ATC),
                _c("duration_days", "int"),
            ),
        ),
        TableSpec(
            "referrals",
            (
                _c("patient_id", "str", True),
                _c("date", "date", True),
                _c("specialism", "str", True),
                _c("icpc", "str", **_ICPC),
            ),
        ),
        TableSpec(
            "enrolments",
            (
                _c("patient_id", "str", True),
                _c("programme", "code", True, codes=PROGRAMMES),
                _c("start_date", "date", True),
                _c("end_date", "date"),
                _c("main_practitioner", "code", codes=("huisarts", "specialist")),
            ),
            periods=(("start_date", "end_date"),),
        ),
        TableSpec(
            "payments",
            (
                _c("practice_agb", "str", True, **_AGB),
                _c("programme", "code", True, codes=PROGRAMMES),
                _c("quarter", "str", True, pattern=QUARTER_PATTERN, pattern_expected="a quarter as YYYYQn with n from 1 to 4 (e.g. 2025Q2)"),
                _c("insurer_uzovi", "str", **_UZOVI),
                _c("patients_declared", "int", True),
                _c("patients_awarded", "int", True),
                _c("amount_eur", "num", True),
                _c("paid_on", "date"),
                _c("invoice_number", "str"),
            ),
            scope="dataset",
        ),
    )
}

#: The tables of one practice's extraction, in load order (patients first: others refer to it).
PRACTICE_TABLES = ("patients", "episodes", "contacts", "measurements", "prescriptions", "referrals", "enrolments")
#: Files whose absence is an error. Every other contract file may be missing and then has no rows.
REQUIRED_FILES = ("practices.csv", "patients.csv")
#: Files that may be missing (= no rows).
OPTIONAL_FILES = tuple(f"{t}.csv" for t in PRACTICE_TABLES if t != "patients") + ("payments.csv",)

_SEPARATOR_NAMES = {";": "';'", ",": "','", "\t": "tabs"}

# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass
class PracticesResult:
    """What :func:`read_practices` found in ``practices.csv``.

    ``practices``: typed rows of the practices that passed (register row valid and a folder
    present). ``problems``: practice_agb (or folder name) -> problems that refuse it.
    ``file_problems``: problems that belong to no practice (a row without an AGB code).
    ``known``: every practice named by the register or by a folder.
    ``fingerprints``: practice_agb -> the raw text of its register row (for content hashes).
    """

    practices: pd.DataFrame
    problems: dict[str, list[Problem]]
    file_problems: list[Problem]
    warnings: list[str]
    known: list[str]
    fingerprints: dict[str, str] = field(default_factory=dict)
    source: str = "practices.csv"


@dataclass
class PracticeData:
    """The typed tables of one accepted practice, each with a ``practice_agb`` column."""

    practice_agb: str
    patients: pd.DataFrame
    episodes: pd.DataFrame
    contacts: pd.DataFrame
    measurements: pd.DataFrame
    prescriptions: pd.DataFrame
    referrals: pd.DataFrame
    enrolments: pd.DataFrame
    warnings: list[str] = field(default_factory=list)

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in PRACTICE_TABLES}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in PRACTICE_TABLES:
            raise KeyError(name)
        return getattr(self, name)

    def row_counts(self) -> dict[str, int]:
        return {name: int(len(df)) for name, df in self.tables.items()}


@dataclass
class PaymentsResult:
    """All of payments.csv, typed, with problems per practice (see :func:`read_payments`)."""

    payments: pd.DataFrame  # every row with a usable practice_agb (rows with problems too)
    problems: dict[str, list[Problem]]  # practice_agb -> problems in its rows
    file_problems: list[Problem]  # problems tied to no registered practice
    warnings: list[str]
    fingerprints: dict[str, str] = field(default_factory=dict)  # agb -> raw text of its rows

    def all_problems(self) -> list[Problem]:
        out = list(self.file_problems)
        for probs in self.problems.values():
            out += probs
        return _for_reading(out)


# ---------------------------------------------------------------------------------------
# Vectorised parsing of raw text
# ---------------------------------------------------------------------------------------

# Vectorised on pyarrow compute: pandas string methods cost ~0.3 ms a call even on five
# rows, and a practice has some 40 checks; arrow kernels keep small files as cheap as big ones.

_INT = r"^-?[0-9]{1,9}$"  # fits the warehouse's INTEGER (after a leading + is dropped)
_NUM = r"^-?([0-9]+([.,][0-9]+)?|[.,][0-9]+)$"
_STR_DTYPE = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas' default "str"


def _arrow(s: pd.Series) -> pa_arrow.ChunkedArray:
    """The raw text of a column as an arrow large_string array (no copy for "str" columns)."""
    arr = s.array
    if not isinstance(arr, pd.arrays.ArrowStringArray):
        arr = s.astype(_STR_DTYPE).array
    out = pa_arrow.chunked_array(pa_arrow.array(arr)) if not isinstance(arr._pa_array, pa_arrow.ChunkedArray) else arr._pa_array
    return out.cast(pa_arrow.large_string()) if out.type != pa_arrow.large_string() else out


def _bools(x) -> np.ndarray:
    return np.asarray(pc.fill_null(x, False).to_numpy(zero_copy_only=False), dtype=bool)


def _str_series(arr, index) -> pd.Series:
    return pd.Series(_STR_DTYPE.__from_arrow__(arr), index=index)


def _fullmatch(s: pd.Series, pattern: str) -> np.ndarray:
    """True where the text matches ``pattern`` entirely (RE2 syntax); False for missing."""
    return _bools(pc.match_substring_regex(_arrow(s), f"^(?:{pattern})$"))


def isin(s: pd.Series, values) -> pd.Series:
    """``s.isin(values)`` through pyarrow: pandas converts every value of a big set one by one.

    >>> isin(pd.Series(["a", None, "c"], dtype="str"), ["a", "b"]).tolist()
    [True, False, False]
    """
    value_set = _arrow(pd.Series(values, dtype=_STR_DTYPE).dropna().drop_duplicates())
    return pd.Series(_bools(pc.is_in(_arrow(s), value_set=value_set.combine_chunks())), index=s.index)


def _null(s: pd.Series) -> np.ndarray:
    return _bools(pc.is_null(_arrow(s)))


def parse_dates(s: pd.Series) -> pd.Series:
    """Raw text -> datetime64[s]; ``YYYY-MM-DD`` or ``DD-MM-YYYY``, anything else NaT.

    Strict: the text must print back identically, so ``2024-02-30`` and ``2024-1-5`` are NaT.

    >>> parse_dates(pd.Series(["2024-01-05", "05-01-2024", "2024/01/05"], dtype="str")).dt.day.tolist()
    [5.0, 5.0, nan]
    """
    if len(s) == 0:
        return pd.Series([], index=s.index, dtype="datetime64[s]")
    a = _arrow(s)
    out = None
    for fmt in ("%Y-%m-%d", "%d-%m-%Y"):
        ts = pc.strptime(a, format=fmt, unit="s", error_is_null=True)
        exact = pc.equal(pc.strftime(ts, format=fmt), a)  # rejects overflowed days, unpadded parts
        ts = pc.if_else(pc.fill_null(exact, False), ts, pa_arrow.scalar(None, ts.type))
        out = ts if out is None else pc.coalesce(out, ts)
    values = out.to_numpy(zero_copy_only=False).astype("datetime64[s]")
    return pd.Series(values, index=s.index)


def parse_numbers(s: pd.Series) -> pd.Series:
    """Raw text -> float; a decimal comma or point. Anything else NaN.

    >>> parse_numbers(pd.Series(["7,4", "7.4", "+7", "ja"], dtype="str")).tolist()
    [7.4, 7.4, 7.0, nan]
    """
    if len(s) == 0:
        return pd.Series([], index=s.index, dtype="float64")
    a = pc.replace_substring_regex(_arrow(s), r"^\+", "")
    ok = pc.match_substring_regex(a, _NUM)
    a = pc.if_else(pc.fill_null(ok, False), pc.replace_substring(a, ",", "."), pa_arrow.scalar(None, a.type))
    values = pc.cast(a, pa_arrow.float64()).to_numpy(zero_copy_only=False)
    return pd.Series(np.asarray(values, dtype="float64"), index=s.index)


def parse_ints(s: pd.Series) -> pd.Series:
    """Raw text -> Int64 (whole numbers up to 9 digits); anything else <NA>."""
    if len(s) == 0:
        return pd.Series([], index=s.index, dtype="Int64")
    a = pc.replace_substring_regex(_arrow(s), r"^\+", "")
    ok = pc.match_substring_regex(a, _INT)
    a = pc.if_else(pc.fill_null(ok, False), a, pa_arrow.scalar(None, a.type))
    return pd.Series(pd.Int64Dtype().__from_arrow__(pc.cast(a, pa_arrow.int64())), index=s.index)


def _to_date(value) -> pd.Timestamp:
    """One extraction date from a register row (Timestamp, date or raw text)."""
    if isinstance(value, (pd.Timestamp, date)):
        return pd.Timestamp(value).normalize()
    parsed = parse_dates(pd.Series([str(value).strip()], dtype="str")).iloc[0]
    if pd.isna(parsed):
        raise ValueError(f"extraction_date {value!r} is not {DATE_EXPECTED}")
    return pd.Timestamp(parsed)


# ---------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------


class _Typed:
    """Typed columns of one raw frame, parsed once and shared by checks and typing."""

    def __init__(self, raw: pd.DataFrame, table: TableSpec):
        self.raw = raw
        self.table = table
        self._cache: dict[str, pd.Series] = {}

    def get(self, name: str) -> pd.Series:
        if name not in self._cache:
            col = self.table.column(name)
            s = self.raw[name]
            if col.type == "date":
                v = parse_dates(s)
            elif col.type == "int":
                v = parse_ints(s)
            elif col.type == "num":
                v = parse_numbers(s)
            elif col.upper and len(s):
                v = _str_series(pc.utf8_upper(_arrow(s)), s.index)
            else:
                v = s
            self._cache[name] = v
        return self._cache[name]


@dataclass(frozen=True)
class _CheckSpec:
    fn: Callable[[pd.Series], pd.Series]
    expected: str
    kind: str = "format"


def _passes(s: pd.Series, ok: np.ndarray) -> pd.Series:
    """A check result: ``ok`` where there is a value; a missing value passes (nullable decides)."""
    return pd.Series(ok | _null(s), index=s.index)


_VALIDATING = threading.local()  # the _Typed of the file being validated, shared by its checks


def _column_checks(col: ColumnSpec, table: str, extraction_date: pd.Timestamp | None) -> list[_CheckSpec]:
    """The per-column checks of the contract, each with the text a user sees."""

    def values(parse, s: pd.Series) -> np.ndarray:
        typed = getattr(_VALIDATING, "typed", None)
        if typed is not None and typed.table.name == table and len(typed.raw) == len(s):
            return typed.get(col.name).to_numpy()
        return parse(s).to_numpy()  # used on its own: parse here

    checks: list[_CheckSpec] = []
    if col.type == "date":
        checks.append(_CheckSpec(lambda s: _passes(s, ~np.isnat(values(parse_dates, s))), DATE_EXPECTED))
        lo = np.datetime64(EARLIEST_DATE.date(), "s")
        if extraction_date is not None:
            hi = np.datetime64(extraction_date.date(), "s")
            expected = f"a date from 1900-01-01 to the extraction date {extraction_date:%Y-%m-%d}"
        else:
            hi = np.datetime64("2262-01-01", "s")
            expected = "a date from 1900-01-01 on"

        def _date_in_range(s, lo=lo, hi=hi):
            d = values(parse_dates, s)
            return _passes(s, np.isnat(d) | ((d >= lo) & (d <= hi)))

        checks.append(_CheckSpec(_date_in_range, expected, "range"))
    elif col.type == "int":
        def _whole(s):
            return _passes(s, ~pd.isna(values(parse_ints, s)))

        checks.append(_CheckSpec(_whole, INT_EXPECTED))
        if col.name == "birth_year":
            hi = extraction_date.year if extraction_date is not None else date.today().year
            what = "the extraction year" if extraction_date is not None else "this year"

            def _year_in_range(s, hi=hi):
                y = np.asarray(pd.array(values(parse_ints, s), dtype="Int64").to_numpy(dtype="float64", na_value=np.nan))
                return _passes(s, np.isnan(y) | ((y >= EARLIEST_BIRTH_YEAR) & (y <= hi)))

            checks.append(_CheckSpec(_year_in_range, f"a year from {EARLIEST_BIRTH_YEAR} to {hi} ({what})", "range"))
    elif col.type == "num":
        checks.append(_CheckSpec(lambda s: _passes(s, ~np.isnan(values(parse_numbers, s))), NUM_EXPECTED))
    elif col.type == "code":
        allowed = pa_arrow.array(list(col.codes), type=pa_arrow.large_string())
        checks.append(_CheckSpec(lambda s: _passes(s, _bools(pc.is_in(_arrow(s), value_set=allowed))),
                                 "one of " + ", ".join(col.codes)))
    if col.pattern:
        pattern = col.pattern
        checks.append(_CheckSpec(lambda s: _passes(s, _fullmatch(s, pattern)), col.pattern_expected or f"text matching {pattern}"))
    if col.unique:
        checks.append(_CheckSpec(lambda s: _passes(s, ~s.duplicated(keep="first").to_numpy()), "", "unique"))
    return checks


def schema_for(table: str, extraction_date=None) -> tuple[pa.DataFrameSchema, dict[tuple[str, int], _CheckSpec]]:
    """The pandera schema of one contract table on raw text, and what each check expects.

    Columns hold raw strings (missing = NA); ``extraction_date`` bounds dates and birth_year.

    >>> schema, _ = schema_for("patients", "2025-07-01")
    >>> sorted(schema.columns)[:2]
    ['birth_year', 'deceased_on']
    """
    limit = _to_date(extraction_date) if extraction_date is not None else None
    return _schema(table, limit)


@functools.lru_cache(maxsize=512)
def _schema(table: str, limit: pd.Timestamp | None):
    spec = TABLES[table]
    columns = {}
    expectations: dict[tuple[str, int], _CheckSpec] = {}
    for col in spec.columns:
        checks = _column_checks(col, table, limit)
        for i, c in enumerate(checks):
            expectations[(col.name, i)] = c
        columns[col.name] = pa.Column(
            None,  # everything is raw text here; typing happens after validation
            nullable=not col.required,
            required=col.required,
            checks=[pa.Check(c.fn, name=f"{col.name}_{i}", ignore_na=False) for i, c in enumerate(checks)],
        )
    return pa.DataFrameSchema(columns, strict=False, name=spec.name), expectations


# ---------------------------------------------------------------------------------------
# Reading one file
# ---------------------------------------------------------------------------------------


@dataclass
class _Raw:
    frame: pd.DataFrame | None  # raw text, index = spreadsheet line, "" -> NA
    problems: list[Problem]
    warnings: list[str]
    present: bool


def _find_file(folder: Path, name: str, rel_folder: str) -> tuple[Path | None, list[Problem]]:
    csv_path = folder / f"{name}.csv"
    pq_path = folder / f"{name}.parquet"
    if csv_path.is_file() and pq_path.is_file():
        return None, [Problem(f"{rel_folder}{name}.csv", None, None, None,
                              f"either {name}.csv or {name}.parquet, not both (remove one)")]
    if csv_path.is_file():
        return csv_path, []
    if pq_path.is_file():
        return pq_path, []
    return None, []


def _sniff(header: str) -> str:
    counts = {sep: header.count(sep) for sep in (";", "\t", ",")}
    best = max(counts, key=lambda k: counts[k])  # ties keep the order above: ; first
    return best if counts[best] > 0 else ";"


def _bad_field_counts(text: str, sep: str, rel: str) -> list[Problem]:
    """Only on the error path: every record whose number of fields differs from the header."""
    problems = []
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    width = None
    for record in reader:
        if width is None:
            width = len(record)
            continue
        if record and len(record) != width:
            problems.append(Problem(rel, reader.line_num, None, None,
                                    f"{width} fields like the header, found {len(record)} "
                                    f"(a stray separator, or a value with {_SEPARATOR_NAMES.get(sep, sep)} that needs quotes?)"))
    return problems or [Problem(rel, None, None, None, "a readable CSV file")]


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Strip every cell; an empty cell is missing; rows left without any value go (blank
    lines), the others keep their index (the spreadsheet line)."""
    cols = {}
    filled = None
    for name in df.columns:
        a = pc.utf8_trim_whitespace(_arrow(df[name]))
        a = pc.if_else(pc.equal(a, ""), pa_arrow.scalar(None, a.type), a)
        cols[name] = a
        valid = pc.is_valid(a)
        filled = valid if filled is None else pc.or_(filled, valid)
    if not cols:
        return df
    table = pa_arrow.table(cols)
    index = df.index
    if len(df) and not pc.all(filled).as_py():
        keep = _bools(filled)
        table, index = table.filter(pa_arrow.chunked_array([keep])), index[keep]
    out = table.to_pandas(types_mapper=lambda t: _STR_DTYPE if t in (pa_arrow.string(), pa_arrow.large_string()) else None)
    out.index = index
    return out


def _read_csv(path: Path, rel: str, required: bool) -> _Raw:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        return _Raw(None, [Problem(rel, line, None, None,
                                   "UTF-8 text (the file has another encoding, probably Windows-1252: export it as UTF-8)")], [], True)
    warnings: list[str] = []
    if not text.strip():
        if required:
            return _Raw(None, [Problem(rel, 1, None, None, "a header row with the column names")], [], True)
        warnings.append(f"{rel}: empty file, read as no rows")
        return _Raw(None, [], warnings, False)
    end = text.find("\n")
    header_line = (text if end < 0 else text[:end]).rstrip("\r")
    sep = _sniff(header_line)
    if sep != ";":
        warnings.append(f"{rel}: separated by {_SEPARATOR_NAMES[sep]} instead of ';'; read anyway")
    header = [h.strip() for h in next(csv.reader([header_line], delimiter=sep))]
    problems = []
    seen = set()
    for h in header:
        if h in seen and h:
            problems.append(Problem(rel, 1, h, h, "each column name once in the header"))
        seen.add(h)
    try:
        df = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False,
            skip_blank_lines=False, engine="c", quotechar='"',
        )
    except pd.errors.ParserError:
        return _Raw(None, problems + _bad_field_counts(text, sep, rel), warnings, True)
    df.columns = [str(c).strip() for c in df.columns]
    df.index = np.arange(2, len(df) + 2)
    df = _normalise(df)  # blank lines keep their line numbers, then go
    return _Raw(df, problems, warnings, True)


def _read_parquet(path: Path, rel: str) -> _Raw:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a delivery problem
        return _Raw(None, [Problem(rel, None, None, None, f"a readable parquet file ({type(e).__name__})")], [], True)
    cols = {}
    for name, arr in zip(table.column_names, table.columns):
        t = arr.type
        if pa_arrow.types.is_timestamp(t):
            arr = pc.cast(arr, pa_arrow.date32())
        elif pa_arrow.types.is_dictionary(t):
            arr = pc.cast(arr, t.value_type)
        try:
            arr = pc.cast(arr, pa_arrow.string())
        except Exception:  # noqa: BLE001 - e.g. nested types: leave for the checks to refuse
            arr = pc.cast(pa_arrow.array([None] * len(arr)), pa_arrow.string())
        cols[str(name).strip()] = arr
    index = pd.Index(np.arange(2, table.num_rows + 2))
    df = pd.DataFrame({n: _str_series(a.cast(pa_arrow.large_string()), index) for n, a in cols.items()}, index=index)
    return _Raw(_normalise(df), [], [], True)


def _read(folder: Path, table: TableSpec, rel_folder: str) -> tuple[_Raw, str]:
    path, problems = _find_file(folder, table.name, rel_folder)
    rel = f"{rel_folder}{table.file}"
    if problems:
        return _Raw(None, problems, [], True), rel
    if path is None:
        if table.required:
            return _Raw(None, [Problem(rel, None, None, None,
                                       f"a file {table.file} (or {table.name}.parquet): it is required")], [], False), rel
        return _Raw(None, [], [], False), rel
    rel = f"{rel_folder}{path.name}"
    if path.suffix == ".parquet":
        return _read_parquet(path, rel), rel
    return _read_csv(path, rel, table.required), rel


def _problem_order(p: Problem):
    return (p.file, p.line if p.line is not None else -1)


def _for_reading(problems: list[Problem]) -> list[Problem]:
    """Per file: the first problem of each kind (column + expectation), then the rest, each
    in line order. A file with 40,000 bad dates and one bad code shows both in the first lines
    of the message; every problem is still listed."""
    ordered = sorted(problems, key=_problem_order)
    seen: set = set()
    first, rest = [], []
    for p in ordered:
        kind = (p.file, p.column, p.expected.split(" (")[0])
        (rest if kind in seen else first).append(p)
        seen.add(kind)
    return sorted(first, key=_problem_order) + rest


@dataclass
class _Checked:
    typed: pd.DataFrame  # typed columns, index = spreadsheet line
    raw: pd.DataFrame
    problems: list[Problem]
    warnings: list[str]
    rel: str
    usable: tuple[str, ...] = ()  # columns read from a readable file


def _empty_typed(table: TableSpec) -> pd.DataFrame:
    raw = pd.DataFrame({c: pd.Series([], dtype="str") for c in table.column_names})
    return _type_frame(raw, table, _Typed(raw, table))


def _type_frame(raw: pd.DataFrame, table: TableSpec, typed: _Typed) -> pd.DataFrame:
    out = {}
    for col in table.columns:
        out[col.name] = typed.get(col.name).array  # same index as raw: no alignment needed
    if table.name == "measurements":
        out["value_num"] = parse_numbers(raw["value"]).to_numpy()
    return pd.DataFrame(out, index=raw.index)


def _check_file(
    folder: Path, table: TableSpec, rel_folder: str, extraction_date=None
) -> _Checked:
    raw_result, rel = _read(folder, table, rel_folder)
    problems = list(raw_result.problems)
    warnings = list(raw_result.warnings)
    raw = raw_result.frame
    if raw is None:
        empty = _empty_typed(table)
        return _Checked(empty, pd.DataFrame(columns=table.column_names, dtype="str"), problems, warnings, rel)

    extra = [c for c in raw.columns if c not in table.column_names]
    if extra:
        warnings.append(f"{rel}: extra column(s) ignored: {', '.join(map(str, extra))}")
    missing = [c for c in table.column_names if c not in raw.columns]
    present = [c for c in table.column_names if c in raw.columns]
    if list(raw.columns) != present:
        raw = raw[present]

    typed = _Typed(raw, table)
    schema, expectations = schema_for(table.name, extraction_date)
    _VALIDATING.typed = typed
    try:
        schema.validate(raw, lazy=True, inplace=True)
    except SchemaErrors as err:
        problems += _problems_from(err.failure_cases, raw, rel, expectations, list(raw_result.frame.columns))
    finally:
        _VALIDATING.typed = None

    # Missing optional columns: no values. Missing required ones were reported above.
    if missing:
        raw = raw.copy()
        for name in missing:
            raw[name] = pd.Series(np.nan, index=raw.index, dtype="str")
        raw = raw[table.column_names]
    typed.raw = raw
    return _Checked(_type_frame(raw, table, typed), raw, problems, warnings, rel, tuple(present))


def _problems_from(fc: pd.DataFrame, raw: pd.DataFrame, rel: str,
                   expectations: dict[tuple[str, int], _CheckSpec], header: list[str]) -> list[Problem]:
    problems = []
    firsts: dict[str, pd.Series] = {}
    for row in fc.itertuples(index=False):
        check = str(row.check)
        column = row.column
        if check == "column_in_dataframe":
            name = str(row.failure_case)
            near = [h for h in header if str(h).lower() == name.lower()]
            hint = f" (found {near[0]!r}: column names are case-sensitive)" if near else ""
            problems.append(Problem(rel, 1, name, None, f"a column named {name!r} in the header: it is required{hint}"))
            continue
        line = None if row.index is None or pd.isna(row.index) else int(row.index)
        if check == "not_nullable":
            problems.append(Problem(rel, line, column, "", f"a value: {column} is required"))
            continue
        number = None if row.check_number is None or pd.isna(row.check_number) else int(row.check_number)
        spec = expectations.get((column, number)) if number is not None else None
        value = row.failure_case
        if spec is None:
            problems.append(Problem(rel, line, column, value, check))
            continue
        if spec.kind == "unique":
            if column not in firsts:
                s = raw[column].dropna()
                firsts[column] = pd.Series(s.index, index=s.values)[~s.duplicated(keep="first").values]
            first = firsts[column].get(value)
            where = f" (already on line {int(first)})" if first is not None else ""
            problems.append(Problem(rel, line, column, value, f"a {column} that occurs once in the file{where}"))
            continue
        problems.append(Problem(rel, line, column, value, spec.expected))
    return problems


def _periods_and_refs(checked: _Checked, table: TableSpec, patient_ids: pd.Series | None) -> list[Problem]:
    """Rules across tables: ends not before starts, patient_id known in patients.csv."""
    problems = []
    typed, raw, rel = checked.typed, checked.raw, checked.rel
    if not len(raw):
        return problems
    for start, end in table.periods:
        bad = typed[end].to_numpy() < typed[start].to_numpy()  # NaT compares False
        if bad.any():
            for line, value, start_value in zip(typed.index[bad], raw[end][bad], raw[start][bad]):
                problems.append(Problem(rel, int(line), end, value, f"a date not before {start} ({start_value})"))
    if patient_ids is not None and "patient_id" in table.column_names and table.name != "patients":
        ids = raw["patient_id"]
        bad = ~_null(ids) & ~isin(ids, patient_ids).to_numpy()
        if bad.any():
            for line, value in zip(ids.index[bad], ids[bad]):
                problems.append(Problem(rel, int(line), "patient_id", value, "a patient_id that is in patients.csv"))
    return problems


def _log(warnings: Iterable[str]) -> None:
    for w in warnings:
        log.warning(w)


def _fingerprints(raw: pd.DataFrame, table: TableSpec) -> dict[str, str]:
    """practice_agb -> the raw text of its rows, in file order (for content hashes)."""
    if raw is None or len(raw) == 0 or "practice_agb" not in raw.columns:
        return {}
    cols = [c for c in table.column_names if c in raw.columns]
    text = raw[cols].fillna("").astype(str)
    lines = text[cols[0]]
    for c in cols[1:]:
        lines = lines + "\x1f" + text[c]
    out: dict[str, str] = {}
    for agb, group in lines.groupby(raw["practice_agb"].fillna(""), sort=False):
        out[str(agb)] = "\x1e".join([",".join(cols)] + group.tolist())
    return out


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


def read_practices(dataset: Path) -> PracticesResult:
    """Read and check the practice register; match it against the folders under extracts/.

    Raises ContractError when the register itself can't be used (missing, unreadable,
    required columns missing). Problems of single rows refuse only that practice.

    >>> reg = read_practices(Path("data/demo"))   # doctest: +SKIP
    >>> reg.practices.practice_agb.tolist(), sorted(reg.problems)  # doctest: +SKIP
    """
    dataset = Path(dataset)
    table = TABLES["practices"]
    if not dataset.is_dir():
        raise ContractError([Problem(str(dataset), None, None, None, "a dataset folder")], subject=f"dataset {dataset}")
    checked = _check_file(dataset, table, "")
    _log(checked.warnings)
    fatal = [p for p in checked.problems if p.line in (None, 1)]
    if checked.raw is None or fatal or len(checked.raw.columns) == 0:
        raise ContractError(fatal or checked.problems, subject=f"dataset {dataset}")

    raw, typed = checked.raw, checked.typed
    problems: dict[str, list[Problem]] = {}
    file_problems: list[Problem] = []
    agb_at_line = raw["practice_agb"]
    for p in checked.problems:
        agb = agb_at_line.get(p.line) if p.line is not None else None
        if agb is None or pd.isna(agb):
            file_problems.append(p)
        else:
            problems.setdefault(str(agb), []).append(p)

    extracts = dataset / "extracts"
    folders = sorted(
        p.name for p in extracts.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))
    ) if extracts.is_dir() else []
    listed = agb_at_line.dropna()
    for line, agb in listed.items():
        if agb not in folders:
            problems.setdefault(str(agb), []).append(Problem(
                checked.rel, int(line), "practice_agb", agb,
                f"a folder extracts/{agb}/ with the practice's extraction (or remove the row)"))
    for folder in folders:
        if folder not in set(listed):
            problems.setdefault(folder, []).append(Problem(
                f"extracts/{folder}/", None, None, folder,
                f"a row for practice {folder} in {checked.rel} (every folder under extracts/ needs one)"))

    ok = listed.index[~listed.isin(list(problems))]
    practices = typed.loc[ok].reset_index(drop=True)
    for agb in problems:
        problems[agb] = _for_reading(problems[agb])
    known = sorted(set(map(str, listed)) | set(folders))
    return PracticesResult(
        practices=practices,
        problems=problems,
        file_problems=_for_reading(file_problems),
        warnings=checked.warnings,
        known=known,
        fingerprints=_fingerprints(raw, table),
        source=checked.rel,
    )


def load_practice(dataset: Path, practice) -> PracticeData:
    """Check every file of one practice's extraction and return its typed tables.

    ``practice`` is its register row (a row of ``read_practices(...).practices`` or a dict
    with at least ``practice_agb`` and ``extraction_date``). Raises ContractError
    (subject ``practice <agb>``) listing every problem of every file.

    >>> data = load_practice(Path("data/demo"), {"practice_agb": "01234567", "extraction_date": "2025-07-01"})  # doctest: +SKIP
    >>> data.patients.dtypes  # doctest: +SKIP
    """
    dataset = Path(dataset)
    row = dict(practice)
    agb = str(row["practice_agb"])
    try:
        extraction_date = _to_date(row["extraction_date"])
    except (KeyError, ValueError) as e:
        raise ContractError([Problem("practices.csv", None, "extraction_date", row.get("extraction_date"), DATE_EXPECTED)],
                            subject=f"practice {agb}") from e
    folder = dataset / "extracts" / agb
    rel_folder = f"extracts/{agb}/"
    problems: list[Problem] = []
    warnings: list[str] = []

    if folder.is_dir():
        allowed = {f"{t}.{ext}" for t in PRACTICE_TABLES for ext in ("csv", "parquet")}
        unknown = sorted(p.name for p in folder.iterdir() if p.name not in allowed and not p.name.startswith("."))
        if unknown:
            warnings.append(f"{rel_folder}: file(s) not in the contract ignored: {', '.join(unknown)}")

    frames: dict[str, pd.DataFrame] = {}
    patient_ids = None
    for name in PRACTICE_TABLES:
        table = TABLES[name]
        checked = _check_file(folder, table, rel_folder, extraction_date)
        file_problems = list(checked.problems)
        if name == "patients" and "patient_id" in checked.usable:
            # Without a usable patients.csv every reference would fail: that is one problem, not thousands.
            patient_ids = checked.raw["patient_id"].dropna()
        file_problems += _periods_and_refs(checked, table, patient_ids)
        problems += _for_reading(file_problems)
        warnings += checked.warnings
        df = checked.typed.reset_index(drop=True)
        df.insert(0, "practice_agb", pd.Series(agb, index=df.index, dtype="str"))
        frames[name] = df

    _log(warnings)
    if problems:
        raise ContractError(problems, subject=f"practice {agb}")
    return PracticeData(practice_agb=agb, warnings=warnings, **frames)


def read_payments(dataset: Path, registered: Iterable[str]) -> PaymentsResult:
    """Check payments.csv; problems grouped by the practice whose row has them.

    Rows whose practice_agb is not in ``registered`` (the AGB codes of practices.csv) are
    problems tied to no practice. A missing payments.csv means no payments.
    """
    dataset = Path(dataset)
    table = TABLES["payments"]
    registered = set(map(str, registered))
    checked = _check_file(dataset, table, "")
    _log(checked.warnings)
    raw, typed = checked.raw, checked.typed
    problems: dict[str, list[Problem]] = {}
    file_problems: list[Problem] = []
    agbs = raw["practice_agb"] if "practice_agb" in raw.columns else pd.Series([], dtype="str")
    unknown = agbs.notna() & ~isin(agbs, list(registered))
    for line, agb in zip(agbs.index[unknown], agbs[unknown]):
        file_problems.append(Problem(checked.rel, int(line), "practice_agb", agb, "a practice_agb listed in practices.csv"))
    for p in checked.problems:
        agb = agbs.get(p.line) if p.line is not None else None
        if agb is None or pd.isna(agb) or agb not in registered:
            file_problems.append(p)
        else:
            problems.setdefault(str(agb), []).append(p)
    df = typed[agbs.isin(list(registered))].reset_index(drop=True) if len(typed) else typed.reset_index(drop=True)
    for agb in problems:
        problems[agb] = _for_reading(problems[agb])
    return PaymentsResult(
        payments=df,
        problems=problems,
        file_problems=_for_reading(file_problems),
        warnings=checked.warnings,
        fingerprints=_fingerprints(raw, table),
    )


def load_payments(dataset: Path, valid_practices: set[str]) -> tuple[pd.DataFrame, list[Problem], list[str]]:
    """Typed payments of the accepted practices, every problem in payments.csv, warnings.

    A row whose practice_agb is not in practices.csv is a problem. Rows of practices not in
    ``valid_practices`` (refused ones) are left out. Rows with problems are left out too.

    >>> payments, problems, warnings = load_payments(Path("data/demo"), {"01234567"})  # doctest: +SKIP
    """
    dataset = Path(dataset)
    registered = _registered_agbs(dataset)
    result = read_payments(dataset, registered)
    df = result.payments
    valid = set(map(str, valid_practices)) - set(result.problems)
    df = df[df["practice_agb"].isin(list(valid))].reset_index(drop=True)
    return df, result.all_problems(), result.warnings


def _registered_agbs(dataset: Path) -> set[str]:
    """AGB codes in practices.csv as written (also rows with problems)."""
    table = TABLES["practices"]
    raw_result, _ = _read(dataset, table, "")
    if raw_result.frame is None or "practice_agb" not in raw_result.frame.columns:
        return set()
    return set(raw_result.frame["practice_agb"].dropna().astype(str))


def practice_files(dataset: Path, agb: str) -> list[Path]:
    """The contract files present in one practice's folder, sorted (for content hashes)."""
    folder = Path(dataset) / "extracts" / str(agb)
    if not folder.is_dir():
        return []
    names = {f"{t}.{ext}" for t in PRACTICE_TABLES for ext in ("csv", "parquet")}
    return sorted(p for p in folder.iterdir() if p.name in names and p.is_file())
