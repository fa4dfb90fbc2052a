"""An attack on every shared table of the demo's quarter cube, as a reader of the regional
report or the hagro pack could make it with the published figures alone:

- within each declared margin (the practices of a region adding up to its published total), a
  group with a withheld count holds at least ``MIN_WITHHELD_IN_GROUP`` of them (or every
  non-zero one), so neither the total nor a practice that knows its own figure gives one away;
- no row's identity (not awarded = declared - awarded, ...) leaves exactly one member withheld;
- a derived figure (a euro amount, a mean) is withheld wherever a count it rests on is;
- two rolling years of one practice and measure published less than a year apart (sharing
  quarters) do not differ by a small count;
- no count from 1 to 9 is stored."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from helpers.cube.shared import INDEX, SHARED_DIR, SharedCube
from helpers.quarter import Quarter
from helpers.suppression import MIN_CELL, MIN_WITHHELD_IN_GROUP


@pytest.fixture(scope="module")
def tables(demo_cube):
    shared = SharedCube(demo_cube)
    index = json.loads((demo_cube / SHARED_DIR / INDEX).read_text())
    assert {"regio_money_practice", "regio_indicators", "spiegel_hagro", "regio_veelgebruikers",
            "findings_resolution"} <= set(index)
    return {name: (shared.read(name), spec) for name, spec in index.items()}


def test_no_small_count_is_stored(tables):
    for name, (df, spec) in tables.items():
        for c in spec["counts"]:
            v = df[c].dropna()
            assert not ((v > 0) & (v < MIN_CELL)).any(), (name, c)


def test_every_margin_group_with_a_withheld_count_holds_enough_of_them(tables):
    checked = 0
    for name, (df, spec) in tables.items():
        for margin in spec.get("margins", []):
            for c in spec["counts"]:
                hidden = df[c].isna()
                candidates = hidden | (df[c].fillna(0) > 0)
                g = pd.DataFrame({"h": hidden, "n": candidates}).groupby([df[k] for k in margin], dropna=False).sum()
                bad = g[(g["h"] > 0) & (g["h"] < MIN_WITHHELD_IN_GROUP) & (g["h"] < g["n"])]
                assert bad.empty, (name, margin, c, bad.head(3).to_dict())
                checked += int((g["h"] > 0).sum())
    assert checked > 0, "the demo withholds something somewhere (else this test proves nothing)"


def test_no_identity_leaves_one_member_withheld(tables):
    for name, (df, spec) in tables.items():
        derived = dict((d, None) for d in spec.get("derived", []))
        for identity in spec.get("identities", []):
            hidden = []
            for member in identity:
                if member in spec["counts"] or member in derived:
                    hidden.append(df[member].isna())
                else:   # plain: always shown
                    hidden.append(pd.Series(False, index=df.index))
            lone = sum(h.astype(int) for h in hidden) == 1
            assert not lone.any(), (name, identity, df[lone].head(3).to_dict())


def test_euro_amounts_and_means_go_with_their_counts(tables):
    df, _ = tables["regio_money_practice"]
    assert (df["paid_eur"].isna() | df["awarded"].notna()).all()
    assert (df["exposure_eur"].isna() | df["over_cap"].notna()).all()
    fa, _ = tables["regio_veelgebruikers"]
    for c in ("consult", "telefonisch", "visite", "e_consult"):
        assert (fa[f"mean_{c}"].isna() | (fa[c].notna() & fa["frequent_attenders"].notna())).all(), c


def test_counts_withheld_together_go_together(tables):
    checked = 0
    for name, (df, spec) in tables.items():
        for group in spec.get("together", []):
            hidden = df[list(group)].isna()
            assert (hidden.all(axis=1) | ~hidden.any(axis=1)).all(), (name, group, df[hidden.any(axis=1)].head(3))
            checked += 1
    assert checked, "findings_resolution declares a together group"


def _quarter_number(text: str) -> int:
    q = Quarter.parse(text)
    return q.year * 4 + q.number


def test_rolling_years_of_one_practice_cannot_be_differenced(tables):
    """A table with a rolling year (the twelve months up to the quarter) per practice, measure
    and quarter: two published years less than a year apart share quarters, so their difference
    is a quarter's count minus the count of the same quarter a year earlier (O(k) - O(k+1) =
    c_q - c_{q-4}), a small count wherever one of them is known to be 0 (a practice whose data
    start inside the windows, a new code). No such difference may be 1..9 (the verkenning
    publishes per practice only non-overlapping years)."""
    compared, leaks = 0, []
    for name, (df, spec) in tables.items():
        if not {"practice_agb", "measure", "quarter"} <= set(spec["keys"]) or "O" not in spec["counts"]:
            continue
        shown = df[df["O"].notna()].assign(n=lambda d: d["quarter"].astype(str).map(_quarter_number))
        for (agb, measure), g in shown.groupby(["practice_agb", "measure"]):
            years = sorted(zip(g["n"], g["O"].astype(int)))
            for i, (a, o_a) in enumerate(years):
                for b, o_b in years[i + 1:]:
                    compared += 1
                    if b - a < 4 and 0 < abs(o_b - o_a) < MIN_CELL:
                        leaks.append((name, agb, measure, a, b, o_a, o_b))
    assert compared > 0, "a rolling-year table publishes more than one year per practice (else nothing is tested)"
    assert not leaks, (len(leaks), leaks[:3])
