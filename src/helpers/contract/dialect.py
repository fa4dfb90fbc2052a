"""Reading one contract file as raw text: CSV dialect (sniffing, BOM, encoding), parquet, and
vectorised parsing of that text (dates, decimal comma, whole numbers).

Every cell stays text until the checks have run (so a problem shows the value as delivered);
the index of a frame is the spreadsheet line of its row.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa_arrow
import pyarrow.compute as pc

from ..errors import Problem
from .tables import DATE_EXPECTED, TableSpec

_SEPARATOR_NAMES = {";": "';'", ",": "','", "\t": "tabs"}

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
