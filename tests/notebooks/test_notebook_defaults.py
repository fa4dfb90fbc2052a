"""``helpers.reports.notebook_defaults``: a report opened in JupyterLab with empty parameters
gets the latest prepared quarter and the first practice / hagro / region of its scope."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.cube import read_slice
from helpers.errors import ParameterError
from helpers.reports import COMMON, Param, ReportSpec, notebook_defaults, register, unregister


def test_his_analyse_with_empty_parameters(demo_warehouse, demo_cube, demo_quarter):
    p = notebook_defaults("his_analyse", {"practice_agb": "", "quarter": "", "warehouse": str(demo_warehouse),
                                          "cube_path": ""})
    assert p["quarter"] == str(demo_quarter)
    assert Path(p["cube_path"]) == Path(demo_cube)
    assert p["practice_agb"] == str(read_slice(demo_cube, "practices")["practice_agb"].iloc[0])
    assert p["warehouse"] == str(demo_warehouse)


def test_given_parameters_are_kept(demo_cube, demo_quarter):
    agb = str(read_slice(demo_cube, "practices")["practice_agb"].iloc[-1])
    p = notebook_defaults("his_analyse", {"practice_agb": agb, "quarter": "", "cube_path": str(demo_cube),
                                          "unrelated": 1})
    assert p["practice_agb"] == agb and p["quarter"] == str(demo_quarter) and "unrelated" not in p


@pytest.mark.parametrize("scope,ptype", [("hagro", "hagro"), ("region", "region")])
def test_a_shared_scope_gets_its_first_group(demo_cube, scope, ptype):
    spec = register(ReportSpec(id=f"defaults_{scope}", title_nl="X", notebook=Path("x.ipynb"), scope=scope,
                               params=(Param("group", ptype), *COMMON)))
    try:
        p = notebook_defaults(spec.id, {"group": "", "cube_path": str(demo_cube)})
    finally:
        unregister(spec.id)
    practices = read_slice(demo_cube, "practices")
    assert p["group"] == sorted(practices[ptype].dropna().astype(str).unique())[0]


def test_a_scope_needs_its_key_parameter():
    with pytest.raises(ParameterError, match="takes exactly one parameter of type 'hagro'"):
        ReportSpec(id="bad", title_nl="X", notebook=Path("x.ipynb"), scope="hagro",
                   params=(Param("region", "region"), *COMMON))
    with pytest.raises(ParameterError, match="scope 'wijk' is unknown"):
        ReportSpec(id="bad", title_nl="X", notebook=Path("x.ipynb"), scope="wijk", params=COMMON)
