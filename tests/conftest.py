"""Shared fixtures: one demo care group per test session, generated and loaded for real."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.quarter import Quarter

DEMO_PRACTICES = int(os.environ.get("SPIEGEL_TEST_PRACTICES", "12"))


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """The default demo care group (12 practices), written by the real generator."""
    from helpers.demo import generate
    out = tmp_path_factory.mktemp("demo") / "demo"
    generate(out, practices=DEMO_PRACTICES)
    return out


@pytest.fixture(scope="session")
def demo_warehouse(demo_dataset, tmp_path_factory) -> Path:
    """The demo care group loaded into a real DuckDB warehouse file."""
    from helpers.warehouse import Warehouse
    path = tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"
    report = Warehouse(path).ingest(demo_dataset)
    assert report.ok, report.summary()
    return path


@pytest.fixture(scope="session")
def demo_quarter(demo_warehouse) -> Quarter:
    from helpers.warehouse import Warehouse
    import pandas as pd
    latest = pd.to_datetime(Warehouse(demo_warehouse).practices()["extraction_date"]).max().date()
    return Quarter.latest_complete(latest)


@pytest.fixture(scope="session")
def demo_cube(demo_warehouse, demo_quarter) -> Path:
    from helpers.cube import prepare_quarter
    return prepare_quarter(demo_warehouse, demo_quarter)
