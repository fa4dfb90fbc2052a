"""How long computing every finding and indicator of a quarter takes, and how it grows.

For N practices (default 12, 25, 50, 100): generate a demo care group, load it, then time
``compute_cube`` once over all practices (set-based, what `spiegel prepare` does) against
the plain alternative: the same computation practice by practice (a loop over practices,
each on views filtered to that practice). Prints seconds, seconds per practice and the ratio.

    .venv/bin/python benchmarks/bench_prepare.py [--practices 12 25 50 100] [--loop-max 25]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from helpers.cube.prepare import compute_cube
from helpers.demo import generate
from helpers.rules.indicators import load_indicators
from helpers.rules.programmes import load_programmes
from helpers.quarter import Quarter
from helpers.warehouse import DATA_TABLES, Warehouse


def per_practice_loop(con, quarter, rules, indicators, practices: list[str]) -> float:
    start = time.perf_counter()
    db = con.execute("SELECT current_database()").fetchone()[0]
    for agb in practices:
        for t in DATA_TABLES:
            con.execute(f'CREATE OR REPLACE TEMP VIEW {t} AS SELECT * FROM "{db}".main.{t} '
                        f"WHERE practice_agb = '{agb}'")
        compute_cube(con, quarter, rules, indicators)
    for t in DATA_TABLES:
        con.execute(f"DROP VIEW IF EXISTS temp.{t}")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--practices", type=int, nargs="+", default=[12, 25, 50, 100])
    ap.add_argument("--loop-max", type=int, default=25, help="run the per-practice loop up to this size")
    args = ap.parse_args()
    rules = load_programmes()
    indicators = load_indicators(rules)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.practices:
            ds = Path(tmp) / f"demo{n}"
            t0 = time.perf_counter()
            summary = generate(ds, practices=n)
            t_gen = time.perf_counter() - t0
            wh = Warehouse(Path(tmp) / f"w{n}.duckdb")
            t0 = time.perf_counter()
            wh.ingest(ds)
            t_ingest = time.perf_counter() - t0
            latest = pd.to_datetime(wh.practices()["extraction_date"]).max().date()
            q = Quarter.latest_complete(latest)
            with wh.connect(read_only=True) as con:
                patients = con.execute("SELECT count(*) FROM patients").fetchone()[0]
                t0 = time.perf_counter()
                _, timings = compute_cube(con, q, rules, indicators)
                t_set = time.perf_counter() - t0
                t_loop = per_practice_loop(con, q, rules, indicators, list(wh.practices()["practice_agb"])) \
                    if n <= args.loop_max else float("nan")
            rows.append({"practices": n, "patients": patients, "generate_s": round(t_gen, 2),
                         "ingest_s": round(t_ingest, 2), "prepare_s": round(t_set, 2),
                         "prepare_s_per_practice": round(t_set / n, 3),
                         "per_practice_loop_s": round(t_loop, 2),
                         "loop_over_set_ratio": round(t_loop / t_set, 1) if t_loop == t_loop else None,
                         **{f"stage_{k}": v for k, v in timings.items()}})
            print(rows[-1], flush=True)
    print()
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
