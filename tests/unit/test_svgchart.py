"""The praktijkspiegel's SVG charts (helpers.svgchart, helpers.plots): valid SVG, the marks
the data asks for, delivery text as text only, and the same bytes for the same input."""

import math
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from helpers import plots
from helpers.svgchart import Chart, Scale, nice_ticks

NS = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert(1)</script> & "x" <tspan onload="y">'


def _tree(chart) -> ET.Element:
    return ET.fromstring(chart._repr_svg_())     # raises if the SVG is not well-formed XML


def _points(n=6, own="01000001"):
    return pd.DataFrame({"practice_agb": [own] + [f"0100000{i}" for i in range(2, n + 1)],
                         "expected": np.linspace(40, 400, n), "ratio": np.linspace(0.8, 1.3, n)})


def _limits():
    e = np.geomspace(10, 450, 40)
    se = 1 / np.sqrt(e)
    return pd.DataFrame({"expected": e, "lo95": np.exp(-1.96 * se), "hi95": np.exp(1.96 * se),
                         "lo998": np.exp(-3.09 * se), "hi998": np.exp(3.09 * se)})


def test_scales_map_data_onto_pixels():
    lin = Scale(0, 10)
    log = Scale(0.5, 2.0, log=True)
    c = Chart(100, 100)
    c.panel(0, 0, 100, 100, lin, log)
    assert lin(0) == 0 and lin(10) == 100 and lin(5) == 50
    assert log(1.0) == pytest.approx(50)          # 1 is the geometric middle of 0,5..2
    assert log(2.0) == pytest.approx(0)           # up is up: the top of the panel
    assert nice_ticks(0, 1) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_funnel_draws_every_practice_and_four_limits():
    pts = _points()
    root = _tree(plots.funnel(pts, _limits(), own="01000001", title="Trechter: test"))
    circles = root.findall(f".//{NS}circle")
    diamonds = [p for p in root.findall(f".//{NS}path") if p.get("d", "").endswith("Z")]
    lines = root.findall(f".//{NS}polyline")
    # five other practices as dots (plus the legend's dot), this practice as a diamond (plus legend)
    assert len(circles) == 5 + 1
    assert len(diamonds) == 1 + 1
    assert len(lines) == 4                        # 95% and 99,8%, upper and lower
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "Trechter: test" in texts and "1" in texts and "Verwacht aantal (E) voor de patiëntenpopulatie" in texts


def test_ratio_dots_one_row_per_measure_and_a_note_where_e_is_small():
    rows = pd.DataFrame({"label": ["Consulten", "Visites", "E-consulten"], "ratio": [1.1, np.nan, 0.7],
                         "lo": [1.0, np.nan, 0.6], "hi": [1.2, np.nan, 0.8],
                         "p10": [0.9, 0.8, np.nan], "p90": [1.1, 1.2, np.nan]})
    root = _tree(plots.ratio_dots(rows, "O/E per maat: contacten"))
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert {"Consulten", "Visites", "E-consulten"} <= set(texts)
    assert texts.count("te weinig verwacht") == 1
    diamonds = [p for p in root.findall(f".//{NS}path") if p.get("d", "").endswith("Z")]
    assert len(diamonds) == 2
    bands = [r for r in root.findall(f".//{NS}rect") if r.get("fill") == plots.MIRROR_BAND]
    assert len(bands) == 2                        # the row without a P10-P90 has no band


def test_trend_grid_has_a_panel_per_measure_with_band_median_and_practice():
    rows = pd.DataFrame({"window_label": [f"2025Q{i}" for i in range(1, 5)], "rate": [3.0, 3.2, 3.1, 3.4],
                         "median": [3.1] * 4, "p10": [2.5] * 4, "p90": [3.8] * 4})
    root = _tree(plots.trend_grid([(rows, "Contacten", "per patiëntjaar")] * 3))
    assert len(root.findall(f".//{NS}polygon")) == 3          # one P10-P90 band per panel
    assert len(root.findall(f".//{NS}polyline")) == 6         # median and practice per panel
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert texts.count("Contacten") == 3 and "2025Q4" in texts


def test_pyramid_bars_per_band_and_sex():
    order = ["0-4", "5-14", "15-24"]
    own = pd.DataFrame({"age_band": order * 2, "sex": ["M"] * 3 + ["V"] * 3, "share": [5, 10, 15, 6, 11, 16]})
    root = _tree(plots.pyramid_compare(own, own.assign(share=own["share"] + 1), order))
    filled = [r for r in root.findall(f".//{NS}rect") if r.get("fill") in ("#5b8db8", "#d98c6b")]
    outlined = [r for r in root.findall(f".//{NS}rect") if r.get("fill") == "none" and r.get("stroke")]
    assert len(filled) == 6 + 2 and len(outlined) == 6 + 1    # bars plus the legend's swatches


def test_delivery_text_is_only_ever_text():
    pts = _points()
    svg = plots.funnel(pts, _limits(), own="01000001", title=HOSTILE)._repr_svg_()
    rows = pd.DataFrame({"label": [HOSTILE], "ratio": [1.0], "lo": [0.9], "hi": [1.1], "p10": [0.9], "p90": [1.1]})
    svg2 = plots.ratio_dots(rows, HOSTILE)._repr_svg_()
    for s in (svg, svg2):
        root = ET.fromstring(s)
        assert not [e for e in root.iter() if e.tag.endswith(("script", "tspan", "foreignObject"))]
        assert not [e for e in root.iter() for a in e.attrib if a.lower().startswith("on")]
        assert HOSTILE in [t.text for t in root.iter(f"{NS}text")]    # shown, literally
        assert "href" not in s                                         # nothing loaded from anywhere


def test_same_input_same_bytes_and_no_nan_in_the_svg():
    a = plots.funnel(_points(), _limits(), own="01000001", title="t")._repr_svg_()
    b = plots.funnel(_points(), _limits(), own="01000001", title="t")._repr_svg_()
    assert a == b
    rows = pd.DataFrame({"window_label": ["2025Q1", "2025Q2"], "rate": [np.nan, 2.0],
                         "median": [1.0, np.nan], "p10": [np.nan, np.nan], "p90": [np.nan, np.nan]})
    s = plots.trend_band(rows, "t", "u")._repr_svg_()
    assert "nan" not in s.lower() and "inf" not in s.lower()
    assert all(math.isfinite(float(v)) for v in
               [x for e in ET.fromstring(s).iter() for k, x in e.attrib.items() if k in ("x", "y", "cx", "cy")])


def test_his_analyse_charts_inclusion_pyramid_and_indicator_strip():
    summary = pd.DataFrame({"programme": ["DM2", "COPD"], "inclusion_pct": [6.1, np.nan],
                            "max_inclusion_pct": [5.7, 2.8], "over_cap": [True, None]})
    root = _tree(plots.inclusion_chart(summary))
    bars = [r for r in root.findall(f".//{NS}rect") if r.get("fill") in (plots.TARGET, plots.PRACTICE)]
    assert [b.get("fill") for b in bars] == [plots.TARGET, plots.PRACTICE]    # DM2 over its cap
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "6,1%" in texts and "–" in texts                                   # a withheld rate says so

    pyr = pd.DataFrame({"age_band": plots.HIS_AGE_BANDS * 2, "sex": ["M"] * 7 + ["V"] * 7,
                        "patients": list(range(10, 80, 10)) * 2})
    root = _tree(plots.pyramid(pyr))
    assert len([r for r in root.findall(f".//{NS}rect") if r.get("fill") in ("#5b8db8", "#d98c6b")]) == 14 + 2

    own = pd.DataFrame({"indicator_id": ["a", "b"], "title": [HOSTILE, "LDL gemeten"], "pct": [80.0, np.nan],
                        "target_pct": [90.0, 85.0]})
    peers = pd.DataFrame({"indicator_id": ["a", "a", "b"], "pct": [70.0, 75.0, 60.0]})
    root = _tree(plots.indicator_strip(own, peers))
    assert len(root.findall(f".//{NS}circle")) == 3 + 1                      # peers plus the legend's
    assert HOSTILE in [t.text for t in root.iter(f"{NS}text")]


def test_a_funnel_without_an_own_practice_names_no_deze_praktijk():
    root = _tree(plots.funnel(_points(), _limits(), own="", title="Trechter"))
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "Deze praktijk" not in texts and "Praktijken" in texts
    assert len(root.findall(f".//{NS}circle")) == 6 + 1          # every practice a grey dot
