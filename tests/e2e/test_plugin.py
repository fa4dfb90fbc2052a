"""A report kind is a plug-in: two reports declared only in tests/e2e/fixtures/plugin_reports.py
(a practice report and a care-group report, each with a prepare step, key figures and an
extra file) build end to end with ``spiegel build`` and show in the portal, with no module of
``src/helpers`` naming them."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import FIXTURES, build, counts, manifest
from helpers.config import PACKAGE_DIR, cube_dir
from helpers.cube import SharedCube, read_slice
from helpers.escape import html_text
from helpers.reports import REPORTS, register_plugin, unregister_plugin
from helpers.suppression import suppress_counts

pytestmark = pytest.mark.slow

PLUGIN = FIXTURES / "plugin_reports.py"
IDS = ("plug_praktijk", "plug_zorggroep")


@pytest.fixture(scope="module")
def plugin_reports():
    assert not any(i in REPORTS for i in IDS), "the plug-in reports are registered by the test only"
    specs = register_plugin(PLUGIN)
    yield {s.id: s for s in specs}
    unregister_plugin(PLUGIN)
    assert not any(i in REPORTS for i in IDS)


def _shown(*values) -> list[str]:
    return suppress_counts(pd.Series(values, dtype="float64")).tolist()


def test_no_module_of_the_package_names_the_plugin_reports():
    for f in Path(PACKAGE_DIR).rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        assert not any(i in text for i in IDS), f


def test_plugin_reports_build_end_to_end_and_show_in_the_portal(tiny_group, plugin_reports):
    batch = tiny_group.batch("plugin", reports=list(IDS), formats=["html"])
    code, out = build(batch)
    assert code == 0, out
    assert counts(out) == {"runs": 4, "done": 4, "skipped": 0, "failed": 0}   # 3 practices + the care group
    q = re.search(r"quarters (\d{4}Q[1-4])", out).group(1)
    outputs = tiny_group.root / "out-plugin"
    cube = cube_dir(tiny_group.warehouse, q)
    runs = manifest(outputs, q)["runs"]

    # the prepare steps ran in the quarter's prepare pass: a practice-level table, a shared one
    findings = read_slice(cube, "findings")
    kinds = read_slice(cube, "plug_praktijk_kinds")
    assert kinds["n"].sum() == len(findings)
    assert "plug_zorggroep_programmes" in SharedCube(cube).tables()
    assert not (cube / "plug_zorggroep_programmes.parquet").exists(), "a shared table lives only in shared/"

    for agb in tiny_group.practices:
        own = findings[findings["practice_agb"] == agb]
        folder = outputs / q / agb
        assert "Plug-in praktijk" in (folder / "plug_praktijk.html").read_text()
        entry = runs[f"{agb}-plug_praktijk"]
        assert entry["status"] == "done" and entry["scope"] == "practice"
        bevindingen, soorten = _shown(len(own), own["kind"].nunique())
        assert entry["figures"] == {"bevindingen": bevindingen, "soorten": soorten}
        assert [Path(x["path"]).name for x in entry["extras"]] == ["plug_soorten.csv"]
        listed = pd.read_csv(folder / "plug_soorten.csv", sep=";")
        assert listed["n"].sum() == len(own)

    # the care group's one run: outputs/<q>/regio/zorggroep/, figures and extra from the shared table
    folder = outputs / q / "regio" / "zorggroep"
    html = (folder / "plug_zorggroep.html").read_text()
    assert "Plug-in zorggroep" in html
    entry = runs["zorggroep-plug_zorggroep"]
    assert entry["scope"] == "zorggroep" and entry["status"] == "done"
    summary = read_slice(cube, "summary")
    per = summary.groupby("programme")[["enrolled", "enrolled_deceased"]].sum()
    publishable = per["enrolled"].where(per["enrolled"] >= 10)   # the rule: small counts do not add up
    ketens, in_ketenzorg = _shown(len(per), publishable.sum(min_count=1))
    assert entry["figures"] == {"ketens": ketens, "in_ketenzorg": in_ketenzorg}
    listed = pd.read_csv(folder / "plug_ketens.csv", sep=";", dtype=str).set_index("programme")
    for programme, row in per.iterrows():
        assert listed.loc[programme, "enrolled_shown"] == _shown(row["enrolled"])[0]
        assert listed.loc[programme, "enrolled_deceased_shown"] == _shown(row["enrolled_deceased"])[0]
        assert f"{programme}: {_shown(row['enrolled'])[0]} in ketenzorg" in html.replace("&lt;", "<")

    # the portal: a section per scope, the plug-ins' figure columns and values, links
    portal = (outputs / q / "index.html").read_text()
    for text in ("Praktijken", "Regio's en zorggroep", "Bevindingen (plug-in)", "Soorten bevindingen",
                 "Ketens", "In ketenzorg (zorggroep)", "Plug-in praktijk", "Plug-in zorggroep"):
        assert html_text(text) in portal, text
    assert 'href="regio/zorggroep/plug_zorggroep.html"' in portal
    assert f'href="{tiny_group.practices[0]}/plug_praktijk.html"' in portal
    zorggroep_row = next(tr for tr in portal.split("<tr") if "regio/zorggroep/plug_zorggroep.html" in tr)
    assert f'<td class="num">{html_text(ketens)}</td><td class="num">{html_text(in_ketenzorg)}</td>' in zorggroep_row
