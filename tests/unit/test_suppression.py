"""Small-number rules for shared figures: a withheld rate never enters a peer figure."""

from __future__ import annotations

import pandas as pd

from helpers.cube.indicators import peer_statistics
from helpers.suppression import PEER_RULE, RULE_TEXT, peer_rates, rate_publishable, suppress_rate


def _rows(rates: list[tuple[int, int]]) -> pd.DataFrame:
    df = pd.DataFrame({"practice_agb": [f"0100000{i}" for i in range(len(rates))],
                       "indicator_id": "dm2_hba1c_gemeten", "low_is_good": False,
                       "numerator": [n for n, _ in rates], "denominator": [d for _, d in rates]})
    df["pct"] = 100.0 * df["numerator"] / df["denominator"]
    return df


def test_rate_publishable_agrees_with_suppress_rate():
    num = pd.Series([0, 3, 50, 95, 50, 10, 20])
    den = pd.Series([50, 100, 100, 100, 9, 20, 0])
    expected = [suppress_rate(n, d) is not None for n, d in zip(num, den)]
    assert rate_publishable(num, den).tolist() == expected == [True, False, True, False, False, True, False]
    assert peer_rates(num, den).isna().tolist() == [not e for e in expected]


def test_median_is_never_a_withheld_rate():
    # seven practices; the middle one's rate (3 of 50 = 6%) is withheld: 3 is a small count.
    # Over all seven rates the care-group median would be exactly that 6%.
    rates = [(10, 500), (20, 500), (25, 500), (3, 50), (40, 500), (45, 500), (50, 500)]
    df = _rows(rates)
    assert df["pct"].median() == 6.0 and suppress_rate(3, 50) is None
    out = peer_statistics(df)
    assert (out["peer_n"] == 6).all()
    assert out["peer_median"].iloc[0] == (5.0 + 8.0) / 2
    assert not (out["peer_median"] == 6.0).any()
    for col in ("peer_p10", "peer_p90"):
        assert not (out[col] == 6.0).any()
    withheld = out[out["numerator"] == 3].iloc[0]
    assert pd.isna(withheld["rank"]), "a withheld rate is not ranked either"
    assert out["rank"].dropna().sort_values().tolist() == [1, 2, 3, 4, 5, 6]


def test_too_few_publishable_rates_give_no_peer_figure():
    # five practices, but two rates are withheld (small numerator, small complement)
    df = _rows([(20, 100), (30, 100), (3, 100), (96, 100), (50, 100)])
    out = peer_statistics(df)
    assert (out["peer_n"] == 3).all()
    assert out[["peer_median", "peer_p10", "peer_p90"]].isna().all().all()


def test_rule_is_in_the_stamp():
    assert PEER_RULE in RULE_TEXT


def test_figure_dots_follow_the_peer_rule(demo_cube):
    """The indicator figure of one practice shows other practices' rates only where the
    care-group figures are shown, and never a withheld rate."""
    from helpers.cube import read_slice
    from helpers.reports.his_analyse import indicator_points, load
    from helpers.suppression import MIN_PRACTICES_FOR_PEERS
    data = load(demo_cube, read_slice(demo_cube, "practices")["practice_agb"].iloc[0])
    ind = data.indicators
    others = ind[ind["practice_agb"] != data.practice["practice_agb"]]
    withheld = {(r.indicator_id, 100.0 * r.numerator / r.denominator) for r in others.itertuples()
                if r.denominator and suppress_rate(r.numerator, r.denominator) is None}
    few = set(ind.loc[ind["peer_n"].fillna(0) < MIN_PRACTICES_FOR_PEERS, "indicator_id"])
    shown = 0
    for programme in ind["programme"].unique():
        _own, dots = indicator_points(data, programme)
        dots = dots.dropna()
        shown += len(dots)
        assert not set(dots["indicator_id"]) & few
        assert not {(i, p) for i, p in zip(dots["indicator_id"], dots["pct"])} & withheld
    assert shown > 0
