"""The payment specification runs in a real kernel on the demo care group, and its money
figures (prepared for every practice in the quarter cube) match the demo's money ground truth
to the cent."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest
from nbconvert import HTMLExporter

from helpers.cube import read_slice
from helpers.money import decode_bank_description
from helpers.reports import REPORTS
from helpers.reports import betaalspecificatie as bs

NOTEBOOK = REPORTS["betaalspecificatie"].notebook


@pytest.fixture(scope="module")
def truth(demo_dataset) -> pd.DataFrame:
    t = pd.read_csv(Path(f"{demo_dataset}.money_truth.csv"), sep=";", dtype=str, keep_default_na=False)
    return t[t["programme"] != ""]


def test_parameters_cell_matches_registry_and_no_outputs():
    assert set(pm.inspect_notebook(str(NOTEBOOK))) == set(REPORTS["betaalspecificatie"].param_names())
    for cell in json.loads(Path(NOTEBOOK).read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None


def test_every_cell_matches_the_money_truth_to_the_cent(demo_cube, demo_quarter, truth):
    cells = read_slice(demo_cube, bs.CELLS_TABLE)
    quarters = {str(demo_quarter), str(demo_quarter.previous())}
    expected = truth[truth["quarter"].isin(quarters)].set_index(["practice_agb", "programme", "quarter", "insurer_uzovi"])
    got = cells[cells["rounds"] > 0].set_index(["practice_agb", "programme", "quarter", "insurer_uzovi"])
    assert len(expected) > 50 and set(expected.index) == set(got.index)
    for key, e in expected.iterrows():
        g = got.loc[key]
        assert (int(g.declared), int(g.awarded), int(g.rejected), int(g.rounds)) == \
               (int(e.declared), int(e.awarded), int(e.rejected), int(e.rounds)), key
        assert int(g.paid_cents) == int(Decimal(e.paid_eur) * 100), key
        assert int(g.followup_cents) == int(Decimal(e.followup_eur) * 100), key
        assert int(g.reward_cents) == int(Decimal(e.reward_eur) * 100), key
        assert int(g.over_cap) == int(e.over_cap) and int(g.exposure_cents) == int(Decimal(e.exposure_eur) * 100), key
        assert Decimal(str(g.reward_pct)) == Decimal(e.reward_pct), key


def test_every_payment_round_decodes_and_carries_its_bank_description(demo_cube):
    rounds = read_slice(demo_cube, bs.PAYMENTS_TABLE)
    assert len(rounds) and (rounds["bank_description"] != "").all()
    for r in rounds.head(200).itertuples():
        programme, quarter, invoice = decode_bank_description(r.bank_description)
        assert (programme, quarter, str(invoice)) == (r.programme, r.quarter, r.invoice_number)
        assert invoice.year == r.invoice_year and invoice.chain_number == r.chain_number


def test_the_report_shows_the_practice_payments_and_totals(demo_warehouse, demo_cube, demo_quarter, tmp_path):
    cells = read_slice(demo_cube, bs.CELLS_TABLE)
    now = cells[cells["quarter"] == str(demo_quarter)]
    agb = now.groupby("practice_agb")["rounds"].sum().idxmax()
    out = tmp_path / "bs.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False,
                        parameters={"practice_agb": agb, "quarter": str(demo_quarter),
                                    "warehouse": str(demo_warehouse), "cube_path": str(demo_cube)})
    nb = nbformat.read(out, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", output
    html, _ = HTMLExporter(exclude_input=True).from_notebook_node(nb)
    for heading in ("Betaalspecificatie ketenzorg", "1. Samenvatting per keten", "2. Betalingen", "3. Resultaatbeloning",
                    "4. Vervolgbetalingen", "5. Gedeclareerd tegenover", "6. Verschil met het vorige kwartaal",
                    "7. Nog open", "Methode"):
        assert heading in html, heading
    total = int(now[now["practice_agb"] == agb]["paid_cents"].sum())
    assert bs.nl_eur(total).replace("\u00a0", "&nbsp;") in html or bs.nl_eur(total) in html
    for desc in read_slice(demo_cube, bs.PAYMENTS_TABLE, practice_agb=agb).query("quarter == @demo_quarter.__str__()")["bank_description"]:
        assert desc in html
