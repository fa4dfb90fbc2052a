"""parameters/contracts.yaml and its loader (helpers.rules.contracts): every problem of a bad
file at once, one format_problem line each; the programme rules read their caps from it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from helpers.config import CONTRACTS_FILE
from helpers.errors import ConfigError
from helpers.rules.contracts import load_contracts, parse_contracts
from helpers.rules.codes import load_codes
from helpers.rules.programmes import load_programmes, parse_programmes

BAD = Path(__file__).resolve().parents[1] / "fixtures" / "bad_contracts"

EXPECTED = {
    "bad_uzovi.yaml": [
        "insurers.vgz.uzovi[0].code: found '70x9', expected a UZOVI code of 4 digits",
        "insurers.zk.uzovi[0].code: found '3311', expected a code of one insurer only (also listed under vgz)",
    ],
    "bad_tariff.yaml": [
        "contracts.vgz.2026.programmes.DM2.annual_tariff_eur: found '-380', expected a non-negative amount in euro "
        "with at most 2 decimals",
        "contracts.vgz.2026.programmes.CVRM.max_inclusion_pct: found '140', expected a percentage in (0, 100] with "
        "at most 2 decimals",
        "contracts.vgz.2026.programmes.COPD.annual_tariff_eur: found '230.125', expected a non-negative amount in "
        "euro with at most 2 decimals",
    ],
    "bad_reward.yaml": [
        "result_reward.cutoff_month: found '13', expected a month (1..12)",
        "result_reward.pct_before_cutoff: found 'four', expected a percentage in [0, 100] with at most 2 decimals",
        "contracts.vgz.2026.signed_on: found 'last autumn', expected a date (YYYY-MM-DD)",
    ],
    "unknown_names.yaml": [
        "contracts.zk.2026.programmes.HF: found 'HF', expected a programme the contract knows (DM2, COPD, CVRM, ASTMA)",
        "contracts.zk.2026.regioprestatie_eur_per_patient_year: found '2.0', expected no amount: the insurer does "
        "not pay the regioprestatie; set regioprestatie_veelgebruikers: true under insurers.zk, or drop the amount",
        "contracts.achmea: found 'achmea', expected an insurer of insurers (zk)",
        "contracts.achmea.2026.cap_basis: found 'whole_list', expected one of insurer_list, practice_list",
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_problem_of_a_bad_file_at_once(name):
    path = BAD / name
    with pytest.raises(ConfigError) as exc:
        load_contracts(path)
    lines = str(exc.value).splitlines()
    assert lines == [f"{path}, {line}" for line in EXPECTED[name]]
    assert len(exc.value.problems) == len(lines)
    assert all(p.file == str(path) and p.key for p in exc.value.problems)


def test_a_file_that_is_not_yaml():
    with pytest.raises(ConfigError) as exc:
        load_contracts(BAD / "not_yaml.yaml")
    assert str(exc.value).startswith(f"{BAD / 'not_yaml.yaml'}: expected valid YAML")
    assert len(exc.value.problems) == 1


def test_the_project_file():
    c = load_contracts()
    assert set(c.insurers) == {"zilveren_kruis", "vgz", "cz", "menzis", "dsw"}
    assert [i.id for i in c.insurers.values() if i.regioprestatie_veelgebruikers] == ["vgz"]
    assert not any(u.verified for i in c.insurers.values() for u in i.uzovi)  # none checked against the register
    from helpers.demo.constants import INSURERS
    assert {code for code, _ in INSURERS} == {code for i in c.insurers.values() for code in i.codes}
    assert c.contract("vgz", 2026).regioprestatie_eur_per_patient_year == Decimal("2.00")
    assert c.contract("7029", 2026) == c.contract("vgz", 2026)
    assert (c.reward.pct_before_cutoff, c.reward.pct_on_or_after_cutoff) == (4, 2)
    with pytest.raises(KeyError, match="no contract of vgz for 2019"):
        c.contract("vgz", 2019)
    with pytest.raises(KeyError, match="UZOVI '9999' belongs to no insurer"):
        c.insurer_of("9999")


def test_the_programme_caps_come_from_contracts_yaml(tmp_path):
    """One source: programmes.yaml has no cap or tariff; the care group's cap is contracts.yaml's."""
    rules = load_programmes()
    defaults = load_contracts().default_max_inclusion_pct
    assert {p: r.max_inclusion_pct for p, r in rules.programmes.items()} == {p: float(v) for p, v in defaults.items()}
    assert {p: r.max_inclusion_pct for p, r in rules.programmes.items()} == \
        {"DM2": 7.5, "CVRM": 10.0, "COPD": 3.5, "ASTMA": 5.0}  # as before the move
    assert not hasattr(rules.programmes["DM2"], "annual_tariff_eur")
    # a parameters folder with its own contracts.yaml: the caps are that file's
    params = Path(__file__).resolve().parents[2] / "parameters"
    (tmp_path / "programmes.yaml").write_text((params / "programmes.yaml").read_text())
    data = yaml.safe_load(CONTRACTS_FILE.read_text())
    data["defaults"]["max_inclusion_pct"]["CVRM"] = 8.5
    (tmp_path / "contracts.yaml").write_text(yaml.safe_dump(data))
    assert load_programmes(tmp_path / "programmes.yaml").programmes["CVRM"].max_inclusion_pct == 8.5
    # a programme without a cap is named in contracts.yaml
    del data["defaults"]["max_inclusion_pct"]["ASTMA"]
    with pytest.raises(ConfigError) as exc:
        parse_programmes(yaml.safe_load((params / "programmes.yaml").read_text()), load_codes(),
                         params / "programmes.yaml", parse_contracts(data, tmp_path / "contracts.yaml"))
    assert str(exc.value) == (f"{tmp_path / 'contracts.yaml'}, defaults.max_inclusion_pct.ASTMA: expected the care "
                              "group's cap of programme ASTMA (it is missing)")
