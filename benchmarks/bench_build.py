"""`spiegel build` against the loop a papermill user writes by hand, side by side.

On a generated demo care group (default: the demo's 12 practices, its latest quarter), with
the same prepared quarter cube for both sides:

* the plain loop: for each practice the ``papermill`` command, then
  ``jupyter nbconvert --to html --no-input`` (what users write today), serially;
* the expert loop: what an experienced user writes instead, a ``ProcessPoolExecutor`` with
  one process per core over in-process ``papermill.execute_notebook`` and nbconvert's
  ``HTMLExporter`` (``spiegel build``'s ratio to both is printed);
* ``spiegel build`` of the same HTML reports (warm workers, forked kernels, in-process
  papermill and nbconvert; default workers = cores);
* the same two for a small notebook (pandas + seaborn, one table, one plot:
  ``benchmarks/small.ipynb``), the case the issue's numbers were measured on;
* PDF: one Chromium kept open for every file against a browser started per file;
* a rebuild with nothing changed, and with one practice's extraction changed;
* peak memory of the coordinator, the workers and the kernels, and the stage timings.

Nothing is asserted: it prints a table of seconds and ratios. Not part of the test suite.

    .venv/bin/python benchmarks/bench_build.py [--practices 12] [--workers N] [--keep] [--dataset DIR]

Before and after a change, on equal inputs (the demo generator changes too)::

    git worktree add /tmp/before <old commit>
    PYTHONPATH=/tmp/before/src .venv/bin/spiegel demo-data --out /tmp/before-demo/demo
    PYTHONPATH=/tmp/before/src .venv/bin/python /tmp/before/benchmarks/bench_build.py
    .venv/bin/python benchmarks/bench_build.py --dataset /tmp/before-demo/demo
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
NOTEBOOK = ROOT / "notebooks" / "his_analyse.ipynb"
SMALL = HERE / "small.ipynb"


def spiegel_build_cmd() -> list[str]:
    """``spiegel build`` when the CLI has it, else the module behind it."""
    exe = BIN / "spiegel"
    if exe.exists():
        probe = subprocess.run([str(exe), "build", "--help"], capture_output=True, text=True)
        if probe.returncode == 0 and "batch_file" in probe.stdout:
            return [str(exe), "build"]
    return [sys.executable, "-m", "helpers.batch"]


def timed(cmd: list[str], **kw) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc.stdout + proc.stderr


def plain_loop(notebook: Path, practices: list[str], quarter: str, warehouse: Path, cube: Path, out: Path) -> float:
    """What a papermill user writes: a shell loop of two commands per report. ``-r`` keeps
    an AGB code as text (``-p`` would turn 01000001 into the number 1000001)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for agb in practices:
        target = out / f"{agb}.ipynb"
        timed([str(BIN / "papermill"), str(notebook), str(target), "-r", "practice_agb", agb,
               "-r", "quarter", quarter, "-r", "warehouse", str(warehouse), "-r", "cube_path", str(cube),
               "--no-progress-bar"])
        timed([str(BIN / "jupyter"), "nbconvert", "--to", "html", "--no-input", str(target)])
    return time.perf_counter() - t0


def _expert_one(job: tuple[str, str, str, str, str, str]) -> None:
    """One report in a pool worker: in-process papermill, then nbconvert's HTMLExporter."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    notebook, agb, quarter, warehouse, cube, out = job
    nb = pm.execute_notebook(notebook, None, parameters=dict(practice_agb=agb, quarter=quarter,
                             warehouse=warehouse, cube_path=cube), progress_bar=False, log_output=False)
    body, _ = HTMLExporter(exclude_input=True).from_notebook_node(nbformat.from_dict(nb))
    Path(out, f"{agb}.html").write_text(body, encoding="utf-8")


def expert_loop(notebook: Path, practices: list[str], quarter: str, warehouse: Path, cube: Path,
                out: Path, workers: int) -> float:
    """What an experienced user writes instead: a ``ProcessPoolExecutor`` with one process per
    core over in-process ``papermill.execute_notebook`` and nbconvert's ``HTMLExporter``."""
    from concurrent.futures import ProcessPoolExecutor

    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(notebook), agb, quarter, str(warehouse), str(cube), str(out)) for agb in practices]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_expert_one, jobs))
    return time.perf_counter() - t0


def write_batch(path: Path, **values) -> Path:
    path.write_text("".join(f"{k}: {json.dumps(v) if isinstance(v, (list, dict)) else v}\n"
                            for k, v in values.items()))
    return path


def memory_line(output: str) -> str:
    m = re.search(r"memory: (.*)", output)
    return m.group(1) if m else "?"


def stage_means(outputs: Path, quarter: str) -> dict[str, float]:
    runs = json.loads((outputs / quarter / "manifest.json").read_text())["runs"].values()
    stages = {}
    for r in runs:
        for k, v in r["timings_s"].items():
            stages.setdefault(k, []).append(v)
    return {k: statistics.mean(v) for k, v in stages.items()}


def pdf_comparison(html_files: list[Path], out: Path) -> tuple[float, float]:
    from helpers.render import PdfPrinter
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with PdfPrinter() as printer:
        for f in html_files:
            printer.print_pdf(f, out / f"{f.parent.name}-kept.pdf")
    kept = time.perf_counter() - t0
    t0 = time.perf_counter()
    for f in html_files:
        with PdfPrinter() as printer:
            printer.print_pdf(f, out / f"{f.parent.name}-fresh.pdf")
    fresh = time.perf_counter() - t0
    return kept, fresh


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--practices", type=int, default=12, help="practices in the generated care group (12)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--skip-plain", action="store_true", help="skip the (slow) plain loops")
    ap.add_argument("--dataset", type=Path, default=None,
                    help="a delivery folder to use (copied) instead of generating one: to compare two "
                         "versions of the code on equal inputs, generate it once with the older one")
    args = ap.parse_args(argv)

    from helpers.cube import prepare_quarter
    from helpers.demo import edit_first_patient, generate
    from helpers.quarter import Quarter
    from helpers.warehouse import Warehouse

    root = Path(tempfile.mkdtemp(prefix="spiegel-bench-"))
    rows: list[tuple[str, float | None, str]] = []
    notes: list[str] = []
    try:
        print(f"benchmark folder {root}; {args.practices} practices, {args.workers} workers, "
              f"{os.cpu_count()} cores", flush=True)
        dataset, warehouse = root / "demo", root / "warehouse.duckdb"
        if args.dataset:
            shutil.copytree(args.dataset, dataset)   # the rebuild step below edits one practice
        else:
            generate(dataset, practices=args.practices)
        Warehouse(warehouse).ingest(dataset)
        import pandas as pd
        latest = pd.to_datetime(Warehouse(warehouse).practices()["extraction_date"]).max().date()
        quarter = str(Quarter.latest_complete(latest))
        t0 = time.perf_counter()
        cube = prepare_quarter(warehouse, quarter)
        prepare_s = time.perf_counter() - t0
        practices = sorted(p.name for p in (dataset / "extracts").iterdir())
        n = len(practices)
        build = spiegel_build_cmd()
        print(f"quarter {quarter}: cube prepared in {prepare_s:.1f}s; spiegel build = {' '.join(build[-2:])}", flush=True)

        # --- the HIS-analyse: plain loop against spiegel build (HTML) ---------------------------
        plain = None
        if not args.skip_plain:
            print("plain loop (papermill + jupyter nbconvert per practice) ...", flush=True)
            plain = plain_loop(NOTEBOOK, practices, quarter, warehouse, cube, root / "plain")
        print(f"expert loop (ProcessPoolExecutor, {args.workers} processes, in-process papermill + HTMLExporter) ...",
              flush=True)
        expert = expert_loop(NOTEBOOK, practices, quarter, warehouse, cube, root / "expert", args.workers)
        common = dict(warehouse=warehouse, quarters=[quarter], practices="all", reports=["his_analyse"],
                      executor="local", workers=args.workers)
        html_out = root / "out-html"
        batch_html = write_batch(root / "html.yaml", formats=["html"], outputs=html_out, **common)
        print("spiegel build (HTML) ...", flush=True)
        t_build, out_build = timed([*build, str(batch_html)])
        rows.append(("HIS-analyse, plain loop (papermill + nbconvert CLI)", plain, ""))
        rows.append(("HIS-analyse, expert loop (process pool, in-process papermill)", expert, ""))
        rows.append(("HIS-analyse, spiegel build HTML", t_build, memory_line(out_build)))

        # --- HTML + PDF, the README's main command ---------------------------------------------
        pdf_out = root / "out-pdf"
        batch_pdf = write_batch(root / "pdf.yaml", formats=["html", "pdf"], outputs=pdf_out, **common)
        print("spiegel build (HTML + PDF) ...", flush=True)
        t_pdf_build, out_pdf_build = timed([*build, str(batch_pdf)])
        rows.append(("HIS-analyse, spiegel build HTML + PDF", t_pdf_build, memory_line(out_pdf_build)))

        # --- the small notebook ------------------------------------------------------------------
        small_plain = None
        if not args.skip_plain:
            print("small notebook: plain loop ...", flush=True)
            small_plain = plain_loop(SMALL, practices, quarter, warehouse, cube, root / "plain-small")
        batch_small = write_batch(root / "small.yaml", formats=["html"], outputs=root / "out-small",
                                  **{**common, "reports": ["bench_small"]})
        print("small notebook: spiegel build ...", flush=True)
        t_small, out_small = timed([sys.executable, str(HERE / "_build_small.py"), str(batch_small)])
        rows.append(("small notebook, plain loop", small_plain, ""))
        rows.append(("small notebook, spiegel build HTML", t_small, memory_line(out_small)))

        # --- PDF: one browser against a browser per file ------------------------------------------
        html_files = sorted(html_out.glob(f"{quarter}/*/his_analyse.html"))
        print("PDF: kept-open browser vs a browser per file ...", flush=True)
        kept, fresh = pdf_comparison(html_files, root / "pdfs")
        pages = sum(r["outputs"]["pdf"]["pages"] for r in
                    json.loads((pdf_out / quarter / "manifest.json").read_text())["runs"].values())

        # --- rebuilds -------------------------------------------------------------------------------
        batch_data = write_batch(root / "data.yaml", dataset=dataset, formats=["html"], outputs=html_out, **common)
        timed([*build, str(batch_data)])            # first check of the dataset: records its fingerprint
        print("rebuild with nothing changed ...", flush=True)
        t_noop, out_noop = timed([*build, str(batch_data)])
        agb = practices[len(practices) // 2]
        edit_first_patient(dataset, agb)
        print("rebuild with one practice changed ...", flush=True)
        t_one, out_one = timed([*build, str(batch_data)])
        means = stage_means(html_out, quarter)
        pdf_means = stage_means(pdf_out, quarter)

        # --- the table --------------------------------------------------------------------------------
        print()
        print(f"Spiegel build benchmark: {n} practices, quarter {quarter}, {args.workers} workers on "
              f"{os.cpu_count()} cores (one run, side by side; repeat: {Path(sys.argv[0]).name} "
              f"--practices {args.practices})")
        print(f"{'scenario':<55} {'seconds':>8} {'per report':>11} {'vs plain':>9} {'vs expert':>9}")

        def line(label, seconds, base=None, base2=None):
            if seconds is None:
                print(f"{label:<55} {'skipped':>8}")
                return
            ratio = f"{base / seconds:.1f}x" if base else ""
            ratio2 = f"{base2 / seconds:.1f}x" if base2 else ""
            print(f"{label:<55} {seconds:>8.1f} {seconds / n:>11.2f} {ratio:>9} {ratio2:>9}")

        line("HIS-analyse: plain loop (papermill + nbconvert CLI)", plain)
        line("HIS-analyse: expert loop (process pool, papermill API)", expert, plain)
        line("HIS-analyse: spiegel build, HTML", t_build, plain, expert)
        line("HIS-analyse: spiegel build, HTML + PDF", t_pdf_build, plain)
        line("small notebook: plain loop", small_plain)
        line("small notebook: spiegel build, HTML", t_small, small_plain)
        label = f"PDF, a browser started per file ({len(html_files)} files)"
        print(f"{label:<55} {fresh:>8.1f} {fresh / len(html_files):>11.2f}")
        print(f"{'PDF, one browser kept open':<55} {kept:>8.1f} {kept / len(html_files):>11.2f} {fresh / kept:>8.1f}x")
        print(f"{'rebuild, nothing changed':<55} {t_noop:>8.1f}")
        one_run = means.get("total", 0)
        print(f"{'rebuild, one practice changed':<55} {t_one:>8.1f}   (that practice's run alone: {one_run:.1f}s)")
        print()
        print("stage timings, mean seconds per run (HTML build; PDF from the HTML + PDF build):")
        print(f"  prepare (once per quarter, all practices) {prepare_s:.2f}")
        for k in ("kernel_start", "execute", "html", "extras", "total"):
            if k in means:
                print(f"  {k:<13} {means[k]:.2f}")
        if "pdf" in pdf_means:
            print(f"  {'pdf':<13} {pdf_means['pdf']:.2f}  ({pages} pages in {len(html_files)} PDFs)")
        print()
        print("memory (HTML build):", memory_line(out_build))
        print("memory (HTML + PDF build):", memory_line(out_pdf_build))
        for note in notes:
            print(note)
        if "1 done" not in out_one:
            print("note: the one-practice rebuild did not run exactly one report:\n" + out_one[-800:])
        return 0
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
