"""Complementary (secondary) suppression: a withheld small count cannot be worked out from a
total by differencing (``suppression.suppress_complementary``, ``SharedTable.margins``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers.cube.shared import SHARED_DIR, INDEX, read_shared, suppress_table, write_shared
from helpers.errors import SpiegelError
from helpers.reports import SharedTable
from helpers.suppression import MIN_CELL, MIN_WITHHELD_IN_GROUP, WITHHELD_TEXT, is_small, suppress_complementary

SMALL = MIN_CELL - 7     # 3 with the default rule: withheld as <10


def _hagro(counts: list[int], hagro: str = "A") -> pd.DataFrame:
    return pd.DataFrame({"hagro": hagro, "practice": [f"p{i}" for i in range(len(counts))], "O": counts})


def test_one_small_cell_in_a_group_withholds_the_next_smallest_two():
    df = _hagro([SMALL, 400, 25, 60])
    secondary = suppress_complementary(df, "O", ("hagro",))
    # 25 and 60: the smallest cells that are shown; with only 25 withheld beside the small one,
    # the practice of 25 (which knows its own figure) could work the small one out
    assert MIN_WITHHELD_IN_GROUP == 3
    assert secondary.tolist() == [False, False, True, True]
    assert suppress_complementary(df, "O", ()).tolist() == [False, False, True, True]   # () : the whole table


def test_the_total_no_longer_gives_the_small_cell_away(tmp_path):
    counts = [SMALL, 400, 25, 60]
    total = sum(counts)   # the hagro's total, published elsewhere (or added up by a reader)
    table = SharedTable("per_practice", keys=("hagro", "practice"), counts=("O",))
    plain = suppress_table(_hagro(counts), table)
    assert total - plain["O"].sum() == SMALL, "primary suppression alone: total minus the rest is the small cell"

    protected = SharedTable("per_practice", keys=("hagro", "practice"), counts=("O",), margins=(("hagro",),))
    write_shared(tmp_path / SHARED_DIR, [protected], {"per_practice": _hagro(counts)})
    shown = read_shared(tmp_path, "per_practice")
    assert shown["O"].isna().sum() == 3
    assert total - shown["O"].sum() == SMALL + 25 + 60, "only the sum of three withheld cells is left"
    assert shown["O_shown"].tolist() == [f"<{MIN_CELL}", "400", WITHHELD_TEXT, WITHHELD_TEXT]


def test_two_small_cells_need_a_third():
    # the practice of the second small cell knows its own figure: total - 25 - 60 - its own
    # would give the first away, so the smallest shown cell is withheld with them
    df = _hagro([SMALL, SMALL + 1, 25, 60])
    assert suppress_complementary(df, "O", ("hagro",)).tolist() == [False, False, True, False]
    table = SharedTable("t", keys=("hagro", "practice"), counts=("O",), margins=(("hagro",),))
    assert suppress_table(df, table)["O"].isna().tolist() == [True, True, True, False]
    assert not suppress_complementary(_hagro([SMALL, SMALL + 1, SMALL + 2, 60]), "O", ("hagro",)).any()


def test_groups_are_separate_and_zeros_are_not_a_complement():
    df = pd.concat([_hagro([SMALL, 0, 12, 90], "A"), _hagro([40, 50], "B"), _hagro([SMALL, 0], "C")],
                   ignore_index=True)
    secondary = suppress_complementary(df, "O", ("hagro",))
    # A: 0 is no complement (a withheld cell is 0 or >= MIN_CELL, so a withheld 0 gives the small
    # one away all the same): 12 and 90 go; B has no small cell; C has nothing to withhold but
    # a 0 (its total is the small count itself, small wherever it is published)
    assert df.loc[secondary, ["hagro", "O"]].values.tolist() == [["A", 12], ["A", 90]]


def test_overlapping_row_and_column_margins_iterate_until_stable():
    # practice x measure, with a total per practice (row) and per measure (column)
    grid = {"p1": [SMALL, 30, 50], "p2": [20, 31, 70], "p3": [80, 90, 15]}
    df = pd.DataFrame([(p, m, v) for p, row in grid.items() for m, v in zip(("a", "b", "c"), row)],
                      columns=["practice", "measure", "O"])
    secondary = suppress_complementary(df, "O", (("practice",), ("measure",)))
    withheld = df["O"].map(is_small) | secondary
    cells = set(map(tuple, df.loc[withheld, ["practice", "measure"]].values.tolist()))
    # every row and column that holds a withheld cell holds at least three (or all of its cells)
    assert ("p1", "a") in cells and len(cells) >= MIN_WITHHELD_IN_GROUP
    for margin in ("practice", "measure"):
        per_group = withheld.groupby(df[margin]).sum()
        size = df.groupby(margin).size()
        assert ((per_group == 0) | (per_group >= MIN_WITHHELD_IN_GROUP) | (per_group == size)).all(), per_group


@pytest.mark.parametrize("seed", range(20))
def test_no_group_is_left_with_a_single_withheld_cell(seed):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame([(p, m) for p in range(6) for m in range(5)], columns=["practice", "measure"])
    df["hagro"] = df["practice"] % 2
    df["O"] = np.where(rng.random(len(df)) < 0.2, rng.integers(1, MIN_CELL, len(df)), rng.integers(0, 200, len(df)))
    margins = (("hagro", "measure"), ("practice",))
    withheld = df["O"].map(is_small) | suppress_complementary(df, "O", margins)
    for margin in margins:
        g = df.groupby(list(margin))
        n = withheld.groupby([df[c] for c in margin]).sum()
        shown_positive = (df["O"].gt(0) & ~withheld).groupby([df[c] for c in margin]).sum()
        assert ((n == 0) | (n >= MIN_WITHHELD_IN_GROUP) | (shown_positive == 0)).all(), (seed, margin)
        assert len(n) == g.ngroups


def test_rates_and_derived_columns_go_with_their_withheld_count(tmp_path):
    table = SharedTable("spiegel_like", keys=("hagro", "practice", "measure"), counts=("O", "D"),
                        rates=(("pct", "O", "D"),), derived=(("E", "O"), ("ratio", "O")),
                        margins=(("hagro", "measure"),))
    df = pd.DataFrame({"hagro": "A", "practice": ["p1", "p2", "p3", "p4"], "measure": "m",
                       "O": [SMALL, 40, 25, 90], "D": [200, 300, 250, 400], "E": [4.2, 38.0, 27.5, 88.0],
                       "ratio": [0.7, 1.05, 0.9, 1.02]})
    write_shared(tmp_path / SHARED_DIR, [table], {"spiegel_like": df})
    out = read_shared(tmp_path, "spiegel_like").set_index("practice")   # the stamp still verifies
    assert out["O_shown"].tolist() == [f"<{MIN_CELL}", WITHHELD_TEXT, WITHHELD_TEXT, "90"]
    for column in ("O", "pct", "E", "ratio"):
        assert out.loc[["p1", "p2", "p3"], column].isna().all(), column
        assert out.loc["p4", column] == pytest.approx({"O": 90, "pct": 22.5, "E": 88.0, "ratio": 1.02}[column])
    assert out["D"].notna().all(), "D has no small cell: its margin needs nothing withheld"
    index = json.loads((tmp_path / SHARED_DIR / INDEX).read_text())
    assert index["spiegel_like"]["margins"] == [["hagro", "measure"]]


def test_without_margins_nothing_changes():
    table = SharedTable("t", keys=("hagro", "practice"), counts=("O",))
    out = suppress_table(_hagro([SMALL, 400, 25]), table)
    assert out["O"].isna().tolist() == [True, False, False] and WITHHELD_TEXT not in out["O_shown"].tolist()


@pytest.mark.parametrize("margins", [(("region",),), ("hagro",)])
def test_a_margin_must_name_key_columns(margins):
    table = SharedTable("t", keys=("hagro", "practice"), counts=("O",), margins=margins)
    with pytest.raises(SpiegelError, match="margin .* must be a tuple of key columns"):
        suppress_table(_hagro([SMALL, 400]), table)


def test_an_identity_withholds_one_more_member(tmp_path):
    """not awarded = declared - awarded: a small 'not awarded' with both other members shown
    would be given back by their difference; the declared count is withheld with it."""
    table = SharedTable("money", keys=("practice",), counts=("declared", "awarded", "rejected"),
                        derived=(("paid_eur", "awarded"),), identities=(("rejected", "declared", "awarded"),))
    df = pd.DataFrame({"practice": ["p1", "p2"], "declared": [664, 120], "awarded": [657, 100],
                       "rejected": [7, 20], "paid_eur": [100.0, 50.0]})
    out = suppress_table(df, table).set_index("practice")
    assert pd.isna(out.loc["p1", "rejected"]) and pd.isna(out.loc["p1", "declared"])
    assert out.loc["p1", "awarded"] == 657 and out.loc["p1", "paid_eur"] == 100.0
    assert out.loc["p1", "declared_shown"] == WITHHELD_TEXT
    assert out.loc["p2"][["declared", "awarded", "rejected"]].tolist() == [120, 100, 20]


def test_a_derived_figure_on_two_counts_goes_with_either():
    table = SharedTable("fa", keys=("practice",), counts=("patients", "visits"),
                        derived=(("mean_visits", ("patients", "visits")),))
    df = pd.DataFrame({"practice": ["p1", "p2"], "patients": [23, 40], "visits": [3, 80], "mean_visits": [0.13, 2.0]})
    out = suppress_table(df, table).set_index("practice")
    assert pd.isna(out.loc["p1", "mean_visits"]) and out.loc["p2", "mean_visits"] == 2.0
