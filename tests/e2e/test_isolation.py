"""Kernels are not reused between runs, but the worker (and its kernel factory) is: prove
that nothing one practice's run leaves behind reaches the next run in the same worker."""

from __future__ import annotations

import json
import re

import pytest

from conftest import build, counts, manifest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fixture_reports_registered")]


def _probe(nb_path) -> dict:
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", ""))
            if "LEAK PROBE " in text:
                return json.loads(text.split("LEAK PROBE ", 1)[1].splitlines()[0])
    raise AssertionError(f"no leak probe output in {nb_path}")


def test_nothing_of_one_run_reaches_the_next_run_in_the_same_worker(tiny_group):
    batch = tiny_group.batch("isolation", reports=["tiny"], formats=["html"], workers=1)
    code, out = build(batch)
    assert code == 0, out
    assert counts(out)["done"] == 3
    q = re.search(r"quarters (\d{4}Q[1-4])", out).group(1)
    outputs = tiny_group.root / "out-isolation"
    runs = manifest(outputs, q)["runs"]
    assert len({r["worker"] for r in runs.values()}) == 1, "one worker ran all three"
    order = sorted(runs.values(), key=lambda r: r["finished_at"])
    probes = [_probe(outputs / q / r["outputs"]["ipynb"]["path"]) for r in order]
    # each run marked globals, a helpers module attribute, a pandas option, the environment,
    # a file in its working directory and matplotlib's rcParams; the next run sees none of it
    for probe in probes:
        assert probe["global"] is False
        assert probe["module_attr"] is None
        assert probe["pandas_option"] == 60
        assert probe["env"] is None
        assert probe["cwd_files"] == []
        assert probe["rc_facecolor"] != "red"
        assert probe["open_figures"] == 0
    assert len({p["pid"] for p in probes}) == 3, "a fresh kernel process per run"
    # and no practice's name shows up in another practice's report
    names = {r["key"]: r["label"] for r in runs.values()}
    for r in order:
        html = (outputs / q / r["outputs"]["html"]["path"]).read_text()
        for other, name in names.items():
            if other != r["key"] and name != names[r["key"]]:
                assert name not in html
