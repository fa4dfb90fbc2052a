"""What the praktijkspiegel adds to the quarter's prepare pass, and how it grows.

For N practices (default 12 and 100): generate a demo care group, load it, then time the
core cube (``compute_cube``: findings, indicators, data quality) and the mirror
(``helpers.mirror.compute_mirror``: every practice x measure x rolling year, set-based) on
the same read-only connection, wall-clock and CPU seconds side by side. Nothing is asserted.

    .venv/bin/python benchmarks/bench_mirror.py [--practices 12 100]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from helpers.cube.compute import compute_cube
from helpers.demo import generate
from helpers.mirror import compute_mirror
from helpers.quarter import Quarter
from helpers.warehouse import Warehouse


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--practices", type=int, nargs="+", default=[12, 100])
    args = ap.parse_args(argv)
    print(f"{'practices':>9} {'core cube s':>12} {'mirror s':>9} {'mirror cpu s':>13} {'mirror rows':>12}")
    for n in args.practices:
        with tempfile.TemporaryDirectory(prefix="spiegel-bench-mirror-") as tmp:
            dataset, wh = Path(tmp) / "demo", Path(tmp) / "w.duckdb"
            generate(dataset, practices=n)
            Warehouse(wh).ingest(dataset)
            latest = pd.to_datetime(Warehouse(wh).practices()["extraction_date"]).max().date()
            quarter = Quarter.latest_complete(latest)
            with Warehouse(wh).connect(read_only=True) as con:
                _, core_s, _ = timed(lambda: compute_cube(con, quarter))
                out, mirror_s, mirror_cpu = timed(lambda: compute_mirror(con, quarter))
            print(f"{n:>9} {core_s:>12.2f} {mirror_s:>9.2f} {mirror_cpu:>13.2f} {len(out['mirror']):>12}", flush=True)
    print(f"({os.cpu_count()} cores; DuckDB uses all of them, so CPU seconds can exceed wall seconds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
