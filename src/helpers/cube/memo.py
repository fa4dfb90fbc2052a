"""Figures computed once per prepare pass, however many reports' steps need them.

The quarter's prepare pass runs every report's prepare step over the same warehouse
connection (``helpers.cube.prepare.run_prepare_steps``). Two steps may need the same heavy,
set-based result: the praktijkspiegel and the exploration notebook both need the mirror of
every practice x measure x rolling year (``helpers.mirror.compute_mirror``, seconds for the
demo). ``pass_memo(key, compute)`` computes it for the first step that asks and hands the
same frames to the next; outside a pass (a test, the exploration notebook's own queries) it
just computes. The frames are shared: a step treats them as read-only (every step builds its
own tables from them with merges and copies).

>>> calls = []
>>> def mirror():
...     calls.append(1)
...     return "frames"
>>> with prepare_pass():
...     pass_memo(("mirror", "2026Q3"), mirror), pass_memo(("mirror", "2026Q3"), mirror)
('frames', 'frames')
>>> len(calls), pass_memo(("mirror", "2026Q3"), mirror), len(calls)    # outside a pass: computed
(1, 'frames', 2)
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Hashable, TypeVar

T = TypeVar("T")
_MEMO: ContextVar[dict | None] = ContextVar("spiegel_prepare_pass_memo", default=None)


@contextmanager
def prepare_pass():
    """The extent of one prepare pass: what ``pass_memo`` keeps lives until it ends."""
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def pass_memo(key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()`` once per prepare pass for ``key`` (include the quarter in it)."""
    memo = _MEMO.get()
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]
