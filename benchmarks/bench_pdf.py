"""Printing the batch's reports to PDF, three ways side by side in one run, on the same HTML:

1. a browser per report (``chromium --headless --print-to-pdf``, what ``nbconvert --to
   webpdf`` and a shell loop do: a browser starts for every file),
2. one browser, a new tab per report (``PdfPrinter`` before this benchmark),
3. one browser, one tab that navigates from report to report (``PdfPrinter`` now).

Prints wall seconds, seconds per report and the ratios; checks that ways 2 and 3 give the same
PDF bytes (their print dates aside); nothing is asserted. Not a test. Run it after a build:

    .venv/bin/python benchmarks/bench_pdf.py [--outputs outputs/2026Q3] [--limit 24]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PDF_OPTIONS = dict(format="A4", print_background=True, display_header_footer=True,
                   header_template="<span></span>",
                   margin={"top": "14mm", "bottom": "16mm", "left": "12mm", "right": "12mm"})


def report_html(outputs: Path, limit: int) -> list[Path]:
    files = sorted(p for p in outputs.glob("**/*.html")
                   if not p.name.endswith(".slides.html") and p.name != "index.html")
    return files[:limit]


def without_dates(data: bytes) -> str:
    return hashlib.sha256(re.sub(rb"/(CreationDate|ModDate) \([^)]*\)", b"", data)).hexdigest()


def browser_per_report(files: list[Path], chromium: str, tmp: Path) -> float:
    from helpers.render.pdf import CHROMIUM_FLAGS
    t0 = time.perf_counter()
    for i, f in enumerate(files):
        subprocess.run([chromium, "--headless", *CHROMIUM_FLAGS, "--no-pdf-header-footer",
                        f"--print-to-pdf={tmp / f'cli-{i}.pdf'}", f.resolve().as_uri()],
                       check=True, capture_output=True)
    return time.perf_counter() - t0


def one_browser(files: list[Path], chromium: str, reuse_tab: bool) -> tuple[float, list[str]]:
    from playwright.sync_api import sync_playwright

    from helpers.render.pdf import CHROMIUM_FLAGS, _footer_template
    hashes = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=list(CHROMIUM_FLAGS))
        context = browser.new_context(java_script_enabled=False)
        tab = context.new_page() if reuse_tab else None
        t0 = time.perf_counter()
        for f in files:
            page = tab or context.new_page()
            page.goto(f.resolve().as_uri(), wait_until="load")
            page.emulate_media(media="print")
            hashes.append(without_dates(page.pdf(footer_template=_footer_template(f.parent.name), **PDF_OPTIONS)))
            if tab is None:
                page.close()
        seconds = time.perf_counter() - t0
        browser.close()
    return seconds, hashes


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outputs", type=Path, help="a built quarter's outputs (default: the latest under outputs/)")
    ap.add_argument("--limit", type=int, default=24, help="reports to print (default 24)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from helpers.render.pdf import find_chromium

    outputs = args.outputs or max((ROOT / "outputs").glob("20*Q*"), default=None)
    if outputs is None or not outputs.is_dir():
        print("no built quarter under outputs/: run `make demo` first", file=sys.stderr)
        return 2
    files = report_html(outputs, args.limit)
    chromium = find_chromium()
    print(f"{len(files)} reports of {outputs}, printed with {chromium}")
    with tempfile.TemporaryDirectory(prefix="spiegel-bench-pdf-") as tmp:
        cli = browser_per_report(files, chromium, Path(tmp))
    tabs, h_tabs = one_browser(files, chromium, reuse_tab=False)
    one, h_one = one_browser(files, chromium, reuse_tab=True)
    n = len(files)
    print(f"{'way':<44}{'wall s':>8}{'s/report':>10}{'ratio':>8}")
    for name, s in (("a browser per report (chromium --print-to-pdf)", cli),
                    ("one browser, a new tab per report", tabs),
                    ("one browser, one tab (PdfPrinter)", one)):
        print(f"{name:<44}{s:>8.1f}{s / n:>10.2f}{cli / s:>7.1f}x")
    print("same PDF bytes, new tab and one tab:", "yes" if h_tabs == h_one else "NO")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
