"""Same inputs, same bytes: two ``spiegel build --force`` of one dataset into one outputs
folder give identical reports. Without SOURCE_DATE_EPOCH only the provenance stamp's
generation time may differ; with it the manifest's output hashes are identical too.

The executed ``.ipynb`` is not compared: papermill stores its own start and end times and a
random id for the injected parameters cell in it (written by the runner)."""

from __future__ import annotations

import base64
import re

import pytest

from conftest import Group, build, counts, manifest, quarter_of

pytestmark = pytest.mark.slow

GENERATED = re.compile(r"(<dt>Gegenereerd op</dt><dd>)[^<]*(</dd>)")


@pytest.fixture(scope="module", autouse=True)
def stable_code_version():
    """Other work commits to this repository while the tests run; the stamp's code version
    (``git describe``) is pinned like the code hash (tests/e2e/conftest.py)."""
    from helpers import cube
    from helpers.batch import plan
    pinned = plan.code_version(cube.prepare.code_hash())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan, "code_version", lambda _code_hash: pinned)
        yield


@pytest.fixture(scope="module")
def group(tmp_path_factory) -> Group:
    return Group(tmp_path_factory.mktemp("reproducible"))


def _build(group: Group, *extra: str) -> dict:
    code, out = build(group.batch("repro"), *extra)
    assert code == 0 and counts(out)["failed"] == 0, out
    q = group.root / "out-repro" / quarter_of(group.root / "out-repro")
    files = {p.relative_to(q).as_posix(): p.read_bytes()
             for p in sorted(q.glob("*/*")) if p.suffix in (".html", ".pdf", ".csv")}
    hashes = {name: {k: v["sha256"] for k, v in r["outputs"].items() if k != "ipynb"}
              | {x["path"]: x["sha256"] for x in r["extras"]}
              for name, r in manifest(group.root / "out-repro", q.name)["runs"].items()}
    return {"files": files, "hashes": hashes}


def _svgs(page: str) -> list[str]:
    return [base64.b64decode(b).decode() for b in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", page)]


def test_rebuild_gives_the_same_html_apart_from_the_generation_time(group, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = _build(group)
    second = _build(group, "--force")
    pages = [n for n in first["files"] if n.endswith(".html")]
    assert len(pages) == len(group.practices)
    for name in pages:
        a, b = (GENERATED.sub(r"\1…\2", run["files"][name].decode()) for run in (first, second))
        assert GENERATED.search(first["files"][name].decode()), "the stamp carries the generation time"
        assert a == b, f"{name} differs between two builds of the same inputs"
        svgs = _svgs(a)
        assert svgs and not [s for s in svgs if "<dc:date>" in s], "no date in the figures"
    for name in first["files"]:
        if name.endswith(".csv"):
            assert first["files"][name] == second["files"][name], name


def test_with_source_date_epoch_every_output_hash_is_the_same(group, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    first = _build(group, "--force")
    second = _build(group, "--force")
    assert first["hashes"] == second["hashes"]
    assert all({"html", "pdf"} <= set(h) for h in first["hashes"].values())
    assert first["files"] == second["files"]
    page = next(v for k, v in first["files"].items() if k.endswith(".html")).decode()
    assert "<dt>Gegenereerd op</dt><dd>21-09-2026 14:13 UTC</dd>" in page


def test_preparing_a_quarter_twice_gives_the_same_cube_bytes(group):
    """Every parquet file of the quarter cube, practice-level and shared, is byte-identical
    after a second prepare: no float sum depends on the order DuckDB's threads add in (whole
    days are summed, then divided; rows reach pandas in a fixed order)."""
    import hashlib
    from pathlib import Path

    from helpers.cube import prepare_quarter
    from helpers.warehouse import Warehouse

    if not Path(group.warehouse).exists():
        Warehouse(group.warehouse).ingest(group.dataset)
    latest = max(Warehouse(group.warehouse).practices()["extraction_date"])
    from helpers.quarter import Quarter
    import pandas as pd
    quarter = str(Quarter.latest_complete(pd.Timestamp(latest).date()))

    def digest() -> dict[str, str]:
        cube = Path(prepare_quarter(group.warehouse, quarter, force=True))
        return {p.relative_to(cube).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(cube.rglob("*.parquet"))}

    first, second = digest(), digest()
    assert "mirror.parquet" in first and "shared/verkenning_spiegel.parquet" in first
    assert first == second, [k for k in first if first[k] != second.get(k)]
