"""environment.yml (for conda users) stays in step with pyproject.toml."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONDA_NAMES = {"duckdb": "python-duckdb", "dask[distributed]": "dask"}


def _name_and_bound(req: str) -> tuple[str, str]:
    m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", req.strip())
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_name_and_bound(r) for r in project["dependencies"] + project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name, bound = _name_and_bound(dep)
            conda[name] = bound
    for name, bound in wanted.items():
        conda_name = CONDA_NAMES.get(name, name)
        assert conda_name in conda, f"{name} is in pyproject.toml but not in environment.yml"
        assert conda[conda_name] == bound, f"{name}: pyproject says {bound!r}, environment.yml {conda[conda_name]!r}"
    if "dask[distributed]" in wanted:
        assert conda.get("distributed") == wanted["dask[distributed]"]
    py = project["requires-python"]
    assert conda["python"] == py
    assert any(isinstance(d, dict) and "-e .[test]" in d.get("pip", []) for d in env["dependencies"])
