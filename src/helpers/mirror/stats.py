"""The praktijkspiegel's method, in one tested module: indirect standardisation, exact
Poisson intervals, funnel limits widened for overdispersion, and the peer band.

Everything works on whole tables at once (every practice × measure × window), so the
caller hands in long DataFrames and gets columns back; nothing loops over practices.

**Indirect standardisation.** The strata are sex (M, V) × age band (:data:`AGE_BANDS`).
The reference rate of a stratum is the care group's: all events of the stratum over all
its patient-years (``r_s = ΣO_s / ΣD_s``, all practices of the warehouse). A practice's
expected count is ``E = Σ_s D_{p,s} · r_s``. Patients of sex ``O`` (onbekend) are too few
for a stratum of their own: they get the reference rate of their age band over *all*
sexes (:func:`reference_rates` adds that pooled rate), so they count with the average
risk of their age instead of being dropped.

**Interval.** Exact Poisson (Garwood) limits for O from the chi-square distribution,
``L = χ²(α/2; 2O)/2`` and ``U = χ²(1-α/2; 2O+2)/2``, divided by E.

**Funnel.** O/E against E; limits at 95% and 99.8% widened for overdispersion by the
SHMI additive random-effects method: ``z = √E·ln(O/E)``, winsorised at the 10th and 90th
percentile, ``φ = Σz²/N``; when ``Nφ > N-1``, ``τ² = (Nφ-(N-1)) / (Σw - Σw²/Σw)`` with
``w = E`` (the inverse variance of ln(O/E)), else 0; limits ``exp(±z_α·√(1/E + τ²))``.
A practice is *beyond chance* only outside the adjusted 99.8% limits, and only when
``E >= MIN_EXPECTED``: below that no ratio is shown at all.

>>> lo, hi = poisson_interval(np.array([10]))
>>> round(float(lo[0]), 3), round(float(hi[0]), 3)
(4.795, 18.39)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _sps

from ..suppression import MIN_CELL, MIN_PRACTICES_FOR_PEERS

#: age bands of the standardisation: (label, lowest age, highest age or None)
AGE_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("0-4", 0, 4), ("5-14", 5, 14), ("15-24", 15, 24), ("25-44", 25, 44),
    ("45-64", 45, 64), ("65-74", 65, 74), ("75-84", 75, 84), ("85+", 85, None),
)
AGE_BAND_LABELS = tuple(b[0] for b in AGE_BANDS)
#: sexes with a stratum of their own; ``O`` uses the pooled rate of its age band
STANDARD_SEXES = ("M", "V")
POOLED_SEX = "O"
#: a ratio (O/E, its interval, the funnel position) is shown only when E reaches this
MIN_EXPECTED = 10.0
#: two-sided coverage of the interval shown with every ratio
CI_LEVEL = 0.95
#: funnel limits: the inner (95%) and the outer (99.8%) one; only the outer one flags
FUNNEL_LEVELS = (0.95, 0.998)
#: winsorising percentiles of the z-scores before phi is estimated (SHMI)
WINSOR = (0.10, 0.90)


def age_band_sql(age: str) -> str:
    """A SQL CASE that maps an age expression to its band label.

    >>> age_band_sql("a").startswith("CASE WHEN a < 5 THEN '0-4'")
    True
    """
    parts = [f"WHEN {age} < {hi + 1} THEN '{label}'" for label, _, hi in AGE_BANDS if hi is not None]
    return "CASE " + " ".join(parts) + f" ELSE '{AGE_BANDS[-1][0]}' END"


# ---------------------------------------------------------------- intervals
def poisson_interval(observed, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood) Poisson limits for observed counts, vectorised.

    >>> lo, hi = poisson_interval(np.array([0, 1]))
    >>> float(lo[0]), round(float(hi[0]), 3), round(float(lo[1]), 4), round(float(hi[1]), 3)
    (0.0, 3.689, 0.0253, 5.572)
    """
    o = np.asarray(observed, dtype="float64")
    alpha = 1.0 - level
    with np.errstate(invalid="ignore"):
        lo = np.where(o > 0, _sps.chi2.ppf(alpha / 2, 2 * o) / 2, 0.0)
        hi = _sps.chi2.ppf(1 - alpha / 2, 2 * o + 2) / 2
    return lo, hi


def ratio_interval(observed, expected, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """O/E with its exact Poisson interval; NaN where E is below :data:`MIN_EXPECTED`.

    >>> r, lo, hi = ratio_interval([20, 3], [10.0, 2.0])
    >>> float(r[0]), round(float(lo[0]), 3), bool(np.isnan(r[1]))
    (2.0, 1.222, True)
    """
    o = np.asarray(observed, dtype="float64")
    e = np.asarray(expected, dtype="float64")
    lo, hi = poisson_interval(o, level)
    shown = e >= MIN_EXPECTED
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.where(shown, o / e, np.nan), np.where(shown, lo / e, np.nan), np.where(shown, hi / e, np.nan))


# ---------------------------------------------------------------- standardisation
def reference_rates(strata: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Care-group rate per ``keys`` + age band + sex from the practices' strata.

    ``strata`` has columns ``keys``, ``age_band``, ``sex``, ``O``, ``D`` (one row per
    practice and stratum). Returns ``keys, age_band, sex, ref_O, ref_D, ref_rate``, with a
    row for sex ``O`` in every age band holding the band's rate over all sexes.
    """
    by = keys + ["age_band"]
    sexed = strata[strata["sex"].isin(STANDARD_SEXES)].groupby(by + ["sex"], as_index=False)[["O", "D"]].sum()
    pooled = strata.groupby(by, as_index=False)[["O", "D"]].sum().assign(sex=POOLED_SEX)
    ref = pd.concat([sexed, pooled], ignore_index=True).rename(columns={"O": "ref_O", "D": "ref_D"})
    ref["ref_rate"] = np.where(ref["ref_D"] > 0, ref["ref_O"] / ref["ref_D"].where(ref["ref_D"] > 0), 0.0)
    return ref


def standardise(strata: pd.DataFrame, keys: list[str], unit_keys: list[str]) -> pd.DataFrame:
    """Indirect standardisation of every unit (practice) at once.

    ``keys`` are the columns one reference is taken over (measure, window), ``unit_keys``
    the columns of a compared unit (practice). Returns per ``keys + unit_keys``: ``O``,
    ``D`` (the denominator: patient-years, patients or events) and ``E``.

    >>> s = pd.DataFrame({"m": "x", "p": ["a", "a", "b", "b"], "age_band": "0-4",
    ...                   "sex": ["M", "V", "M", "V"], "O": [1, 4, 3, 0], "D": [10., 10., 10., 30.]})
    >>> standardise(s, ["m"], ["p"])[["p", "O", "E"]].round(2).values.tolist()
    [['a', 5, 3.0], ['b', 3, 5.0]]
    """
    ref = reference_rates(strata, keys)
    merged = strata.merge(ref[keys + ["age_band", "sex", "ref_rate"]], on=keys + ["age_band", "sex"], how="left")
    merged["E"] = merged["D"] * merged["ref_rate"].fillna(0.0)
    return merged.groupby(keys + unit_keys, as_index=False)[["O", "D", "E"]].sum()


# ---------------------------------------------------------------- funnel
def _winsorise(z: pd.Series) -> pd.Series:
    lo, hi = z.quantile(WINSOR[0]), z.quantile(WINSOR[1])
    return z.clip(lo, hi)


def overdispersion(observed, expected) -> tuple[float, float]:
    """SHMI additive random-effects estimate over one measure's units: (phi, tau²).

    Units with ``E < MIN_EXPECTED`` or ``O = 0`` (no z-score) are left out of the estimate.

    >>> phi, tau2 = overdispersion([10, 20, 30, 40], [20., 20., 20., 20.])
    >>> round(phi, 3), round(tau2, 4)
    (3.84, 0.206)
    """
    o = np.asarray(observed, dtype="float64")
    e = np.asarray(expected, dtype="float64")
    keep = (e >= MIN_EXPECTED) & (o > 0)
    o, e = o[keep], e[keep]
    n = len(o)
    if n < 2:
        return float("nan"), 0.0
    z = _winsorise(pd.Series(np.sqrt(e) * np.log(o / e))).to_numpy()
    phi = float(np.sum(z ** 2) / n)
    w = e  # 1 / s², s = 1/√E the standard error of ln(O/E)
    if n * phi > n - 1:
        tau2 = (n * phi - (n - 1)) / (w.sum() - (w ** 2).sum() / w.sum())
    else:
        tau2 = 0.0
    return phi, float(tau2)


def funnel_limits(expected, tau2: float, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper funnel limit of O/E at ``expected`` for one coverage ``level``.

    >>> lo, hi = funnel_limits(np.array([100.0]), 0.0, 0.95)
    >>> round(float(lo[0]), 4), round(float(hi[0]), 4)
    (0.822, 1.2165)
    """
    e = np.asarray(expected, dtype="float64")
    z = _sps.norm.ppf(1 - (1 - level) / 2)
    with np.errstate(divide="ignore"):
        half = z * np.sqrt(1.0 / e + tau2)
    return np.exp(-half), np.exp(half)


def overdispersion_by(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """:func:`overdispersion` for every ``keys`` group of ``table`` (columns ``O``, ``E``) at
    once, vectorised: returns ``keys, phi, tau2``. Same rules as :func:`overdispersion`."""
    t = table[keys + ["O", "E"]].copy()
    t = t[(t["E"] >= MIN_EXPECTED) & (t["O"] > 0)]
    t["z"] = np.sqrt(t["E"]) * np.log(t["O"] / t["E"])
    g = t.groupby(keys)["z"]
    t["z"] = t["z"].clip(g.transform("quantile", WINSOR[0]), g.transform("quantile", WINSOR[1]))
    t["z2"], t["w2"] = t["z"] ** 2, t["E"] ** 2
    agg = t.groupby(keys).agg(n=("z", "size"), z2=("z2", "sum"), w=("E", "sum"), w2=("w2", "sum")).reset_index()
    agg["phi"] = np.where(agg["n"] >= 2, agg["z2"] / agg["n"], np.nan)
    excess = agg["n"] * agg["phi"] - (agg["n"] - 1)
    denom = agg["w"] - agg["w2"] / agg["w"]
    agg["tau2"] = np.where((agg["n"] >= 2) & (excess > 0) & (denom > 0), excess / denom.where(denom > 0), 0.0)
    return agg[keys + ["phi", "tau2"]]


def add_funnel(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Add ``phi, tau2``, the adjusted limits and the position to every row of ``table``
    (columns ``keys``, ``O``, ``E``); one overdispersion estimate per ``keys`` group.

    ``position``: ``boven`` / ``onder`` outside the adjusted 99.8% limits, ``binnen``
    inside them, empty when ``E < MIN_EXPECTED``. ``beyond_chance`` is True for the first two.
    """
    out = table.merge(overdispersion_by(table, keys), on=keys, how="left")
    out["tau2"] = out["tau2"].fillna(0.0)
    ratio = np.where(out["E"] > 0, out["O"] / out["E"].where(out["E"] > 0), np.nan)
    for level, name in zip(FUNNEL_LEVELS, ("95", "998")):
        lo, hi = funnel_limits(out["E"], out["tau2"].to_numpy(), level)
        out[f"funnel_lo_{name}"], out[f"funnel_hi_{name}"] = lo, hi
    shown = out["E"] >= MIN_EXPECTED
    above = shown & (ratio > out["funnel_hi_998"])
    below = shown & (ratio < out["funnel_lo_998"])
    out["position"] = np.select([above, below, shown], ["boven", "onder", "binnen"], default="")
    out["beyond_chance"] = above | below
    out["outside_95"] = shown & ((ratio > out["funnel_hi_95"]) | (ratio < out["funnel_lo_95"]))
    return out


# ---------------------------------------------------------------- peers
def peer_band(table: pd.DataFrame, keys: list[str], value: str = "rate") -> pd.DataFrame:
    """Care-group median, P10 and P90 of ``value`` per ``keys`` (linear interpolation, as
    PERCENTILE_CONT). Only rates built on a count that may be shown (0 or at least
    ``MIN_CELL``) take part, and the band needs ``MIN_PRACTICES_FOR_PEERS`` of them.

    >>> t = pd.DataFrame({"m": "x", "rate": [1., 2., 3., 4., 5.], "O": [10, 20, 30, 40, 50]})
    >>> peer_band(t, ["m"]).round(2).values.tolist()
    [['x', 3.0, 1.4, 4.6, 5]]
    """
    ok = table[table[value].notna() & ((table["O"] == 0) | (table["O"] >= MIN_CELL))]
    g = ok.groupby(keys)[value]
    band = pd.DataFrame({"median": g.median(), "p10": g.quantile(0.10), "p90": g.quantile(0.90),
                         "peer_practices": g.count()}).reset_index()
    few = band["peer_practices"] < MIN_PRACTICES_FOR_PEERS
    band.loc[few, ["median", "p10", "p90"]] = np.nan
    return band
