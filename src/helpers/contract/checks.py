"""Checking one contract file: the pandera schema per column (every problem at once,
``lazy=True``), typing, and the rules across tables (periods, known patient_id, profiles).

Problems are :class:`~helpers.errors.Problem` entries: file, spreadsheet line, column, value
found, what was expected.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc
from pandera.errors import SchemaErrors

from ..errors import Problem
from .dialect import (_arrow, _bools, _fullmatch, _null, _read, _str_series, _to_date, isin, parse_dates,
                      parse_ints, parse_numbers)
from .tables import (DATE_EXPECTED, EARLIEST_BIRTH_YEAR, EARLIEST_DATE, INT_EXPECTED, NUM_EXPECTED, PROFILE_PATTERN,
                     ColumnSpec,
                     TableSpec, TABLES)

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
# veelgebruikers_plan: profiles from the project's parameters
# ---------------------------------------------------------------------------------------


def profile_ids(path: Path) -> tuple[str, ...] | None:
    """The profile ids of ``parameters/veelgebruikers.yaml``, or None when the file does not
    exist (then any code-like profile is accepted: the column's pattern in :mod:`.tables`).

    Both shapes are read: ``profiles:`` as a list of mappings with an ``id`` (as the project's
    file has it, ``helpers.rules.veelgebruikers``), or as a mapping keyed by id (a plain list
    of ids works too).

    >>> profile_ids(Path("/nonexistent/veelgebruikers.yaml")) is None
    True
    """
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return _profile_ids(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _profile_ids(path: str, _mtime_ns: int, _size: int) -> tuple[str, ...]:
    import yaml

    from ..errors import ConfigError

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the frequent-attender profiles ({e})") from None
    profiles = data.get("profiles") if isinstance(data, dict) else None
    if isinstance(profiles, dict):
        ids = list(profiles)
    elif isinstance(profiles, list):
        ids = [p.get("id") if isinstance(p, dict) else p for p in profiles]
    else:
        raise ConfigError(f"{path}: expected a `profiles:` list (each with an id) or mapping keyed by id")
    bad = [i for i in ids if not isinstance(i, str) or not re.fullmatch(PROFILE_PATTERN, i)]
    if not ids or bad:
        raise ConfigError(f"{path}: every profile needs an id of 1 to 40 of a-z, 0-9, _ or - "
                          f"(found {bad[0]!r})" if bad else f"{path}: no profiles listed")
    return tuple(ids)


def profile_problems(checked: _Checked, profiles: tuple[str, ...] | None) -> list[Problem]:
    """veelgebruikers_plan.csv: every ``profile`` is one of ``profiles`` (when known)."""
    raw = checked.raw
    if profiles is None or not len(raw) or "profile" not in raw.columns:
        return []
    s = raw["profile"]
    bad = ~_null(s) & ~isin(s, list(profiles)).to_numpy()
    if not bad.any():
        return []
    shown = ", ".join(profiles[:12]) + (" ..." if len(profiles) > 12 else "")
    return [Problem(checked.rel, int(line), "profile", value, f"one of the profiles in veelgebruikers.yaml: {shown}")
            for line, value in zip(s.index[bad], s[bad])]
