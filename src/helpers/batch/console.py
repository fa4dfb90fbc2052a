"""What the build prints: progress per run, the summary (failures with practice, report, cell
and error), the memory line, the interrupt message and user errors one line each."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ContractError, SpiegelError
from .batchfile import Batch


class Progress:
    """A tqdm bar with counts and ETA on a terminal; one plain line per run otherwise (CI).

    >>> from types import SimpleNamespace as NS
    >>> p = Progress(2, stream=None)
    >>> p.update(NS(quarter="2026Q3", key="01000001", report="his_analyse"),
    ...          NS(status="done", timings={"total": 4.21}, error=None))
    [1/2] done   2026Q3 01000001 his_analyse 4.2s
    >>> p.close()
    """

    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.counts = {"done": 0, "failed": 0}
        self.n = 0
        self.bar = None
        if total and hasattr(self.stream, "isatty") and self.stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="run", file=self.stream, dynamic_ncols=True,
                            desc="build", smoothing=0.1)

    def update(self, spec, result) -> None:
        """Count one finished run (``spec``: its RunSpec, ``result``: its RunResult) and show it."""
        self.n += 1
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if self.bar is not None:
            self.bar.set_postfix(done=self.counts["done"], failed=self.counts["failed"], refresh=False)
            self.bar.update(1)
            if result.status != "done":
                self.bar.write(f"failed  {spec.quarter} {spec.key} {spec.report}: {_error_line(result.error)}")
        else:
            width = len(str(self.total))
            line = (f"[{self.n:>{width}}/{self.total}] {result.status:<6} {spec.quarter} {spec.key} "
                    f"{spec.report} {result.timings.get('total', 0):.1f}s")
            if result.status != "done":
                line += f"  {_error_line(result.error)}"
            print(line, flush=True)

    def close(self) -> None:
        """End the bar (a plain-line progress has nothing to end)."""
        if self.bar is not None:
            self.bar.close()


def _error_line(error: dict | None) -> str:
    if not error:
        return ""
    parts = [f"[{error.get('stage')}]"]
    if error.get("cell_index") is not None:
        parts.append(f"cell {error['cell_index']} (`{error.get('cell_source', '')}`):")
    parts.append(str(error.get("message", "")))
    return " ".join(parts)


def _stage_table(results: list) -> list[str]:
    stages = ("kernel_start", "execute", "html", "slides", "pdf", "extras", "total")
    rows = []
    for st in stages:
        vals = [r.timings[st] for r in results if st in r.timings and r.status == "done"]
        if vals:
            rows.append(f"  {st:<13} {len(vals):>5} {sum(vals):>9.2f} {sum(vals) / len(vals):>8.2f} {max(vals):>8.2f}")
    if not rows:
        return []
    return ["stage timings (s)   runs       sum     mean      max", *rows]


def print_summary(plan_specs, results: dict, skipped: list, elapsed: float, extra_lines: list[str],
                  outputs: Path, portal: Path | None, out=print) -> None:
    """The batch summary: counts, one row per run (up to 40), stage timings, ``extra_lines``
    (ingest, prepare, memory), every failure with its practice, report, stage, cell, error,
    partial notebook and log, and the portal's path; each line through ``out``.

    >>> print_summary([], {}, [], 1.25, ["prepare 2026Q3: cube up to date"], Path("outputs"), None)
    <BLANKLINE>
    batch summary: 0 runs: 0 done, 0 skipped (up to date), 0 failed, in 1.2s
      quarter  practice/region        report           status    execute   html    pdf slides
    prepare 2026Q3: cube up to date
    """
    done = [r for r in results.values() if r.status == "done"]
    failed = [(s, results[s.uid]) for s in plan_specs if s.uid in results and results[s.uid].status != "done"]
    out("")
    out(f"batch summary: {len(plan_specs)} runs: {len(done)} done, {len(skipped)} skipped (up to date), "
        f"{len(failed)} failed, in {elapsed:.1f}s")
    if len(plan_specs) <= 40:
        out(f"  {'quarter':<8} {'practice/region':<22} {'report':<16} {'status':<8} {'execute':>8} {'html':>6} {'pdf':>6} "
            f"{'slides':>6}")
        for s in plan_specs:
            r = results.get(s.uid)
            status = r.status if r else "skipped"
            t = r.timings if r else {}

            def f(k):
                return f"{t[k]:.1f}" if k in t else "-"
            out(f"  {s.quarter:<8} {s.key[:22]:<22} {s.report[:16]:<16} {status:<8} {f('execute'):>8} {f('html'):>6} {f('pdf'):>6} "
                f"{f('slides'):>6}")
    for line in _stage_table(list(results.values())):
        out(line)
    for line in extra_lines:
        out(line)
    if failed:
        out("failures:")
        for s, r in failed:
            e = r.error or {}
            out(f"  {s.quarter} {s.key} ({s.label}) report {s.report}: stage {e.get('stage')}")
            if e.get("cell_index") is not None:
                out(f"    cell {e['cell_index']}: {e.get('cell_source', '')}")
            out(f"    error: {e.get('message', '')}")
            if e.get("partial_notebook"):
                out(f"    partial notebook: {_rel(e['partial_notebook'])}")
            kept = [fmt for fmt, written in r.outputs_done.items() if written]
            if kept:
                out(f"    written: {', '.join(kept)} (the next build only renders what is missing)")
            out(f"    log: {_rel(s.log_path)}")
    if portal is not None:
        out(f"portal: {_rel(portal)}  (open in a browser: file://{Path(portal).resolve()})")


def _rel(path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def error_lines(exc: SpiegelError) -> list[str]:
    """What the build prints for a user error: one line per problem, a refused delivery in one line.

    >>> from ..errors import ParameterError
    >>> error_lines(ParameterError("b.yaml, quarters: found '2025Q5', expected a quarter\\n--report: found 'x', ..."))
    ["b.yaml, quarters: found '2025Q5', expected a quarter", "--report: found 'x', ..."]
    """
    if isinstance(exc, ContractError) and exc.problems:
        more = len(exc.problems) - 1
        return [f"{exc.subject} refused: {exc.problems[0].describe()}"
                f"{f' (and {more} more problem(s))' if more else ''}; correct the file and run the build "
                "again (the contract is spec/his-extract.md; `spiegel ingest <dataset>` lists every problem)"]
    return [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]


def _render_only_note(to_run: list) -> str:
    n = sum(1 for s in to_run if s.render_only)
    return f" ({n} only rendered again from their executed notebook)" if n else ""


def interrupt_message(b: Batch, discarded: int = 0) -> str:
    """What an interrupted build says: how to resume (without --force, which would rerun everything).

    >>> interrupt_message(Batch(name="demo", source="demo.yaml", outputs=Path("outputs")), discarded=1)
    'spiegel build: interrupted; finished runs are kept; 1 file(s) written after the interrupt were removed; run the same command again to resume (it runs only what is missing)'
    """
    dropped = f"; {discarded} file(s) written after the interrupt were removed" if discarded else ""
    if b.force:
        how = ("run the same command without --force to resume (it runs only what is missing; "
               "with --force everything runs again)")
    else:
        how = "run the same command again to resume (it runs only what is missing)"
    return f"spiegel build: interrupted; finished runs are kept{dropped}; {how}"


def _memory_line(results: dict, worker_mem: list[dict]) -> str:
    from ..runner import peak_rss_mb
    mem = f"memory: coordinator peak {peak_rss_mb():.0f} MB"
    peaks: dict[str, float] = {}
    for r in results.values():
        if r.worker and r.memory_mb.get("worker_peak"):
            peaks[r.worker] = max(peaks.get(r.worker, 0), r.memory_mb["worker_peak"])
    for m in worker_mem:
        if m.get("worker"):
            peaks[m["worker"]] = max(peaks.get(m["worker"], 0), m.get("worker_peak") or 0)
    if peaks:
        mem += "; workers peak " + ", ".join(f"{v:.0f}" for v in peaks.values()) + " MB"
    factories = [m["factory_rss"] for m in worker_mem if m.get("factory_rss")]
    if factories:
        mem += "; kernel factory " + ", ".join(f"{v:.0f}" for v in factories) + " MB"
    kernels = [r.memory_mb.get("kernel_peak") for r in results.values() if r.memory_mb.get("kernel_peak")]
    if kernels:
        mem += f"; kernel peak {max(kernels):.0f} MB (pages shared with the factory included)"
    return mem
