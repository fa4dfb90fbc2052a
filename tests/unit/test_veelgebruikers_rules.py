"""parameters/veelgebruikers.yaml: the frequent-attender monitor's profiles, baseline quarter and
plan size, loaded by helpers.rules.veelgebruikers (every problem at once, one Problem each);
its profile ids are what the data contract accepts in veelgebruikers_plan.csv."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from helpers import contract
from helpers.errors import ConfigError, ContractError
from helpers.quarter import Quarter
from helpers.rules.veelgebruikers import VEELGEBRUIKERS_FILE, load_veelgebruikers, parse_veelgebruikers

BAD = Path(__file__).resolve().parents[1] / "fixtures" / "bad"
A = "12345678"


def test_the_parameters_file_loads_with_six_unverified_profiles():
    params = load_veelgebruikers()
    assert [p.id for p in params.profiles] == ["multimorbiditeit", "ggz", "solk", "kwetsbare_oudere", "sociaal", "acuut"]
    assert not params.verified and not any(p.verified for p in params.profiles)
    assert params.plan_size == 5 and params.baseline_quarter == Quarter(2025, 3)
    assert all(p.title and p.description for p in params.profiles)
    # the contract reads the same ids from the same file
    assert contract.profile_ids(contract.VEELGEBRUIKERS_FILE) == tuple(p.id for p in params.profiles)


def test_every_problem_is_listed_at_once(tmp_path):
    data = yaml.safe_load(VEELGEBRUIKERS_FILE.read_text(encoding="utf-8"))
    data["baseline_quarter"] = "2025Q5"
    data["chronic_conditions"].append("diabetes")
    data["profiles"][1]["any"][0] = {"episodes": ["P7"], "at_least": 1}
    data["profiles"][2]["all"][0]["contacts"]["kinds"] = ["spreekuur"]
    data["profiles"][3]["all"][0] = {"age": {"at_least": "oud"}}
    data["profiles"][4]["id"] = "ggz"
    data["profiles"][5]["any"][0]["share_at_least"] = 1.5
    del data["profiles"][0]["verified"]
    path = tmp_path / "veelgebruikers.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_veelgebruikers(path)
    keys = [p.key for p in err.value.problems]
    assert keys == ["baseline_quarter", "chronic_conditions", "profiles[0].verified", "profiles[1].any[0].episodes",
                    "profiles[2].all[0].contacts.kinds", "profiles[3].all[0].age.at_least", "profiles[4].id",
                    "profiles[5].any[0].share_at_least"], str(err.value)
    assert all(p.file == str(path) for p in err.value.problems)
    assert "found 'diabetes', expected an ICPC group of codes.yaml" in str(err.value)
    assert "found 'spreekuur', expected one of consult" in str(err.value)


def test_a_criterion_needs_exactly_one_type_and_a_bound():
    with pytest.raises(ConfigError) as err:
        parse_veelgebruikers({"verified": False, "baseline_quarter": "2025Q3", "plan_size": 5, "profiles": [
            {"id": "x", "title": "X", "verified": False, "all": [{"episodes": ["P"]}, {"age": {}, "episodes": ["P"]}]}]},
            "v.yaml")
    assert [p.key for p in err.value.problems] == ["profiles[0].all[0]", "profiles[0].all[1]"]


def _dataset(tmp_path: Path) -> Path:
    ds = tmp_path / "ds"
    shutil.copytree(BAD.parent / "good_minimal", ds)
    return ds


def test_a_plan_with_an_unknown_profile_is_refused(tmp_path):
    """With the project's own parameters file (no stand-in): a profile that is not one of its
    ids refuses the practice, naming the line, the value and the ids it accepts."""
    ds = _dataset(tmp_path)
    (ds / "extracts" / A / "veelgebruikers_plan.csv").write_text(
        "patient_id;selected_on;profile;ended_on\nP001;2025-01-10;ggz;\nP002;2025-01-10;somatisch;\n"
        "P003;2025-01-10;;\n")
    row = contract.read_practices(ds).practices.set_index("practice_agb").loc[A].to_dict() | {"practice_agb": A}
    with pytest.raises(ContractError) as err:
        contract.load_practice(ds, row)
    assert [(p.line, p.column, p.value) for p in err.value.problems] == [(3, "profile", "somatisch")]
    assert "one of the profiles in veelgebruikers.yaml: multimorbiditeit, ggz, solk" in err.value.problems[0].expected
    (ds / "extracts" / A / "veelgebruikers_plan.csv").write_text(
        "patient_id;selected_on;profile;ended_on\nP001;2025-01-10;ggz;\nP002;2025-01-10;acuut;\n")
    assert contract.load_practice(ds, row).veelgebruikers_plan["profile"].tolist() == ["ggz", "acuut"]
