"""Are the cube's figures the same under two versions of the code? Computes every cube table of
the given quarters (default: the latest complete quarter of the warehouse and the one before) with
the ``helpers`` package of each src folder, each in its own process, and compares every table with
``pandas.testing.assert_frame_equal``.

    .venv/bin/python benchmarks/compare_cube.py /work/base/src src /tmp/x/warehouse.duckdb
    .venv/bin/python benchmarks/compare_cube.py OLD_SRC NEW_SRC WAREHOUSE --quarter 2026Q3 --quarter 2026Q2

Exit status 0 when every table of every quarter is equal, 1 otherwise (the differences printed).
``compute_cube`` is looked up in ``helpers.cube.compute`` and, for older trees, ``helpers.cube.prepare``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import pickle, sys
import duckdb
import helpers
from helpers.quarter import Quarter
try:
    from helpers.cube.compute import compute_cube
except ImportError:
    from helpers.cube.prepare import compute_cube
warehouse, out, *quarters = sys.argv[1:]
con = duckdb.connect(warehouse, read_only=True)
con.execute("SET enable_progress_bar = false")
if not quarters:
    latest = Quarter.latest_complete(con.execute("SELECT max(extraction_date) FROM practices").fetchone()[0])
    quarters = [str(latest), str(latest.previous())]
result = {}
for q in quarters:
    result[q], timings = compute_cube(con, Quarter.parse(q))
    print(f"  {helpers.__file__.rsplit('/helpers/', 1)[0]} {q} timings (s): {timings}", file=sys.stderr)
con.close()
with open(out, "wb") as fh:
    pickle.dump(result, fh)
"""


def cube_tables(src: Path, warehouse: Path, quarters: list[str], out: Path) -> dict:
    """Every cube table per quarter, computed by the ``helpers`` package under ``src``."""
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    subprocess.run([sys.executable, "-c", _CHILD, str(warehouse), str(out), *quarters], env=env, check=True)
    with open(out, "rb") as fh:
        return pickle.load(fh)


#: Columns renamed between code versions: old name -> new name. A table of either version is
#: compared under the new names (``indicators.chain`` became ``programme``).
RENAMED_COLUMNS = {"chain": "programme"}


def _new_names(df):
    """``df`` with the old column names of ``RENAMED_COLUMNS`` under their new names (in place
    in the column order), unless the new name is already a column.

    >>> import pandas as pd
    >>> list(_new_names(pd.DataFrame(columns=["indicator_id", "order", "chain", "title"])).columns)
    ['indicator_id', 'order', 'programme', 'title']
    """
    renames = {o: n for o, n in RENAMED_COLUMNS.items() if o in df.columns and n not in df.columns}
    return df.rename(columns=renames) if renames else df


def compare(old: dict, new: dict) -> list[str]:
    """One line per table: equal (with its shape) or the difference. Columns renamed since the
    old version (``RENAMED_COLUMNS``) are compared under their new names."""
    import pandas as pd
    lines = []
    for quarter in sorted(set(old) | set(new)):
        a, b = old.get(quarter, {}), new.get(quarter, {})
        for name in sorted(set(a) | set(b)):
            if name not in a or name not in b:
                lines.append(f"DIFF  {quarter} {name}: only in {'new' if name in b else 'old'}")
                continue
            try:
                pd.testing.assert_frame_equal(_new_names(a[name]), _new_names(b[name]), check_exact=True)
                lines.append(f"equal {quarter} {name}: {a[name].shape[0]} rows x {a[name].shape[1]} columns")
            except AssertionError as exc:
                lines.append(f"DIFF  {quarter} {name}: {exc}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old_src", type=Path, help="src folder of the old code (holds helpers/)")
    ap.add_argument("new_src", type=Path, help="src folder of the new code")
    ap.add_argument("warehouse", type=Path, help="DuckDB warehouse file (spiegel ingest)")
    ap.add_argument("--quarter", action="append", default=[], help="quarter (repeatable); default latest and previous")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="compare_cube-") as tmp:
        old = cube_tables(args.old_src, args.warehouse, args.quarter, Path(tmp) / "old.pkl")
        new = cube_tables(args.new_src, args.warehouse, args.quarter, Path(tmp) / "new.pkl")
    lines = compare(old, new)
    print("\n".join(lines))
    return 1 if any(line.startswith("DIFF") for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
