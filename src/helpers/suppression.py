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
