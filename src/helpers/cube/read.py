"""Reading the quarter cube: one table, filtered at read time to the practices a report may see.

>>> read_slice("data/cube/2026Q3", "findings", practice_agb="01000001")   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ..errors import ParameterError

CUBE_TABLES = ("practices", "summary", "findings", "indicators", "dq_recorded", "dq_issues",
               "dq_issue_counts", "pyramid")


def read_slice(cube: Path, table: str, practice_agb: str | None = None,
               practices: list[str] | None = None) -> pd.DataFrame:
    """One cube table, filtered at read time to one practice (or a list) so a notebook never
    holds another practice's patient rows."""
    if table not in CUBE_TABLES:
        raise ParameterError(f"cube table {table!r} unknown; choose from {', '.join(CUBE_TABLES)}")
    path = Path(cube) / f"{table}.parquet"
    filters = None
    if practice_agb is not None:
        filters = [("practice_agb", "=", str(practice_agb))]
    elif practices is not None:
        filters = [("practice_agb", "in", [str(p) for p in practices])]
    return pq.read_table(path, filters=filters).to_pandas()
