"""The praktijkspiegel's statistics (helpers.mirror.stats) against published tables and
values computed by hand (the arithmetic is written out beside each figure)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from helpers.mirror import stats
from helpers.suppression import MIN_CELL, MIN_PRACTICES_FOR_PEERS


# ---------------------------------------------------------------- exact Poisson
@pytest.mark.parametrize("observed, lo, hi", [
    # Daly L. (1992), Simple SAS macros for the calculation of exact binomial and Poisson
    # confidence limits, Comput Biol Med 22:351-361, Table 2 (also the standard tables of
    # the Documenta Geigy): exact two-sided 95% limits for a Poisson count
    (1, 0.0253, 5.572),
    (10, 4.795, 18.390),
    (50, 37.11, 65.92),
    (100, 81.36, 121.63),
    # O = 0: lower limit 0, upper 3.689 (R epitools::pois.exact documentation)
    (0, 0.0, 3.689),
])
def test_exact_poisson_limits_match_the_published_tables(observed, lo, hi):
    got_lo, got_hi = stats.poisson_interval(np.array([observed]))
    assert got_lo[0] == pytest.approx(lo, abs=5e-3 if lo > 10 else 5e-4)
    assert got_hi[0] == pytest.approx(hi, abs=5e-3 if hi > 10 else 5e-4)


def test_ratio_interval_divides_the_count_limits_by_e_and_needs_e_of_ten():
    # O = 10, E = 12.5: O/E 0.8, interval 4.795/12.5 .. 18.390/12.5 = 0.3836 .. 1.4712
    r, lo, hi = stats.ratio_interval([10, 10], [12.5, 9.99])
    assert (r[0], lo[0], hi[0]) == pytest.approx((0.8, 0.3836, 1.4712), abs=1e-4)
    assert np.isnan(r[1]) and np.isnan(lo[1]) and np.isnan(hi[1])  # E < 10: no ratio
    assert stats.MIN_EXPECTED == 10


# ---------------------------------------------------------------- standardisation
def test_indirect_standardisation_by_hand():
    # Two practices, two age bands, men and women. Care-group rates per stratum:
    #   0-4 M: (2+6)/(10+30) = 0.2     0-4 V: (3+1)/(20+20) = 0.1
    #   85+ M: (5+5)/(5+5)   = 1.0     85+ V: (0+8)/(10+10) = 0.4
    # E(a) = 10*0.2 + 20*0.1 + 5*1.0 + 10*0.4 = 13.0   O(a) = 2+3+5+0 = 10
    # E(b) = 30*0.2 + 20*0.1 + 5*1.0 + 10*0.4 = 17.0   O(b) = 6+1+5+8 = 20
    s = pd.DataFrame({
        "m": "x", "p": list("aaaabbbb"), "age_band": ["0-4", "0-4", "85+", "85+"] * 2,
        "sex": ["M", "V"] * 4, "O": [2, 3, 5, 0, 6, 1, 5, 8], "D": [10, 20, 5, 10, 30, 20, 5, 10.0],
    })
    out = stats.standardise(s, ["m"], ["p"]).set_index("p")
    assert out.loc["a", ["O", "D", "E"]].tolist() == pytest.approx([10, 45, 13.0])
    assert out.loc["b", ["O", "D", "E"]].tolist() == pytest.approx([20, 65, 17.0])
    assert out["E"].sum() == pytest.approx(out["O"].sum())  # with no sex O, E adds up to O


def test_sex_o_takes_the_pooled_rate_of_its_age_band():
    # 25-44: M 4/10, V 6/10, O 1/5; pooled over all sexes (4+6+1)/(10+10+5) = 0.44
    s = pd.DataFrame({"m": "x", "p": ["a", "a", "b"], "age_band": "25-44", "sex": ["M", "O", "V"],
                      "O": [4, 1, 6], "D": [10.0, 5.0, 10.0]})
    ref = stats.reference_rates(s, ["m"]).set_index("sex")
    assert ref.loc["O", "ref_rate"] == pytest.approx(0.44)
    assert ref.loc["M", "ref_rate"] == pytest.approx(0.4)
    out = stats.standardise(s, ["m"], ["p"]).set_index("p")
    assert out.loc["a", "E"] == pytest.approx(10 * 0.4 + 5 * 0.44)


def test_age_band_sql_covers_the_eight_bands():
    import duckdb
    ages = [0, 4, 5, 14, 15, 24, 25, 44, 45, 64, 65, 74, 75, 84, 85, 103]
    got = duckdb.sql(f"SELECT {stats.age_band_sql('a')} FROM unnest({ages}) t(a)").fetchall()
    assert [g[0] for g in got] == [b for b in stats.AGE_BAND_LABELS for _ in range(2)]


# ---------------------------------------------------------------- overdispersion and funnel
def test_overdispersion_by_hand():
    # O = 10, 20, 30, 40 with E = 20 each: z = sqrt(20) * ln(O/20)
    #   = -3.0998, 0, 1.8133, 3.0998. Winsorised at the 10th / 90th percentile (linear):
    #   P10 = -3.0998 + 0.3 * 3.0998 = -2.1699; P90 = 1.8133 + 0.7 * 1.2865 = 2.7139
    #   z = -2.1699, 0, 1.8133, 2.7139; phi = (4.7085 + 0 + 3.2880 + 7.3653) / 4 = 3.8404
    #   N*phi = 15.3617 > N-1 = 3; w = E: tau2 = (15.3617 - 3) / (80 - 1600/80) = 0.20603
    phi, tau2 = stats.overdispersion([10, 20, 30, 40], [20.0] * 4)
    assert phi == pytest.approx(3.8404, abs=1e-4)
    assert tau2 == pytest.approx(0.20603, abs=1e-5)
    grouped = stats.overdispersion_by(pd.DataFrame({"m": "x", "O": [10, 20, 30, 40], "E": [20.0] * 4}), ["m"])
    assert grouped[["phi", "tau2"]].iloc[0].tolist() == pytest.approx([phi, tau2])


def test_no_overdispersion_when_the_spread_is_within_chance():
    # O = 19, 20, 21 with E = 20: z = sqrt(20)*ln(0.95), 0, sqrt(20)*ln(1.05) = -0.2294, 0, 0.2182;
    # N*phi is far below N-1 = 2, so tau2 = 0 and the limits are the plain Poisson ones
    phi, tau2 = stats.overdispersion([19, 20, 21], [20.0] * 3)
    assert phi < 1 and tau2 == 0.0


def test_units_below_ten_expected_or_without_events_stay_out_of_the_estimate():
    with_small = stats.overdispersion([10, 20, 30, 40, 0, 50], [20.0] * 4 + [20.0, 5.0])
    assert with_small == pytest.approx(stats.overdispersion([10, 20, 30, 40], [20.0] * 4))


def test_funnel_limits_by_hand():
    # E = 100, tau2 = 0: exp(+-1.959964 * sqrt(1/100)) = 0.8220 .. 1.2165
    lo, hi = stats.funnel_limits(np.array([100.0]), 0.0, 0.95)
    assert (lo[0], hi[0]) == pytest.approx((0.8220, 1.2165), abs=1e-4)
    # 99.8%: z = 3.0902; exp(+-0.30902) = 0.7342 .. 1.3621
    lo, hi = stats.funnel_limits(np.array([100.0]), 0.0, 0.998)
    assert (lo[0], hi[0]) == pytest.approx((0.7342, 1.3621), abs=1e-4)
    # widened: tau2 = 0.20603 gives exp(+-1.959964 * sqrt(0.01 + 0.20603)) = exp(+-0.91097)
    lo, hi = stats.funnel_limits(np.array([100.0]), 0.20603, 0.95)
    assert (lo[0], hi[0]) == pytest.approx((math.exp(-0.91097), math.exp(0.91097)), rel=1e-4)


def test_beyond_chance_only_outside_the_adjusted_998_limits():
    # eleven practices with E = 100: nine at O/E 1.0 (no overdispersion left after
    # winsorising), one at 1.5 (above 1.3621), one at 1.25 (outside 95%, inside 99.8%),
    # and one with E = 9 and O/E 3 (no ratio shown, never flagged)
    t = pd.DataFrame({"m": "x", "p": range(12), "O": [100] * 9 + [150, 125, 27], "E": [100.0] * 11 + [9.0]})
    out = stats.add_funnel(t, ["m"]).set_index("p")
    assert out.loc[0, "tau2"] == 0.0
    assert out.loc[9, "position"] == "boven" and out.loc[9, "beyond_chance"]
    assert out.loc[10, "outside_95"] and not out.loc[10, "beyond_chance"] and out.loc[10, "position"] == "binnen"
    assert out.loc[11, "position"] == "" and not out.loc[11, "beyond_chance"]
    assert out["beyond_chance"].sum() == 1


def test_overdispersion_widens_the_limits_so_a_spread_care_group_flags_less():
    # ratios 0.6 .. 1.5 over E = 400: plain 99.8% limits (0.857 .. 1.167) would flag most;
    # the additive random effect takes the spread between practices into account
    o = [240, 280, 320, 360, 400, 440, 480, 520, 560, 600]
    t = pd.DataFrame({"m": "x", "p": range(10), "O": o, "E": [400.0] * 10})
    out = stats.add_funnel(t, ["m"])
    assert out["tau2"].iloc[0] > 0
    plain_lo, plain_hi = stats.funnel_limits(np.array([400.0]), 0.0, 0.998)
    plain_flags = sum((x / 400 > plain_hi[0]) or (x / 400 < plain_lo[0]) for x in o)
    assert out["beyond_chance"].sum() < plain_flags


# ---------------------------------------------------------------- peers
def test_peer_band_median_and_deciles_over_publishable_rates():
    # rates 1..6; the practice with O = 3 (a small count) does not take part:
    # 1, 2, 4, 5, 6 -> median 4, P10 = 1 + 0.4 * 1 = 1.4, P90 = 5 + 0.6 * 1 = 5.6
    t = pd.DataFrame({"m": "x", "rate": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "O": [10, 20, 3, 40, 50, 60]})
    band = stats.peer_band(t, ["m"]).iloc[0]
    assert (band["median"], band["p10"], band["p90"]) == pytest.approx((4.0, 1.4, 5.6))
    assert band["peer_practices"] == 5
    assert 0 < 3 < MIN_CELL


def test_peer_band_needs_enough_practices():
    n = MIN_PRACTICES_FOR_PEERS - 1
    t = pd.DataFrame({"m": "x", "rate": np.arange(1.0, n + 1), "O": [MIN_CELL] * n})
    assert np.isnan(stats.peer_band(t, ["m"]).iloc[0]["median"])
