"""The loaders of parameters/: codes, programmes and indicators report every problem at once."""

from pathlib import Path

import pytest
import yaml

from helpers.rules.codes import load_codes, parse_codes
from helpers.errors import ConfigError, IndicatorError
from helpers.rules.indicators import load_indicators
from helpers.rules.programmes import load_programmes, parse_programmes

BAD = Path(__file__).resolve().parents[1] / "fixtures" / "bad_indicators"


def test_shipped_parameters_load():
    rules = load_programmes()
    assert set(rules.programmes) == {"DM2", "CVRM", "COPD", "ASTMA"}
    inds = load_indicators(rules)
    assert len(inds) >= 20
    assert {i.chain for i in inds.values()} == {"DM2", "CVRM", "COPD", "ASTMA"}
    codes = load_codes()
    # the NHG numbers the contract verified
    expected = {"hba1c": 2816, "sbp": 1744, "dbp": 1740, "ldl": 542, "egfr": 3583, "acr": 40, "weight": 357,
                "height": 560, "bmi": 1272, "smoking": 1739, "foot": 2196, "fundus": 2129, "exacerbations": 3549}
    for concept, nhg in expected.items():
        assert codes.measurements[concept].nhg == nhg
        assert codes.measurements[concept].verified
    for concept in ("total_cholesterol", "mrc", "ccq", "fev1_pct", "acq", "act"):
        assert codes.measurements[concept].verified is False


@pytest.mark.parametrize("path", sorted(BAD.glob("*.yaml")), ids=lambda p: p.stem)
def test_bad_indicator_file(tmp_path, path):
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    (tmp_path / path.name).write_text(path.read_text())
    with pytest.raises(IndicatorError) as exc:
        load_indicators(directory=tmp_path)
    assert expected in str(exc.value)
    assert path.name in str(exc.value)


def test_all_indicator_problems_reported_together(tmp_path):
    for p in BAD.glob("*.yaml"):
        (tmp_path / p.name).write_text(p.read_text())
    with pytest.raises(IndicatorError) as exc:
        load_indicators(directory=tmp_path)
    for p in BAD.glob("*.yaml"):
        assert p.name in str(exc.value)
    # unknown_chain.yaml has two problems: both are listed
    assert "low_is_good must be true or false" in str(exc.value)


def test_codes_problems_listed_together():
    data = yaml.safe_load(Path("parameters/codes.yaml").read_text()) if Path("parameters/codes.yaml").exists() \
        else yaml.safe_load((Path(__file__).resolve().parents[2] / "parameters/codes.yaml").read_text())
    data["icpc"]["dm2"]["include"] = ["T9002"]
    data["measurements"]["sbp"]["nhg"] = 2816
    data["atc"]["statin"]["prefixes"] = ["statine"]
    with pytest.raises(ConfigError) as exc:
        parse_codes(data)
    msg = str(exc.value)
    assert "'T9002' is not an ICPC-1-NL code" in msg
    assert "nhg 2816 is also used by hba1c" in msg
    assert "'statine' is not an ATC code" in msg


def test_programme_rules_checked_against_codes():
    root = Path(__file__).resolve().parents[2]
    data = yaml.safe_load((root / "parameters/programmes.yaml").read_text())
    data["programmes"]["DM2"]["inclusion"] = ["diabetes"]
    data["programmes"]["DM2"]["controls"][0]["concepts"] = ["hba1c_x"]
    data["programmes"]["COPD"]["max_inclusion_pct"] = 140
    with pytest.raises(ConfigError) as exc:
        parse_programmes(data, load_codes())
    msg = str(exc.value)
    assert "'diabetes' is not an ICPC group" in msg
    assert "concept 'hba1c_x' is not in codes.yaml" in msg
    assert "max_inclusion_pct: 140" in msg


def test_icpc_matching():
    codes = load_codes()
    assert codes.icpc["dm2"].matches("T90.02")
    assert not codes.icpc["dm2"].matches("T90.01")
    assert codes.icpc["hypertension"].matches("K86.01")
    assert not codes.icpc["hypertension"].matches("K861")
    assert not codes.icpc["astma"].matches("R96.01")


def test_every_indicator_name_has_its_sql_builder():
    """The rules name numerators and denominators; the cube has one SQL builder per name."""
    from helpers.cube.indicators import DENOMINATORS, NUMERATORS
    from helpers.rules.indicators import DENOMINATOR_NAMES, NUMERATOR_NAMES
    assert tuple(NUMERATORS) == NUMERATOR_NAMES
    assert tuple(DENOMINATORS) == DENOMINATOR_NAMES
