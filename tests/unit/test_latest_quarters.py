"""`quarters: latest N` in a batch file (and `--quarter "latest N"`): the N latest complete
quarters of the extraction dates, oldest first; a bad N is one line naming it."""

import argparse
from pathlib import Path

import pandas as pd
import pytest

from helpers.batch.batchfile import apply_overrides, parse_batch
from helpers.batch.plan import resolve_selection
from helpers.errors import ParameterError

DF = pd.DataFrame({"practice_agb": ["01000001", "01000002"], "region": ["N", "N"],
                   "extraction_date": ["2025-07-03", "2025-10-02"]})


def _quarters(quarters_value, cli=None):
    b, problems = parse_batch({"quarters": quarters_value, "formats": "html", "warehouse": "w.duckdb"}, "b.yaml")
    assert problems == []
    if cli is not None:
        problems = []
        b = apply_overrides(b, argparse.Namespace(quarter=cli), problems)
        assert problems == []
    return resolve_selection(b, DF, {})[2]


def test_latest_is_the_latest_complete_quarter_of_the_newest_extraction():
    assert _quarters("latest") == ["2025Q3"]


def test_latest_n_gives_the_n_latest_oldest_first():
    assert _quarters("latest 2") == ["2025Q2", "2025Q3"]
    assert _quarters("LATEST 4") == ["2024Q4", "2025Q1", "2025Q2", "2025Q3"]


def test_the_command_line_overrides_the_batch_file():
    assert _quarters("latest 3", cli=["latest"]) == ["2025Q3"]
    assert _quarters("latest", cli=["latest 2"]) == ["2025Q2", "2025Q3"]
    assert _quarters("latest 2", cli=["2025Q1"]) == ["2025Q1"]


@pytest.mark.parametrize("value", ["latest 0", "latest 9", "latest two", "latest -1"])
def test_a_bad_count_is_one_line(value):
    _b, problems = parse_batch({"quarters": value, "formats": "html"}, "b.yaml")
    assert len(problems) == 1
    line = str(ParameterError.from_problems(problems))
    assert line.startswith(f"b.yaml, quarters: found '{value}', expected `latest` or `latest N`") and "e.g. latest 2" in line
