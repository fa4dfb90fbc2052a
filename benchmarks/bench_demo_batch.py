"""The whole demo batch against the plain loop over the same runs, side by side.

Every report kind of ``parameters/demo.yaml`` (or those of ``--reports``: per practice, per hagro,
per region and the care group's), in the formats of ``demo.yaml`` (HTML, PDF and, for the kinds
that have them, slides), for the quarters of ``demo.yaml`` (``latest 2``: the two latest complete
quarters) of a generated demo care group, each quarter's cube prepared once for both sides:

* the plain loop: per run ``papermill`` (``-r`` for every parameter), ``jupyter nbconvert
  --to html --no-input``, Debian's ``chromium --headless --print-to-pdf``, and for a deck
  ``jupyter nbconvert --to slides --no-input`` (what a user without Spiegel writes), serially;
* ``spiegel build`` of the same runs.

Prints seconds, runs and the ratio; nothing is asserted. Not part of the test suite.

    .venv/bin/python benchmarks/bench_demo_batch.py [--practices 12] [--keep] [--reports a,b] [--quarters 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_build import BIN, spiegel_build_cmd, timed, write_batch  # noqa: E402


def plain_runs(runs: list[tuple[Path, dict, tuple]], out: Path, chromium: str) -> float:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i, (notebook, params, formats) in enumerate(runs):
        target = out / f"{i:03d}-{notebook.stem}.ipynb"
        cmd = [str(BIN / "papermill"), str(notebook), str(target), "--no-progress-bar"]
        for k, v in params.items():
            cmd += ["-r", k, str(v)]
        timed(cmd)
        timed([str(BIN / "jupyter"), "nbconvert", "--to", "html", "--no-input", str(target)])
        html = target.with_suffix(".html")
        if "pdf" in formats:
            timed([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                   f"--print-to-pdf={target.with_suffix('.pdf')}", html.as_uri()])
        if "slides" in formats:
            timed([str(BIN / "jupyter"), "nbconvert", "--to", "slides", "--no-input", str(target)])
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--practices", type=int, default=12)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--reports", default="",
                    help="comma-separated report ids (default: every report of parameters/demo.yaml)")
    ap.add_argument("--quarters", type=int, default=None,
                    help="the N latest complete quarters (default: as parameters/demo.yaml)")
    args = ap.parse_args(argv)

    import pandas as pd

    from helpers.cube import prepare_quarter, read_slice
    from helpers.demo import generate
    from helpers.quarter import Quarter
    from helpers.render.pdf import find_chromium
    from helpers.reports import REPORTS
    from helpers.warehouse import Warehouse

    root = Path(tempfile.mkdtemp(prefix="spiegel-bench-demo-"))
    try:
        dataset, warehouse = root / "demo", root / "warehouse.duckdb"
        generate(dataset, practices=args.practices)
        Warehouse(warehouse).ingest(dataset)
        from helpers.batch import load_batch_file, parse_batch
        from helpers.config import PARAMETERS_DIR
        demo, _problems = parse_batch(load_batch_file(PARAMETERS_DIR / "demo.yaml"), "demo.yaml")
        latest = pd.to_datetime(Warehouse(warehouse).practices()["extraction_date"]).max().date()
        q = Quarter.latest_complete(latest)
        quarters = []
        for _ in range(args.quarters or demo.latest):
            quarters.insert(0, str(q))
            q = q.previous()
        formats = list(demo.formats)
        reports = [r.strip() for r in args.reports.split(",") if r.strip()] or list(demo.reports)
        t0 = time.perf_counter()
        cubes = {quarter: prepare_quarter(warehouse, quarter) for quarter in quarters}
        prepare_s = time.perf_counter() - t0
        runs = []
        for quarter, cube in cubes.items():
            practices = read_slice(cube, "practices")
            keys_of = {"practice": list(practices["practice_agb"]), "zorggroep": [None]}
            for scope in ("hagro", "region"):
                keys_of[scope] = sorted(h for h in practices[scope].dropna().unique() if str(h).strip())
            common = dict(quarter=quarter, warehouse=str(warehouse), cube_path=str(cube))
            for rid in reports:
                spec = REPORTS[rid]
                key = spec.key_param()
                fixed = {p.name: p.default for p in spec.params if p.type == "str" and p.default not in (None, "")}
                kinds = tuple(f for f in formats if f in spec.formats)
                runs += [(Path(spec.notebook), {**({key.name: k} if key else {}), **fixed, **common}, kinds)
                         for k in keys_of[spec.scope]]
        decks = sum("slides" in r[2] for r in runs)
        print(f"{len(runs)} runs ({', '.join(reports)}), quarters {', '.join(quarters)}, formats "
              f"{', '.join(formats)} ({decks} decks); cubes prepared in {prepare_s:.1f}s", flush=True)
        print("plain loop (papermill + nbconvert + chromium per run) ...", flush=True)
        plain = plain_runs(runs, root / "plain", find_chromium())
        batch = write_batch(root / "batch.yaml", warehouse=warehouse, quarters=quarters, practices="all",
                            reports=reports, formats=formats, outputs=root / "out")
        print("spiegel build ...", flush=True)
        built, out = timed([*spiegel_build_cmd(), str(batch)])
        rebuilt, _ = timed([*spiegel_build_cmd(), str(batch)])   # nothing changed: every run skipped
        execute, slides = {}, []
        for quarter in quarters:
            manifest = json.loads((root / "out" / quarter / "manifest.json").read_text())
            for r in manifest["runs"].values():
                execute.setdefault(r.get("report"), []).append(r["timings_s"].get("execute", 0))
                if "slides" in r["timings_s"]:
                    slides.append(r["timings_s"]["slides"])
        print()
        print(f"demo batch, {len(runs)} runs over {len(quarters)} quarters, {' + '.join(formats)} "
              f"(one run, side by side; repeat: {Path(sys.argv[0]).name})")
        print(f"{'plain loop (papermill + nbconvert + chromium)':<50} {plain:>8.1f} s")
        print(f"{'spiegel build':<50} {built:>8.1f} s   {plain / built:.1f}x faster")
        print(f"{'spiegel build again, nothing changed':<50} {rebuilt:>8.1f} s")
        for rid, values in execute.items():
            print(f"  execute per run, {rid}: mean {sum(values) / len(values):.2f} s, max {max(values):.2f} s")
        if slides:
            print(f"  slides per deck ({len(slides)}): mean {sum(slides) / len(slides):.2f} s, max {max(slides):.2f} s")
        return 0
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
