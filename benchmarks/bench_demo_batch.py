"""The whole demo batch against the plain loop over the same runs, side by side.

Every report kind of ``parameters/demo.yaml`` (or those of ``--reports``: per practice, per hagro,
per region and the care group's), HTML and PDF, for the latest complete quarter of a generated
demo care group, the quarter cube prepared once for both sides:

* the plain loop: per run ``papermill`` (``-r`` for every parameter), ``jupyter nbconvert
  --to html --no-input``, and Debian's ``chromium --headless --print-to-pdf`` (what a user
  without Spiegel writes), serially;
* ``spiegel build`` of the same runs.

Prints seconds, runs and the ratio; nothing is asserted. Not part of the test suite.

    .venv/bin/python benchmarks/bench_demo_batch.py [--practices 12] [--keep] [--reports a,b]
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


def plain_runs(runs: list[tuple[Path, dict]], out: Path, chromium: str) -> float:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i, (notebook, params) in enumerate(runs):
        target = out / f"{i:03d}-{notebook.stem}.ipynb"
        cmd = [str(BIN / "papermill"), str(notebook), str(target), "--no-progress-bar"]
        for k, v in params.items():
            cmd += ["-r", k, str(v)]
        timed(cmd)
        timed([str(BIN / "jupyter"), "nbconvert", "--to", "html", "--no-input", str(target)])
        html = target.with_suffix(".html")
        timed([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
               f"--print-to-pdf={target.with_suffix('.pdf')}", html.as_uri()])
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--practices", type=int, default=12)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--reports", default="",
                    help="comma-separated report ids (default: every report of parameters/demo.yaml)")
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
        latest = pd.to_datetime(Warehouse(warehouse).practices()["extraction_date"]).max().date()
        quarter = str(Quarter.latest_complete(latest))
        t0 = time.perf_counter()
        cube = prepare_quarter(warehouse, quarter)
        prepare_s = time.perf_counter() - t0
        practices = read_slice(cube, "practices")
        keys_of = {"practice": list(practices["practice_agb"]), "zorggroep": [None]}
        for scope in ("hagro", "region"):
            keys_of[scope] = sorted(h for h in practices[scope].dropna().unique() if str(h).strip())
        common = dict(quarter=quarter, warehouse=str(warehouse), cube_path=str(cube))
        if args.reports:
            reports = [r.strip() for r in args.reports.split(",") if r.strip()]
        else:
            from helpers.batch import load_batch_file
            from helpers.config import PARAMETERS_DIR
            reports = list(load_batch_file(PARAMETERS_DIR / "demo.yaml")["reports"])
        runs = []
        for rid in reports:
            spec = REPORTS[rid]
            key = spec.key_param()
            fixed = {p.name: p.default for p in spec.params if p.type == "str" and p.default not in (None, "")}
            runs += [(Path(spec.notebook), {**({key.name: k} if key else {}), **fixed, **common})
                     for k in keys_of[spec.scope]]
        print(f"{len(runs)} runs ({', '.join(reports)}), quarter {quarter}; cube prepared in {prepare_s:.1f}s", flush=True)
        print("plain loop (papermill + nbconvert + chromium per run) ...", flush=True)
        plain = plain_runs(runs, root / "plain", find_chromium())
        batch = write_batch(root / "batch.yaml", warehouse=warehouse, quarters=[quarter], practices="all",
                            reports=reports, formats=["html", "pdf"], outputs=root / "out")
        print("spiegel build ...", flush=True)
        built, out = timed([*spiegel_build_cmd(), str(batch)])
        rebuilt, _ = timed([*spiegel_build_cmd(), str(batch)])   # nothing changed: every run skipped
        manifest = json.loads((root / "out" / quarter / "manifest.json").read_text())
        execute = {}
        for r in manifest["runs"].values():
            execute.setdefault(r.get("report"), []).append(r["timings_s"].get("execute", 0))
        print()
        print(f"demo batch, {len(runs)} runs, HTML + PDF (one run, side by side; repeat: {Path(sys.argv[0]).name})")
        print(f"{'plain loop (papermill + nbconvert + chromium)':<50} {plain:>8.1f} s")
        print(f"{'spiegel build':<50} {built:>8.1f} s   {plain / built:.1f}x faster")
        print(f"{'spiegel build again, nothing changed':<50} {rebuilt:>8.1f} s")
        for rid, values in execute.items():
            print(f"  execute per run, {rid}: mean {sum(values) / len(values):.2f} s, max {max(values):.2f} s")
        return 0
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
