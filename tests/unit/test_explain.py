"""``spiegel explain``: an indicator's definition, its file and the SQL it runs, so a researcher
can check a figure without reading Python (issue 8, habits). The SQL printed is run on a small
warehouse after the prepare pass and gives the cube's own figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import cli
from helpers.config import INDICATORS_DIR, PROJECT_ROOT
from helpers.cube import prepare_quarter
from helpers.cube.findings import prepare_state
from helpers.quarter import Quarter
from helpers.rules.indicators import load_indicators
from helpers.rules.programmes import load_programmes
from helpers.warehouse import Warehouse

INDICATORS = list(load_indicators())
QUARTER = "2026Q3"   # the latest complete quarter of the demo's extraction date, 2026-10-05


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(["explain", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def printed_sql(out: str) -> str:
    """The SQL part of the explanation: everything after its comment block."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-- The SQL of "))
    body = [line for line in lines[start:] if not line.startswith("--")]
    assert body, out
    return "\n".join(body)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """A demo care group of two practices, loaded, with its quarter cube prepared."""
    from helpers.demo import generate
    root = tmp_path_factory.mktemp("explain")
    generate(root / "demo", practices=2)
    path = root / "warehouse.duckdb"
    assert Warehouse(path).ingest(root / "demo").ok
    prepare_quarter(path, QUARTER)
    return path


@pytest.fixture(scope="module")
def cube_indicators(warehouse) -> pd.DataFrame:
    from helpers.config import cube_dir
    return pd.read_parquet(cube_dir(warehouse, QUARTER) / "indicators.parquet")


def test_without_an_id_every_indicator_is_listed(capsys):
    code, out, err = run(capsys)
    assert code == 0 and err == ""
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == INDICATORS
    defs = load_indicators()
    assert f"  {INDICATORS[0]}" in out and defs[INDICATORS[0]].title in out
    assert out.startswith(f"indicator (parameters/indicators/<id>.yaml): {len(INDICATORS)} definitions")


def test_an_unknown_id_is_one_line_with_close_matches(capsys):
    code, out, err = run(capsys, "dm2_hba1c_measurd")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0] == ("spiegel explain: error: 'dm2_hba1c_measurd' is not the id of an indicator "
                        "(parameters/indicators/): did you mean dm2_hba1c_measured, dm2_acr_measured, "
                        "dm2_sbp_measured?")


def test_an_id_with_nothing_close_points_to_the_list(capsys):
    code, _, err = run(capsys, "zzzz")
    assert code == 2
    assert err.strip().endswith("(parameters/indicators/): `spiegel explain` lists them")


@pytest.mark.parametrize("indicator_id", ["dm2_hba1c_on_target", "astma_control_recorded"])
def test_the_definition_shows_every_field_of_its_file(capsys, indicator_id):
    code, out, _ = run(capsys, indicator_id, "--quarter", QUARTER)
    assert code == 0
    path = INDICATORS_DIR / f"{indicator_id}.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    lines = out.splitlines()
    assert lines[0] == f"indicator {indicator_id}: {raw['title']}"
    assert lines[1] == f"file: {path.relative_to(PROJECT_ROOT)}"
    assert lines[2] == ""
    block = lines[3:lines.index("", 3)]
    assert all(line.startswith("  ") for line in block)
    fields = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in block}
    assert set(fields) == set(raw)
    for key in ("title", "programme", "numerator", "denominator", "source", "reviewed_by", "reviewed_on"):
        assert fields[key] == str(raw[key]), key
    assert fields["target_pct"] == str(raw["target_pct"])
    assert fields["low_is_good"] == str(raw["low_is_good"]).lower()


def test_the_quarter_given_is_the_quarter_of_the_sql(capsys):
    _, out, _ = run(capsys, "dm2_hba1c_measured", "--quarter", "2025Q2")
    assert "-- The SQL of indicator dm2_hba1c_measured for quarter 2025Q2 (given with --quarter)." in out
    assert "DATE '2024-07-01' AND DATE '2025-06-30'" in printed_sql(out)
    assert 'prepare_state(con, Quarter.parse("2025Q2"), load_programmes())' in out, "how to run it"


def test_a_bad_quarter_is_a_user_error(capsys):
    code, _, err = run(capsys, "dm2_hba1c_measured", "--quarter", "2025Q5")
    assert code == 2 and "'2025Q5' is not a quarter" in err and len(err.strip().splitlines()) == 1


def test_the_sql_printed_gives_the_cubes_figures(capsys, warehouse, cube_indicators):
    """Every indicator's SQL, as printed for the warehouse's latest quarter, run after the
    prepare pass (its temp tables, built through the public prepare_state), gives the cube's
    numerator and denominator for every practice."""
    checked = 0
    with Warehouse(warehouse).connect(read_only=True) as con:
        prepare_state(con, Quarter.parse(QUARTER), load_programmes())
        for indicator_id in INDICATORS:
            code, out, _ = run(capsys, indicator_id, "--warehouse", warehouse)
            assert code == 0
            assert (f"for quarter {QUARTER} (the latest complete at the newest extraction date in "
                    f"{warehouse}, 2026-10-05)") in out
            got = con.execute(printed_sql(out)).df()
            want = cube_indicators[cube_indicators["indicator_id"] == indicator_id]
            got = got.sort_values("practice_agb").reset_index(drop=True)
            want = want.sort_values("practice_agb").reset_index(drop=True)
            assert len(want) == 2, indicator_id
            assert got["practice_agb"].tolist() == want["practice_agb"].tolist(), indicator_id
            assert got["numerator"].astype(int).tolist() == want["numerator"].tolist(), indicator_id
            assert got["denominator"].astype(int).tolist() == want["denominator"].tolist(), indicator_id
            checked += bool(want["denominator"].sum())
    assert checked >= len(INDICATORS) // 2, "the demo gives most indicators a denominator"


def test_another_kind_is_one_entry(capsys, monkeypatch, tmp_path):
    """A kind without SQL (as the mirror measures may start): its files listed and explained."""
    from types import SimpleNamespace
    (tmp_path / "gp_visits.yaml").write_text("id: gp_visits\ntitle: Consulten per patiënt\nsource: Vektis\n",
                                            encoding="utf-8")
    kind = cli.ExplainKind("mirror measure", tmp_path,
                           lambda: {"gp_visits": SimpleNamespace(title="Consulten per patiënt")}, ("id", "title"))
    monkeypatch.setitem(cli.EXPLAINABLE, "mirror measure", kind)
    code, out, _ = run(capsys)
    assert code == 0 and f"mirror measure ({tmp_path}/<id>.yaml): 1 definitions" in out
    assert "  gp_visits  Consulten per patiënt" in out
    code, out, _ = run(capsys, "gp_visits")
    assert code == 0
    assert out.splitlines() == ["mirror measure gp_visits: Consulten per patiënt", f"file: {tmp_path / 'gp_visits.yaml'}",
                                "", "  id:     gp_visits", "  title:  Consulten per patiënt", "  source: Vektis"]
