"""Small vectorised helpers of the demo generator: day numbers, expanding counts, weekdays,
uniform days and choices, age bands, and the two random date series every practice uses."""

from __future__ import annotations

from datetime import date

import numpy as np

from .constants import EPOCH, INF, N_BANDS, NIVEL_AGE_EDGES


def _day(d: date) -> int:
    return (d - EPOCH).days


def _years_of(days: np.ndarray) -> np.ndarray:
    return np.asarray(days, dtype="datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def _jan1(years) -> np.ndarray:
    return (np.asarray(years, dtype=np.int64) - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Owner index and position within the owner for ``counts[i]`` items per owner."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(owner.size) - starts[owner]


def _weekday(d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Move Saturdays to Friday and Sundays to Monday, unless that leaves [lo, hi]."""
    wd = (d + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    nd = d + np.where(wd == 5, -1, np.where(wd == 6, 1, 0))
    return np.where((nd >= lo) & (nd <= hi), nd, d)


def _uniform_day(rng, lo, hi) -> np.ndarray:
    """A day uniformly in [lo, hi] (inclusive, element-wise; hi >= lo)."""
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    return lo + np.floor(rng.random(lo.shape) * (hi - lo + 1)).astype(np.int64)


def _choice(rng, options, weights, n) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return np.asarray(options)[rng.choice(len(options), size=n, p=w / w.sum())]


def _band5(age) -> np.ndarray:
    return np.clip(np.floor(np.asarray(age, dtype=float) / 5), 0, N_BANDS - 1).astype(np.int64)


def _nivel_band(age) -> np.ndarray:
    return np.searchsorted(NIVEL_AGE_EDGES, np.asarray(age), side="right")


def _series(rng, A, S, E, period, before_only, skip, intake):
    """Dates around anchors A (always kept), every ``period`` days with a little jitter and
    the odd skipped visit, within [S, E] (before A only when ``before_only``); plus an
    intake visit on day ``intake`` (INF = none) when that lies in the same bounds."""
    kb = np.floor(np.maximum(A - S, 0) / period).astype(np.int64) + 1
    ka = np.where(before_only, 0, np.floor(np.maximum(E - A, 0) / period).astype(np.int64) + 1)
    owner, pos = _expand(kb + ka + 1)
    k = pos - kb[owner]
    jitter = rng.normal(0, 0.05, owner.size) * period[owner]
    d = A[owner] + np.rint(k * period[owner] + np.where(k == 0, 0, jitter)).astype(np.int64)
    anchor = k == 0
    hi = np.where(before_only[owner], A[owner] - 1, E[owner])
    keep = anchor | ((d >= S[owner]) & (d <= hi) & (rng.random(owner.size) >= skip))
    hi_t = np.where(before_only, A - 1, E)
    first = np.full(A.size, INF, dtype=np.int64)
    np.minimum.at(first, owner[keep], d[keep])
    add = np.flatnonzero((intake >= S) & (intake <= hi_t) & (intake < first - 45))
    owner = np.concatenate([owner[keep], add])
    d = np.concatenate([d[keep], intake[add]])
    anchor = np.concatenate([anchor[keep], np.zeros(add.size, bool)])
    hi = np.concatenate([hi[keep], hi_t[add]])
    return owner, d, anchor, S[owner], hi


def _poisson_days(rng, who: np.ndarray, lo: np.ndarray, hi: np.ndarray, rate: float):
    expo = (hi[who] - lo[who]) / 365.25
    cnt = rng.poisson(rate * np.maximum(expo, 0))
    owner, _ = _expand(cnt)
    pid = who[owner]
    d = _uniform_day(rng, lo[pid], hi[pid])
    return pid, _weekday(d, lo[pid], hi[pid])
