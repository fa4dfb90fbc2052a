"""One real build shared by tests/e2e/test_slides.py and test_interactive_tables.py: one practice
of the session's small care group, the HIS-analyse, the praktijkspiegel and the
betaalspecificatie (a kind without slides), as HTML, PDF and slides; and a browser page that
can reach nothing but ``file:`` and ``data:`` URLs and records what it tried."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from conftest import Group, build, counts, quarter_of

REPORTS = ["his_analyse", "praktijkspiegel", "betaalspecificatie"]

_BUILDS: dict[str, "Built"] = {}


@dataclass
class Built:
    group: Group
    agb: str
    outputs: Path
    out: str
    quarter: str = ""

    @property
    def folder(self) -> Path:
        return self.outputs / self.quarter / self.agb


def deck_build(group: Group) -> Built:
    """The build, once per session and group."""
    key = str(group.root)
    if key not in _BUILDS:
        agb = group.practices[0]
        batch = group.batch("decks", reports=REPORTS, formats=["html", "pdf", "slides"], practices=[agb])
        code, out = build(batch)
        assert code == 0, out
        assert counts(out)["failed"] == 0, out
        built = Built(group, agb, group.root / "out-decks", out)
        built.quarter = quarter_of(built.outputs)
        _BUILDS[key] = built
    return _BUILDS[key]


@dataclass
class OfflinePage:
    """A page opened with the network blocked: every request that is not file: or data: is
    aborted and recorded, as are console errors, page errors, dialogs and CSP violations."""
    page: object
    requests: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    dialogs: list = field(default_factory=list)

    def violations(self) -> list:
        return self.page.evaluate("window.__violations || []")

    def close(self) -> None:
        self.page.context.close()


def wait_until(page, expression: str, timeout: float = 30) -> None:
    """Poll ``expression`` in ``page`` until it is true. Playwright's ``wait_for_function``
    polls with an ``eval`` inside the page, which a report's Content-Security-Policy forbids
    (it passed only when the first, CSP-free check was already true); ``page.evaluate`` is
    not subject to the page's CSP."""
    import time
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => !!({expression})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout:.0f}s: {expression}")
        time.sleep(0.05)


def open_offline(browser, path: Path, viewport=(1280, 720)) -> OfflinePage:
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    opened = OfflinePage(None)
    context.route(re.compile(r"^(?!file:|data:)"),
                  lambda route: (opened.requests.append(route.request.url), route.abort()))
    page = context.new_page()
    opened.page = page
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.errors.append(str(e)))
    page.on("dialog", lambda d: (opened.dialogs.append(d.message), d.dismiss()))
    page.add_init_script("document.addEventListener('securitypolicyviolation', "
                         "e => (window.__violations = window.__violations || []).push(e.violatedDirective));")
    page.goto(Path(path).resolve().as_uri(), wait_until="load")
    return opened
