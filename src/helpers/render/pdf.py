"""HTML report -> PDF from a real browser.

Playwright drives Debian's Chromium (``SPIEGEL_CHROMIUM``, else ``chromium`` on the
PATH; nothing is downloaded). ``PdfPrinter`` launches the browser once per worker and
prints every report of the batch with it (about 0.4 s a page against 5 s for a browser
per file), in one page (tab) that navigates from report to report: a new tab per report
starts a renderer process each time and took twice the time (48 reports: 54 s against 24 s,
the same PDF bytes; ``benchmarks/bench_pdf.py``). A4, the practice and quarter plus page numbers in the footer, and
``break-inside: avoid`` on tables and figures. The page is printed with JavaScript off: a
report's only script (sorting and search for its long tables, ``html.add_interactive_tables``)
is for the screen, and the PDF prints the plain table as the HTML holds it. With ``SOURCE_DATE_EPOCH`` set the PDF's
dates are that time (``html.source_date``), so a rebuild is byte-identical.

>>> with PdfPrinter() as printer:                                               # doctest: +SKIP
...     printer.print_pdf(Path("report.html"), Path("report.pdf"), timeout=30)

A run's time limit covers its PDF: ``print_pdf(..., timeout=)`` hands the remaining time to
Playwright, and ``kill()`` (safe from another thread, e.g. a watchdog timer) ends the browser
where a page stalls Chromium beyond any Playwright timeout; the next PDF relaunches it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

from .. import escape
from ..atomic import atomic_file
from ..errors import SpiegelError
from .html import source_date

CHROMIUM_FLAGS = (
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)

INSTALL_HINT = ("install Debian's Chromium with `apt-get install chromium` (or `make system`), "
                "or point SPIEGEL_CHROMIUM at a Chrome/Chromium executable; HTML reports are not affected")


def find_chromium(explicit: str | None = None) -> str:
    """The Chromium to print with, or a SpiegelError saying how to install one."""
    from ..config import Settings
    candidates = [explicit, Settings.from_env().chromium]
    for c in candidates:
        if c:
            path = shutil.which(c) or (c if Path(c).is_file() else None)
            if path:
                return path
            raise SpiegelError(f"no browser for PDF printing at SPIEGEL_CHROMIUM={c!r}: {INSTALL_HINT}")
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    raise SpiegelError(f"no browser found for PDF printing: {INSTALL_HINT}")


def _footer_template(left: str) -> str:
    style = ("font-family: 'DejaVu Sans', Arial, sans-serif; font-size: 7.5pt; color: #5b6675; width: 100%; "
             "padding: 0 12mm; display: flex; justify-content: space-between;")
    return (f'<div style="{style}"><span>{escape.pdf_text(left)}</span>'
            f'<span>pagina <span class="pageNumber"></span> van <span class="totalPages"></span></span></div>')


_PDF_DATE = re.compile(rb"/(CreationDate|ModDate) \((D:[0-9]{14}[^)]*)\)")


def _pdf_dates(data: bytes) -> bytes:
    """Chromium stamps the PDF with the time it printed: with ``source_date()`` set, that
    time instead. Only a replacement of the same length is made, so the byte offsets of the
    PDF's cross-reference table stay right."""
    when = source_date()
    if when is None:
        return data
    stamp = when.strftime("D:%Y%m%d%H%M%S+00'00'").encode()

    def fix(m: re.Match) -> bytes:
        return m.group(0).replace(m.group(2), stamp) if len(stamp) == len(m.group(2)) else m.group(0)
    return _PDF_DATE.sub(fix, data)


def count_pdf_pages(data: bytes) -> int:
    """Pages of a PDF Chromium wrote (its page objects are not compressed)."""
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))


class PdfPrinter:
    """One headless Chromium, launched on first use and reused for every PDF.

    Playwright objects belong to the thread that made them: use one printer per thread.
    """

    def __init__(self, executable: str | None = None):
        self.executable = executable
        self._pw = None
        self._browser = None
        self._context = None
        self._page = None
        self.launches = 0

    def start(self) -> None:
        """Launch the browser now unless it runs (``print_pdf`` does so itself when needed)."""
        if self._browser is not None and self._browser.is_connected():
            return
        self.close()
        executable = find_chromium(self.executable)
        from playwright.sync_api import sync_playwright
        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=executable, headless=True,
                                                 args=list(CHROMIUM_FLAGS))
        self._context = self._browser.new_context(java_script_enabled=False)
        # a report must print from its own bytes: nothing may be fetched from the network
        self._context.route(re.compile(r"^(https?|wss?)://"), lambda route: route.abort())
        self.launches += 1

    def print_pdf(self, html_path: Path, pdf_path: Path, footer_left: str = "",
                  timeout: float | None = None) -> int:
        """Print ``html_path`` to ``pdf_path`` (written atomically); returns the page count.

        ``timeout`` (seconds): Playwright's limit for loading and printing, from now on for
        this printer; a stall it does not reach is for ``kill()``."""
        self.start()
        if timeout is not None:
            ms = max(timeout, 0.1) * 1000
            self._context.set_default_timeout(ms)
            self._context.set_default_navigation_timeout(ms)
        if self._page is None or self._page.is_closed():
            self._page = self._context.new_page()
            # a renderer that crashed between two reports: the next one gets a fresh tab
            self._page.on("crash", lambda page: setattr(self, "_page", None) if self._page is page else None)
        page = self._page
        try:
            page.goto(Path(html_path).resolve().as_uri(), wait_until="load")
            page.emulate_media(media="print")
            data = page.pdf(format="A4", print_background=True, display_header_footer=True,
                            header_template="<span></span>", footer_template=_footer_template(footer_left),
                            margin={"top": "14mm", "bottom": "16mm", "left": "12mm", "right": "12mm"})
        except BaseException:
            # a page that failed or timed out is not reused: the next report gets a fresh one
            self._page = None
            try:
                page.close()
            except Exception:  # noqa: BLE001
                pass
            raise
        data = _pdf_dates(data)
        with atomic_file(pdf_path) as tmp:
            tmp.write_bytes(data)
        return count_pdf_pages(data)

    def kill(self) -> None:
        """SIGKILL the Chromium of this process's Playwright drivers (and its renderers: its
        process group), e.g. from a watchdog when a page stalls it; the printer launches a new
        one for its next PDF. Playwright does not say which driver belongs to which printer,
        so the browsers of this process's other printers (other threads) go too and relaunch
        likewise."""
        from ..runner.processes import process_table
        me = os.getpid()
        procs = process_table()
        drivers = [pid for pid, (ppid, cmd) in procs.items() if ppid == me and "run-driver" in cmd]
        for pid, (ppid, _cmd) in procs.items():
            if ppid in drivers:
                for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                    try:
                        kill()
                    except (ProcessLookupError, PermissionError):
                        pass

    def headings(self, html_path: Path) -> list[str]:
        """The h1-h3 texts as the browser shows them (used by the end-to-end tests)."""
        self.start()
        page = self._context.new_page()
        try:
            page.goto(Path(html_path).resolve().as_uri(), wait_until="load")
            return [t.strip() for t in page.locator("h1:visible, h2:visible, h3:visible").all_inner_texts()]
        finally:
            page.close()

    def close(self):
        """Close the page context, the browser and the Playwright driver (idempotent)."""
        for obj, method in ((self._page, "close"), (self._context, "close"), (self._browser, "close"),
                            (self._pw, "stop")):
            if obj is not None:
                try:
                    getattr(obj, method)()
                except Exception:  # noqa: BLE001
                    pass
        self._pw = self._browser = self._context = self._page = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
