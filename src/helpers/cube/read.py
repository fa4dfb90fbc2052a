"""Reading the quarter cube: one table, filtered at read time to the practices a report may see.

>>> read_slice("data/cube/2026Q3", "findings", practice_agb="01000001")   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ..errors import ParameterError

CUBE_TABLES = ("practices", "summary", "findings", "findings_resolved", "findings_history", "indicators",
               "dq_recorded", "dq_issues", "dq_issue_counts", "pyramid")


def report_tables(cube: Path) -> list[str]:
    """The practice-level tables the registered reports' prepare steps added to this cube."""
    import json
    try:
        names = json.loads((Path(cube) / "cube.json").read_text()).get("report_tables", [])
    except (OSError, ValueError):
        return []
    return [n for n in names if isinstance(n, str) and n.isidentifier()]


def read_slice(cube: Path, table: str, practice_agb: str | None = None,
               practices: list[str] | None = None) -> pd.DataFrame:
    """One cube table, filtered at read time to one practice (or a list) so a notebook never
    holds another practice's patient rows. A report's own prepared tables (``report_tables``
    in ``cube.json``) are read the same way; the shared tables only through ``SharedCube``."""
    known = list(CUBE_TABLES) + report_tables(cube)
    if table not in known:
        raise ParameterError(f"cube table {table!r} unknown; choose from {', '.join(known)}")
    path = Path(cube) / f"{table}.parquet"
    if not path.is_file():
        raise ParameterError(f"quarter cube {cube} has no table {table!r} (prepared by an older version?): "
                             f"prepare the quarter again with `spiegel prepare <quarter> --force`")
    filters = None
    if practice_agb is not None:
        filters = [("practice_agb", "=", str(practice_agb))]
    elif practices is not None:
        filters = [("practice_agb", "in", [str(p) for p in practices])]
    return pq.read_table(path, filters=filters).to_pandas()


def practice_row(cube: Path, practice_agb: str) -> pd.Series:
    """The cube's ``practices`` row of one practice; a practice not in the cube is a
    ParameterError naming the ones that are."""
    practices = read_slice(cube, "practices")
    row = practices[practices["practice_agb"] == str(practice_agb)]
    if row.empty:
        raise ParameterError(f"practice {practice_agb} is not in the quarter cube {Path(cube).name} "
                             f"(known: {', '.join(practices['practice_agb'].head(20))})")
    return row.iloc[0]
