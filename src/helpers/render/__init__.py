"""RENDER: an executed notebook to self-contained HTML in the house style (``html``), the HTML
to PDF with one reused Chromium (``pdf``), and the portal ``outputs/index.html`` that links
every report of the batch (``portal``)."""

from .html import (HOUSE_CSS, PROVENANCE_LABELS, TEMPLATE, generated_at, html_exporter, provenance_html,
                   render_html, source_date, strip_external, strip_scripts)
from .pdf import CHROMIUM_FLAGS, INSTALL_HINT, PdfPrinter, count_pdf_pages, find_chromium

__all__ = ["CHROMIUM_FLAGS", "HOUSE_CSS", "INSTALL_HINT", "PROVENANCE_LABELS", "TEMPLATE", "PdfPrinter",
           "count_pdf_pages", "find_chromium", "generated_at", "html_exporter", "provenance_html",
           "render_html", "source_date", "strip_external", "strip_scripts"]
