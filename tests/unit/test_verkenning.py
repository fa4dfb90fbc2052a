"""The exploration module (``helpers.reports.verkenning``) on the demo's quarter cube: it reads
only shared tables, its own table withholds in the current year exactly what the hagro pack
withholds and shows per practice only rolling years that share no quarter, the deciles of every
rolling year follow the praktijkspiegel's peer rule, the selection, the legends, the CSV export
for Excel, and a new measure from a file."""

from __future__ import annotations

import csv
import io
import shutil

import numpy as np
import pandas as pd
import pytest

from helpers.config import PARAMETERS_DIR
from helpers.cube import read_slice
from helpers.cube.shared import SharedCube
from helpers.errors import ParameterError
from helpers.reports import REPORTS
from helpers.reports import verkenning as vk
from helpers.suppression import MIN_CELL, MIN_PRACTICES_FOR_PEERS


@pytest.fixture(scope="module")
def data(demo_cube):
    return vk.load(SharedCube(demo_cube))


def test_the_current_year_withholds_exactly_what_the_hagro_pack_withholds(demo_cube, demo_quarter):
    """Two shared tables of one figure must not together show what each withholds."""
    shared = SharedCube(demo_cube)
    mine = shared.read(vk.MIRROR_TABLE)
    mine = mine[mine["quarter"] == str(demo_quarter)].set_index(["practice_agb", "measure"]).sort_index()
    hagro = shared.read("spiegel_hagro").set_index(["practice_agb", "measure"]).sort_index()
    assert len(hagro) and list(hagro.index) == list(mine.index)
    assert (mine["O_shown"] == hagro["O_shown"]).all()
    assert (mine["O"].isna() == hagro["O"].isna()).all()
    pd.testing.assert_series_equal(mine["ratio"].astype(float), hagro["ratio"].astype(float), check_names=False)
    # per practice two rolling years that share no quarter (this year and the year before), and no
    # small count stored in either
    full = shared.read(vk.MIRROR_TABLE)
    year_before = demo_quarter
    for _ in range(4):
        year_before = year_before.previous()
    assert sorted(full["quarter"].unique()) == [str(year_before), str(demo_quarter)]
    o = full["O"].dropna()
    assert not ((o > 0) & (o < MIN_CELL)).any()


def test_the_deciles_of_every_rolling_year_follow_the_praktijkspiegel_peer_rule(demo_cube, demo_quarter):
    """The care group's deciles (the trend) for all eight rolling years, with no practice figure,
    and their median, P10 and P90 the praktijkspiegel's (``stats.peer_band`` on the unsuppressed mirror)."""
    table = SharedCube(demo_cube).read(vk.DECILES_TABLE)
    assert list(table.columns) == [*vk.DECILES_KEYS, *vk.DECILE_LABELS, "practices"]   # no practice key
    assert table["quarter"].nunique() == 8 and table["quarter"].max() == str(demo_quarter)
    assert not table.duplicated(list(vk.DECILES_KEYS)).any()
    mirror = read_slice(demo_cube, "mirror")
    mirror["quarter"] = [str(vk.Quarter.containing(pd.Timestamp(d).date())) for d in mirror["window_end"]]
    peer = mirror.drop_duplicates(["measure", "quarter"]).set_index(["measure", "quarter"]).sort_index()
    mine = table.set_index(["measure", "quarter"]).sort_index()
    assert list(mine.index) == list(peer.index)
    for label, column in (("P10", "p10"), ("P50", "median"), ("P90", "p90")):
        np.testing.assert_allclose(mine[label].astype(float), peer[column].astype(float), rtol=1e-9, equal_nan=True)
    assert (mine["practices"] == peer["peer_practices"].fillna(0).astype(int)).all()
    few = mine["practices"] < MIN_PRACTICES_FOR_PEERS
    assert mine.loc[few, list(vk.DECILE_LABELS)].isna().all().all()
    assert mine.loc[~few, "P50"].notna().all() and (~few).any()


def test_the_module_reads_shared_tables_only(data):
    assert vk.MIRROR_TABLE in [t.name for t in REPORTS["verkenning"].prepare.shared]
    assert REPORTS["verkenning"].prepare.tables == ()          # nothing practice-level in the cube
    assert set(data.mirror.columns) <= {*vk.MIRROR_KEYS, "O", "O_shown", *vk.MIRROR_DERIVED, "tau2"}
    assert vk.DECILES_TABLE in [t.name for t in REPORTS["verkenning"].prepare.shared]
    spec = next(t for t in REPORTS["verkenning"].prepare.shared if t.name == vk.DECILES_TABLE)
    assert spec.keys == vk.DECILES_KEYS and spec.plain == (*vk.DECILE_LABELS, "practices")


def test_selections(data):
    p = data.practices
    all_ = vk.selected_practices(data, vk.default_selection(data))
    assert sorted(all_) == sorted(p["practice_agb"]) and len(all_) == 12
    hagro = sorted(p["hagro"].unique())[0]
    sel = vk.Selection(data.quarter, "hagro", (hagro,), vk.DEFAULT_MEASURE)
    assert set(vk.selected_practices(data, sel)) == set(p.loc[p["hagro"] == hagro, "practice_agb"])
    region = sorted(p["region"].unique())[0]
    sel = vk.Selection(data.quarter, "regio", (region,), vk.DEFAULT_MEASURE)
    assert set(vk.selected_practices(data, sel)) == set(p.loc[p["region"] == region, "practice_agb"])
    two = tuple(p["practice_agb"][:2])
    sel = vk.Selection(data.quarter, "praktijken", two, vk.DEFAULT_MEASURE)
    assert vk.selected_practices(data, sel) == list(two)
    points, limits, own, _ = vk.funnel_frames(data, sel)
    assert own == vk.SEL and (points["practice_agb"] == vk.SEL).sum() == 2
    panels = vk.trend_panels(data, sel)
    assert len(panels) == 2 and len(vk.selection_table(data, sel)) == 2
    # the practice at the two published years, the care group's median at all eight
    rows = panels[0][0]
    assert len(rows) == 8 and rows["median"].notna().all()
    assert list(rows.loc[rows["rate"].notna(), "window_label"]) == data.quarters(vk.DEFAULT_MEASURE)
    with pytest.raises(ParameterError, match="selection kind 'wijk'"):
        vk.selected_practices(data, vk.Selection(data.quarter, "wijk", (), vk.DEFAULT_MEASURE))


def test_deciles_follow_the_peer_rule(data):
    assert all(np.isnan(vk.deciles(pd.Series([1.0] * (MIN_PRACTICES_FOR_PEERS - 1)))))
    assert vk.deciles(pd.Series([1.0, 2.0, 3.0, 4.0, 5.0]))[4] == 3.0
    band = vk.band(data, vk.DEFAULT_MEASURE)
    assert len(band) == 8 and set(data.quarters(vk.DEFAULT_MEASURE)) < set(band["quarter"])
    assert (band[list(vk.DECILE_LABELS)].diff(axis=1).iloc[:, 1:] >= 0).all().all()   # P10 <= ... <= P90
    assert len(vk.band_table(data, vk.default_selection(data))) == 8


def test_legends_name_this_practice_only_for_one_practice(data):
    """A hagro, a region, several practices or the whole care group is no "Deze praktijk"."""
    p = data.practices
    one = vk.Selection(data.quarter, "praktijken", (p["practice_agb"].iloc[0],), vk.DEFAULT_MEASURE)
    many = [vk.Selection(data.quarter, "hagro", (p["hagro"].iloc[0],), vk.DEFAULT_MEASURE),
            vk.Selection(data.quarter, "regio", (p["region"].iloc[0],), vk.DEFAULT_MEASURE),
            vk.Selection(data.quarter, "praktijken", tuple(p["practice_agb"][:2]), vk.DEFAULT_MEASURE),
            vk.default_selection(data)]
    for sel in many:
        ui = vk.Explorer(data, sel, live=False)
        svg = ui.funnel_figure().svg() + ui.trend_figure().svg()
        assert "Deze praktijk" not in svg, sel.kind
        assert vk.trend_label(sel) in ui.trend_figure().svg()
    ui = vk.Explorer(data, one, live=False)
    assert "Deze praktijk" in ui.funnel_figure().svg() and "Deze praktijk" in ui.trend_figure().svg()


def test_indicators_as_observed_against_expected(data):
    key = data.measures[data.measures["kind"] == "indicator"]["key"].iloc[0]
    rows = vk.measure_rows(data, key)
    assert len(data.quarters(key)) == 4
    for _, g in rows.groupby("quarter"):
        ok = g["E"].notna()
        # E is the care group's proportion over the published rows: the E add up to their O
        assert g.loc[ok, "E"].sum() == pytest.approx(g.loc[ok, "numerator"].astype(float).sum())
        assert not g.loc[~ok, "pct"].notna().all() or not ok.any()


def test_no_table_cell_shows_a_small_count(data):
    for key in list(data.measures["key"]):
        sel = vk.Selection(data.quarter, "zorggroep", (), key)
        table = vk.selection_table(data, sel)
        for column in ("Waargenomen (O)", "Noemer"):
            if column in table:
                assert not table[column].astype(str).str.fullmatch(r"[1-9]").any(), (key, column)


def test_csv_export_escapes_delivery_text_for_excel(data, tmp_path):
    """A practice name, hagro or region from a delivery that starts with = + - @ is text in Excel."""
    hostile = {"name": '=HYPERLINK("http://x.example","klik")', "hagro": "+31 6 1234", "region": "@SUM(A1:A9)"}
    agb = data.practices["practice_agb"].iloc[0]
    d = vk.ExploreData(quarter=data.quarter, practices=data.practices.copy(), mirror=data.mirror.copy(),
                       indicators=data.indicators, measures=data.measures, deciles=data.deciles)
    for column, value in hostile.items():
        d.practices.loc[d.practices["practice_agb"] == agb, column] = value
        d.mirror.loc[d.mirror["practice_agb"] == agb, column] = value
    path = vk.write_csv(d, vk.Selection(d.quarter, "praktijken", (agb,), vk.DEFAULT_MEASURE), tmp_path / "x.csv")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")          # UTF-8 with BOM: Excel reads the accents right
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    header, body = rows[0], rows[1:]
    assert len(body) == 2 and {"praktijk", "hagro", "regio", "kwartaal", "waargenomen"} <= set(header)
    for row in body:
        cells = dict(zip(header, row))
        for column, value in (("praktijk", hostile["name"]), ("hagro", hostile["hagro"]),
                              ("regio", hostile["region"])):
            assert cells[column] == "'" + value, (column, cells[column])
        assert cells["agb"] == agb
        # numbers as a Dutch Excel reads them: decimal comma, no thousands separator
        assert "." not in cells["verwacht"] + cells["oe"] + cells["cijfer"] + cells["waargenomen"]
        assert "," in cells["verwacht"] and cells["waargenomen"].isdigit() or cells["waargenomen"] in ("<10", "x")
    # no cell of the file starts with a formula character
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for c in row)


def test_the_batch_writes_the_default_selection_beside_the_report(demo_cube, tmp_path, data):
    paths = REPORTS["verkenning"].extras(demo_cube, "zorggroep", tmp_path)
    assert [p.name for p in paths] == [vk.CSV_NAME]
    body = paths[0].read_text(encoding="utf-8-sig").splitlines()
    assert len(body) == 1 + 12 * 2     # every practice, the two published rolling years


def test_a_new_measure_from_a_file_is_computed_and_suppressed(data, demo_warehouse, tmp_path):
    import yaml
    spec = yaml.safe_load((PARAMETERS_DIR / "mirror" / "antibiotica.yaml").read_text())
    spec["id"], spec["title"] = "antibiotica_kopie", "Antibiotica (kopie)"
    path = tmp_path / "antibiotica_kopie.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    d = vk.ExploreData(quarter=data.quarter, practices=data.practices, mirror=data.mirror.copy(),
                       indicators=data.indicators, measures=data.measures.copy(), deciles=data.deciles.copy())
    key = vk.add_measure(d, path, demo_warehouse)
    assert key == "spiegel:antibiotica_kopie" and key in set(d.measures["key"])
    new = d.mirror[d.mirror["measure"] == "antibiotica_kopie"].set_index(["practice_agb", "quarter"]).sort_index()
    old = d.mirror[d.mirror["measure"] == "antibiotica"].set_index(["practice_agb", "quarter"]).sort_index()
    assert len(new) == len(old) == 12 * 2
    assert (new["O_shown"] == old["O_shown"]).all()      # the same definition, the same published figures
    bands = [vk.band(d, k).set_index("quarter") for k in (key, "spiegel:antibiotica")]
    assert len(bands[0]) == 8
    pd.testing.assert_frame_equal(bands[0], bands[1])    # and the same deciles of all eight years
    assert not new["O"].dropna().between(1, MIN_CELL - 1).any()
    table = vk.selection_table(d, vk.Selection(d.quarter, "zorggroep", (), key))
    assert len(table) == 12


def test_a_bad_measure_file_is_one_clear_problem(data, demo_warehouse, tmp_path):
    path = tmp_path / "mijn_maat.yaml"
    shutil.copy(PARAMETERS_DIR / "mirror" / "antibiotica.yaml", path)
    with pytest.raises(ParameterError) as err:
        vk.add_measure(data, path, demo_warehouse)
    assert "mijn_maat.yaml" in str(err.value) and "id" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ParameterError, match="not found"):
        vk.add_measure(data, tmp_path / "nope.yaml", demo_warehouse)
