"""Small-number rules: the one place that decides what a shared output may show.

Patient-level rows and exact small counts appear only in a practice's own report. Every
figure that leaves for a shared output (regional report, peer figures in another
practice's report, the portal) goes through ``suppress_counts`` / ``peer_figure`` first.

The defaults follow Dutch publishing practice (CBS/Vektis: no cell under 10) and the
OpenSAFELY rule that a rate built on a suppressed count is itself suppressed. See
GLOSSARY.md ("kleine aantallen").

Peer figures (the care-group median, P10, P90, a practice's position) are computed over
the publishable rates only (``PEER_RULE``): with few practices a median is one practice's
rate, so a rate that ``suppress_rate`` withholds must never be among the values it is
taken from.

>>> suppress_counts(pd.Series([0, 3, 12, 250])).tolist()
['0', '<10', '12', '250']
"""

from __future__ import annotations

import re

import pandas as pd

#: counts from 1 up to this value minus one are shown as "<10" in shared outputs
MIN_CELL = 10
#: a percentage is only shown for another practice or a region when its denominator reaches this
MIN_DENOMINATOR_FOR_RATE = 10
#: a peer figure (median, deciles) needs at least this many practices
MIN_PRACTICES_FOR_PEERS = 5
#: how a peer figure is made, in words (``peer_rates`` implements it)
PEER_RULE = (f"groepscijfers alleen over percentages die zelf getoond mogen worden, en alleen bij "
             f">= {MIN_PRACTICES_FOR_PEERS} praktijken")
#: the rule in words, printed in every report's provenance stamp
RULE_TEXT = (f"aantallen 1 t/m {MIN_CELL - 1} getoond als <{MIN_CELL}; percentages alleen bij noemer "
             f">= {MIN_DENOMINATOR_FOR_RATE} en zonder kleine teller of rest; {PEER_RULE}")


def is_small(count) -> bool:
    """True for a count that may not be shown exactly in a shared output (1..MIN_CELL-1)."""
    return pd.notna(count) and 0 < int(count) < MIN_CELL


def suppress_counts(counts: pd.Series) -> pd.Series:
    """Counts as display strings (Dutch notation) for a shared output: small counts become ``<10``."""
    from .tables import nl_number
    return counts.map(lambda c: "" if pd.isna(c) else (f"<{MIN_CELL}" if is_small(c) else nl_number(int(c))))


def rate_publishable(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """Per row: may the rate numerator/denominator be shown in a shared output? No when
    the denominator is too small or the numerator (or its complement) is a small count that
    the rate would give away."""
    num, den = numerator.astype("float64"), denominator.astype("float64")
    small = lambda c: (c > 0) & (c < MIN_CELL)  # noqa: E731 - is_small, per row
    return (den >= MIN_DENOMINATOR_FOR_RATE) & ~small(num) & ~small(den - num)


def suppress_rate(numerator, denominator) -> float | None:
    """A percentage for a shared output, or None when ``rate_publishable`` says no."""
    if pd.isna(numerator) or pd.isna(denominator):
        return None
    if not rate_publishable(pd.Series([numerator]), pd.Series([denominator])).iloc[0]:
        return None
    return 100.0 * numerator / denominator


def peer_rates(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """The rates a peer figure may be computed from (``PEER_RULE``): the percentage where
    it is publishable, NaN where ``suppress_rate`` withholds it."""
    pct = 100.0 * numerator.astype("float64") / denominator.astype("float64").where(denominator > 0)
    return pct.where(rate_publishable(numerator, denominator))


def peer_figure(values: pd.Series, func: str = "median") -> float | None:
    """A care-group figure over practices (median, mean), or None with too few practices."""
    values = values.dropna()
    if len(values) < MIN_PRACTICES_FOR_PEERS:
        return None
    return float(getattr(values, func)())


#: a group of a margin (the practices of one region, say) that holds a withheld cell holds at
#: least this many: with two, a member of the group that knows its own figure (a practice
#: reading the regional report) could work out the other's from the total
MIN_WITHHELD_IN_GROUP = 3
#: how a count withheld by complementary suppression is shown (CBS: ``x``, geheim): it is no
#: small count itself, it is withheld so that a small one cannot be worked out from a total
WITHHELD_TEXT = "x"


def _groups_of(within) -> list[tuple[str, ...]]:
    """``within`` as a list of key groups: one group (``("hagro", "measure")``) or several
    (``(("hagro", "measure"), ("practice_agb",))``); ``()`` in the list is the whole table."""
    within = tuple(within)
    if not within or all(isinstance(c, str) for c in within):
        return [tuple(within)]
    return [tuple(g) for g in within]


def suppress_complementary(frame: pd.DataFrame, count: str, within, withheld: pd.Series | None = None) -> pd.Series:
    """Complementary (secondary) suppression: the cells of ``count`` to withhold *besides* the
    small ones, so that no withheld value can be worked out by differencing a total.

    ``within`` names the groups of rows that add up to a total a reader has (published beside
    the table, or one the reader can add up): one key group, e.g. ``("hagro", "measure")`` (the
    practices of one hagro for one measure), or several, e.g. ``(("hagro", "measure"),
    ("practice_agb",))`` for the row and the column margins of a practice x measure table.
    A group in which exactly one cell is withheld (a small count, 1..MIN_CELL-1 as
    :func:`is_small` says, or one already withheld for another group) gives that cell away:
    total minus the others; with two withheld cells, a reader who owns one of them (a practice
    knows its own figure) gives the other away the same way. So a group with a withheld cell
    gets at least ``MIN_WITHHELD_IN_GROUP`` (three): the smallest shown cells are withheld
    with it. Groups with no withheld cell are left alone. Withholding a cell for one group can
    leave too few withheld cells in an overlapping group: the rule is applied again until
    nothing changes.

    Only a count above zero is picked as the second cell: a withheld zero would give the small
    one away all the same (a withheld cell is known to be 0 or at least MIN_CELL). A group with
    no such cell (its other cells are 0 or empty) has a total equal to the small count, which
    is itself small wherever it is published under this rule. ``withheld`` (booleans, one per
    row) adds cells withheld for another reason to the small ones. Ties go to the first row.

    >>> t = pd.DataFrame({"hagro": ["A", "A", "A", "B", "B", "B"], "practice": list("pqrstu"),
    ...                   "O": [3, 40, 25, 3, 4, 80]})
    >>> t.assign(secondary=suppress_complementary(t, "O", ("hagro",)))
      hagro practice   O  secondary
    0     A        p   3      False
    1     A        q  40       True
    2     A        r  25       True
    3     B        s   3      False
    4     B        t   4      False
    5     B        u  80       True

    In hagro A the hagro's total (68) minus 40 would give p's 3, and q, knowing its own 40,
    could subtract it from 68 - 25: both are withheld with p. In hagro B, t knows its own 4:
    total minus 80 minus 4 would give s's 3, so u's 80 is withheld too.
    """
    index = frame.index
    frame = frame.reset_index(drop=True)   # by position: the caller's index may repeat labels
    values = pd.to_numeric(frame[count], errors="coerce")
    small = values.map(is_small).astype(bool)
    out = pd.Series(False, index=frame.index)
    hidden = small.copy() if withheld is None else small | pd.Series(list(map(bool, withheld)), index=frame.index)
    eligible = values.notna() & (values > 0)
    groups = _groups_of(within)
    for g in groups:
        missing = [c for c in g if c not in frame.columns]
        if missing:
            raise KeyError(f"suppress_complementary: margin column {missing[0]!r} is not a column of the table")
    # one group id per row and margin (an empty key value is a key value like any other)
    ids = [frame.groupby(list(g), dropna=False, sort=False).ngroup() if g else pd.Series(0, index=frame.index)
           for g in groups]
    order = pd.DataFrame({"v": values, "pos": range(len(frame))}, index=frame.index)
    changed = True
    while changed:
        changed = False
        for gid in ids:
            n = hidden.groupby(gid).transform("sum")
            lone = (n >= 1) & (n < MIN_WITHHELD_IN_GROUP)   # rows of a group with too few withheld cells
            pool = order[lone & eligible & ~hidden]
            if pool.empty:
                continue
            picked = pool.assign(g=gid[pool.index]).sort_values(["v", "pos"]).groupby("g", sort=False).head(1).index
            hidden.loc[picked] = True
            out.loc[picked] = True
            changed = True
    return pd.Series(out.to_numpy(), index=index, name=count)


_QUOTED = re.compile(r"""(['"])(?:(?!\1).){1,200}\1""")


def scrub_message(text: str) -> str:
    """An error message fit for a shared output (manifest, portal, batch logs): quoted values,
    which is where Python, pandas and DuckDB put the data that caused an error (a patient
    number, a value), become ``'…'``. The full message stays in the practice's own partial
    notebook.

    >>> scrub_message("KeyError: 'P00123' not found in column \\"patient_id\\"")
    "KeyError: '…' not found in column '…'"
    """
    return _QUOTED.sub("'…'", str(text))
