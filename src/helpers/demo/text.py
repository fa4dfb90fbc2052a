"""Writing the demo dataset's CSV files: vectorised text (dates ISO or Dutch, numbers with a
decimal comma) and the ``;``-separated writer of the contract's dialect."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .arrays import _day
from .constants import INF


class _Text:
    """Vectorised text for the CSV writer: dates (ISO or Dutch), numbers with a decimal comma."""

    def __init__(self):
        self.lo = _day(date(1900, 1, 1))
        hi = _day(date(2100, 12, 31))
        iso = np.datetime_as_string(np.arange(self.lo, hi + 1).astype("datetime64[D]")).tolist()
        self.iso = pa.array(iso, pa.string())
        self.dmy = pa.array([f"{s[8:10]}-{s[5:7]}-{s[0:4]}" for s in iso], pa.string())
        self.hi = hi

    def dates(self, d: np.ndarray, dmy: bool = False) -> pa.Array:
        d = np.asarray(d, dtype=np.int64)
        missing = d >= INF
        if ((d < self.lo) | ((d > self.hi) & ~missing)).any():
            raise AssertionError("demo generator made a date outside 1900..2100")
        idx = pa.array(np.where(missing, 0, d - self.lo), mask=missing)
        return (self.dmy if dmy else self.iso).take(idx)

    @staticmethod
    def ints(v: np.ndarray) -> pa.Array:
        return pa.array(np.asarray(v, dtype=np.int64)).cast(pa.string())

    @staticmethod
    def decimal(v: np.ndarray, decimals: int) -> pa.Array:
        """Non-negative numbers with a decimal comma (``7,4``); 0 decimals = whole numbers."""
        scaled = np.rint(np.asarray(v, dtype=float) * 10**decimals).astype(np.int64)
        if (scaled < 0).any():
            raise AssertionError("demo generator made a negative number")
        if decimals == 0:
            return _Text.ints(scaled)
        whole, frac = np.divmod(scaled, 10**decimals)
        fracs = pa.array([str(i).zfill(decimals) for i in range(10**decimals)], pa.string())
        return pc.binary_join_element_wise(_Text.ints(whole), fracs.take(pa.array(frac)), ",")


def _write_csv(path: Path, columns: dict[str, pa.Array], bom: bool = False) -> int:
    """Write ``;``-separated UTF-8 (header unquoted, no quoting: values never hold ; or ")."""
    table = pa.table(columns)
    with open(path, "wb") as fh:
        if bom:
            fh.write(b"\xef\xbb\xbf")
        fh.write((";".join(columns) + "\n").encode("utf-8"))
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, delimiter=";", quoting_style="none"))
    return table.num_rows


def _decimals(concept: str) -> int:
    return {"hba1c": 0, "sbp": 0, "dbp": 0, "egfr": 0, "height": 0, "exacerbations": 0, "mrc": 0,
            "fev1_pct": 0, "act": 0}.get(concept, 1)
