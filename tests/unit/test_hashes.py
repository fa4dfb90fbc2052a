"""The cache key's hashes: the code hash covers every .py file of the package, subpackages
included; the parameters hash all of parameters/ except batch files."""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers.config import PACKAGE_DIR, PARAMETERS_DIR
from helpers.cube.prepare import code_files, code_hash, is_batch_file, parameter_files, parameters_hash


def test_code_files_are_every_py_file_of_the_package_subpackages_included():
    expected = {f.relative_to(PACKAGE_DIR).as_posix() for f in PACKAGE_DIR.rglob("*.py")
                if "__pycache__" not in f.parts}
    got = {f.relative_to(PACKAGE_DIR).as_posix() for f in code_files()}
    assert got == expected
    assert {"cube/prepare.py", "batch/build.py", "rules/codes.py", "__init__.py"} <= got


def test_code_hash_changes_with_a_file_in_a_subpackage(tmp_path):
    pkg = tmp_path / "helpers"
    (pkg / "sub" / "deeper").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    nested = pkg / "sub" / "deeper" / "logic.py"
    nested.write_text("X = 1\n")
    before = code_hash(pkg)
    (pkg / "sub" / "__pycache__").mkdir()
    (pkg / "sub" / "__pycache__" / "logic.cpython-311.pyc").write_bytes(b"\0")
    (pkg / "sub" / "notes.txt").write_text("not code")
    assert code_hash(pkg) == before            # caches and non-Python files do not count
    nested.write_text("X = 2\n")
    assert code_hash(pkg) != before
    nested.write_text("X = 1\n")
    assert code_hash(pkg) == before
    nested.rename(pkg / "sub" / "logic.py")   # the same bytes elsewhere is other code
    assert code_hash(pkg) != before


def test_parameter_files_are_all_of_parameters_but_batch_files():
    got = {f.relative_to(PARAMETERS_DIR).as_posix() for f in parameter_files()}
    assert "demo.yaml" not in got
    assert {"codes.yaml", "programmes.yaml"} <= got
    assert {f"indicators/{f.name}" for f in (PARAMETERS_DIR / "indicators").glob("*.yaml")} <= got
    assert is_batch_file(PARAMETERS_DIR / "demo.yaml")
    assert not is_batch_file(PARAMETERS_DIR / "codes.yaml")
    assert not is_batch_file(PARAMETERS_DIR / "programmes.yaml")


def test_parameters_hash_sees_every_rules_file_but_no_batch_file(tmp_path):
    params = tmp_path / "parameters"
    shutil.copytree(PARAMETERS_DIR, params)
    before = parameters_hash(params)
    assert before == parameters_hash(PARAMETERS_DIR)   # names relative to the folder

    # a batch file, new or edited, changes nothing
    (params / "region_north.yaml").write_text("description: the north\nquarters: [2025Q2]\n"
                                              "practices: ['01000001']\nreports: [his_analyse]\n")
    demo = params / "demo.yaml"
    demo.write_text(demo.read_text() + "\n# edited\n")
    assert parameters_hash(params) == before

    # a rules file in a sub-folder or a new file at the top does change it
    indicator = sorted((params / "indicators").glob("*.yaml"))[0]
    indicator.write_text(indicator.read_text() + "\n# edited\n")
    edited = parameters_hash(params)
    assert edited != before
    (params / "veelgebruikers.yaml").write_text("profiles:\n  - id: P1\n")
    assert parameters_hash(params) != edited
    # a top-level YAML with a key no batch file has is a rules file
    assert not is_batch_file(params / "veelgebruikers.yaml")


def test_hidden_files_do_not_count(tmp_path):
    params = tmp_path / "parameters"
    shutil.copytree(PARAMETERS_DIR, params)
    before = parameters_hash(params)
    (params / ".codes.yaml.swp").write_bytes(b"editor state")
    assert parameters_hash(params) == before
    assert Path(params / "codes.yaml") in parameter_files(params)
