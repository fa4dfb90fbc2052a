"""The loaders of parameters/: codes, programmes and indicators report every problem at once."""

import re
from pathlib import Path

import pytest
import yaml

from helpers.config import CODES_FILE, INDICATORS_DIR, PROGRAMMES_FILE
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
    assert {i.programme for i in inds.values()} == {"DM2", "CVRM", "COPD", "ASTMA"}
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
    # the problem is written by format_problem on a line of its own: the file, the key, found, expected
    lines = str(exc.value).splitlines()
    assert any(line.startswith(str(tmp_path / path.name)) and f"{path.name}, {expected}" in line for line in lines)
    assert all(p.file == str(tmp_path / path.name) and p.key for p in exc.value.problems)


def test_all_indicator_problems_reported_together(tmp_path):
    for p in BAD.glob("*.yaml"):
        (tmp_path / p.name).write_text(p.read_text())
    with pytest.raises(IndicatorError) as exc:
        load_indicators(directory=tmp_path)
    for p in BAD.glob("*.yaml"):
        assert p.name in str(exc.value)
    # unknown_programme.yaml has two problems: both are listed, one line each
    lines = str(exc.value).splitlines()
    assert f"{tmp_path / 'unknown_programme.yaml'}, programme: found 'HF', expected one of DM2, COPD, CVRM, ASTMA" in lines
    assert f"{tmp_path / 'unknown_programme.yaml'}, low_is_good: found 'maybe', expected true or false" in lines
    assert len(lines) == len(exc.value.problems) == 7


def test_codes_problems_listed_together():
    data = yaml.safe_load(Path("parameters/codes.yaml").read_text()) if Path("parameters/codes.yaml").exists() \
        else yaml.safe_load((Path(__file__).resolve().parents[2] / "parameters/codes.yaml").read_text())
    data["icpc"]["dm2"]["include"] = ["T9002"]
    data["measurements"]["sbp"]["nhg"] = 2816
    data["atc"]["statin"]["prefixes"] = ["statine"]
    with pytest.raises(ConfigError) as exc:
        parse_codes(data)
    lines = str(exc.value).splitlines()
    assert len(lines) == len(exc.value.problems) == 3
    assert all(line.startswith(f"{CODES_FILE}, ") for line in lines)
    assert f"{CODES_FILE}, icpc.dm2.include: found 'T9002', expected an ICPC-1-NL code (letter, two digits, " \
        "optional .dd); e.g. T90 or T90.02" in lines
    assert f"{CODES_FILE}, measurements.sbp.nhg: found '2816', expected an NHG number of its own " \
        "(2816 is also used by hba1c)" in lines
    assert f"{CODES_FILE}, atc.statin.prefixes: found 'statine', expected an ATC code or prefix; e.g. A10BA02, C10" \
        in lines
    assert [(p.key, p.value) for p in exc.value.problems] == [
        ("icpc.dm2.include", "T9002"), ("measurements.sbp.nhg", 2816), ("atc.statin.prefixes", "statine")]


def test_programme_rules_checked_against_codes():
    root = Path(__file__).resolve().parents[2]
    data = yaml.safe_load((root / "parameters/programmes.yaml").read_text())
    data["programmes"]["DM2"]["inclusion"] = ["diabetes"]
    data["programmes"]["DM2"]["controls"][0]["concepts"] = ["hba1c_x"]
    data["programmes"]["COPD"]["max_inclusion_pct"] = 140
    with pytest.raises(ConfigError) as exc:
        parse_programmes(data, load_codes())
    lines = str(exc.value).splitlines()
    assert len(lines) == len(exc.value.problems) == 3
    assert f"{PROGRAMMES_FILE}, programmes.DM2.inclusion: found 'diabetes', expected an ICPC group of codes.yaml" \
        in lines
    assert f"{PROGRAMMES_FILE}, programmes.DM2.controls[0].concepts: found 'hba1c_x', expected a concept of " \
        "codes.yaml measurements (control hba1c)" in lines
    # caps and tariffs moved to contracts.yaml: one there in programmes.yaml is a problem
    assert f"{PROGRAMMES_FILE}, programmes.COPD.max_inclusion_pct: found '140', expected no max_inclusion_pct here: " \
        "caps and tariffs are in contracts.yaml; set it in parameters/contracts.yaml (defaults.max_inclusion_pct " \
        "or the insurer's contract)" in lines


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


def _programmes_yaml() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[2] / "parameters/programmes.yaml").read_text())


def test_the_programme_order_is_that_of_programmes_yaml(tmp_path):
    """One vocabulary: the programmes and their order (reports, indicators) come from the YAML."""
    data = _programmes_yaml()
    assert load_programmes().programme_ids == tuple(data["programmes"])
    reordered = {**data, "programmes": dict(reversed(list(data["programmes"].items())))}
    (tmp_path / "programmes.yaml").write_text(yaml.safe_dump(reordered, sort_keys=False))
    rules = load_programmes(tmp_path / "programmes.yaml")
    assert rules.programme_ids == tuple(reversed(list(data["programmes"])))
    order = [i.programme for i in load_indicators(rules).values()]
    assert order == sorted(order, key=rules.programme_ids.index), "indicators follow the YAML's programme order"


def test_an_indicator_of_a_programme_not_in_programmes_yaml(tmp_path):
    data = _programmes_yaml()
    del data["programmes"]["ASTMA"]
    rules = parse_programmes(data, load_codes())
    with pytest.raises(IndicatorError) as exc:
        load_indicators(rules)
    assert f"{INDICATORS_DIR / 'astma_control_recorded.yaml'}, programme: found 'ASTMA', expected a programme of " \
        "programmes.yaml (DM2, CVRM, COPD)" in str(exc.value).splitlines()


def test_a_programme_the_contract_does_not_know():
    data = _programmes_yaml()
    data["programmes"]["HF"] = data["programmes"]["COPD"]
    with pytest.raises(ConfigError) as exc:
        parse_programmes(data, load_codes())
    assert f"{PROGRAMMES_FILE}, programmes.HF: found 'HF', expected a programme the contract knows " \
        "(DM2, COPD, CVRM, ASTMA)" in str(exc.value).splitlines()


def test_the_dm2_cvrm_exclusion_is_read_from_excluded_if():
    """The exclusion is data: CVRM's excluded_if names dm2, DM2 includes dm2."""
    data = _programmes_yaml()
    assert parse_programmes(data, load_codes()).exclusions() == (("CVRM", "DM2"),)
    data["programmes"]["CVRM"]["excluded_if"] = []
    assert parse_programmes(data, load_codes()).exclusions() == ()
    data["programmes"]["COPD"]["excluded_if"] = ["astma"]
    assert parse_programmes(data, load_codes()).exclusions() == (("COPD", "ASTMA"),)


def test_a_sql_builder_needs_the_state_it_reads():
    """Builders read the tables a PreparedState names; without one they cannot run, and the
    previous quarter's state is another set of names."""
    from helpers.cube.findings import compute_findings, registration_sql
    from helpers.cube.indicators import indicator_sql
    from helpers.cube.state import PreparedState
    from helpers.quarter import Quarter
    rules = load_programmes()
    q = Quarter.parse("2026Q3")
    with pytest.raises(TypeError):
        compute_findings(None, rules)  # noqa: the state is missing
    prev = PreparedState.named(q.previous(), prefix="prev_")
    sql = registration_sql(prev, rules)
    assert "FROM prev_enr" in sql and "JOIN prev_pat" in sql and "prev_dx" in sql and "prev_enr_ended" in sql
    assert not re.search(r"(FROM|JOIN) (pat|dx|enr|enr_ended|meas)\b", sql), "only the state's tables"
    ind = load_indicators(rules)["dm2_hba1c_measured"]
    assert indicator_sql(ind, q) == indicator_sql(ind, q, PreparedState.named(q))
    assert "FROM prev_meas m" in indicator_sql(ind, q.previous(), prev)
    with pytest.raises(ValueError):
        indicator_sql(ind, q, prev)
