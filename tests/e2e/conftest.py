"""Shared set-up of the end-to-end tests: a small demo care group (3 practices, 2 regions,
one quarter) generated and built once per session, and helpers to run ``spiegel build``."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
sys.path.insert(0, str(FIXTURES))

import fixture_reports  # noqa: E402

from helpers.batch import add_build_arguments, run_build  # noqa: E402


def write_batch(path: Path, **values) -> Path:
    """A batch file; lists and mappings are written as YAML flow style."""
    lines = []
    for key, value in values.items():
        if isinstance(value, (list, dict)):
            lines.append(f"{key}: {json.dumps(value)}")
        else:
            lines.append(f"{key}: {value}")
    path.write_text("\n".join(lines) + "\n")
    return path


def build(batch_file: Path, *extra: str) -> tuple[int, str]:
    """Run ``spiegel build`` in-process; returns (exit status, everything it printed)."""
    parser = argparse.ArgumentParser()
    add_build_arguments(parser)
    args = parser.parse_args([str(batch_file), *extra])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = run_build(args)
    text = out.getvalue()
    print(text)   # shown by pytest when a test fails
    return code, text


def counts(summary: str) -> dict[str, int]:
    """The counts of the 'batch summary' line."""
    m = re.search(r"batch summary: (\d+) runs: (\d+) done, (\d+) skipped \(up to date\), (\d+) failed", summary)
    assert m, f"no summary line in:\n{summary}"
    return dict(zip(("runs", "done", "skipped", "failed"), map(int, m.groups())))


def manifest(outputs: Path, quarter: str) -> dict:
    return json.loads((outputs / quarter / "manifest.json").read_text())


class Group:
    """A generated care group: dataset, warehouse, and the quarter the demo reports on."""

    def __init__(self, root: Path, practices: int = 3):
        from helpers.demo import generate
        self.root = root
        self.dataset = root / "demo"
        self.warehouse = root / "warehouse.duckdb"
        generate(self.dataset, practices=practices)
        self.practices = sorted(p.name for p in (self.dataset / "extracts").iterdir())
        self.quarter = None   # known after the first build (latest complete quarter)

    def batch(self, name: str, **values) -> Path:
        base = {"dataset": self.dataset, "warehouse": self.warehouse, "quarters": "latest",
                "practices": "all", "reports": ["his_analyse"], "formats": ["html", "pdf"],
                "executor": "local", "workers": 2, "timeout": 300, "outputs": self.root / f"out-{name}"}
        base.update(values)
        return write_batch(self.root / f"{name}.yaml", **base)


@pytest.fixture(scope="session")
def care_group(tmp_path_factory) -> Group:
    return Group(tmp_path_factory.mktemp("care_group"))


@pytest.fixture(scope="session")
def tiny_group(tmp_path_factory) -> Group:
    return Group(tmp_path_factory.mktemp("tiny_group"))


@pytest.fixture(scope="session", autouse=True)
def stable_code_hash():
    """Other work may edit ``src/helpers`` while these tests run (an editable install): the
    incremental tests are about data, so the helpers' code hash is pinned in the coordinator.
    That a code change reruns everything is tested in tests/unit/test_batch.py."""
    from helpers.cube import prepare
    pinned = prepare.code_hash()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prepare, "code_hash", lambda: pinned)
        yield


@pytest.fixture(scope="module")
def fixture_reports_registered():
    """The test notebooks ``tiny`` and ``tiny_regio`` in the report registry, for one module."""
    fixture_reports.register()
    yield fixture_reports.FIXTURE_REPORTS
    fixture_reports.unregister()
