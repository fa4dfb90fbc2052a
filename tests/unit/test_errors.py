"""Every error of the family keeps its message and attributes across pickling, a process
pool and Dask: the batch raises them in workers (issue 7, item 6)."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from helpers.errors import (ConfigError, ContractError, IndicatorError, ParameterError, Problem,
                            SpiegelError, WarehouseBusyError, exit_code)

PROBLEMS = [
    Problem("practices.csv", None, None, None, "a file practices.csv (or practices.parquet): it is required"),
    Problem("extracts/01000001/patients.csv", 14, "birth_year", "19x5", "a whole number (e.g. 12)"),
]


def _errors() -> list[SpiegelError]:
    return [
        SpiegelError("dataset data/x is not a folder"),
        ParameterError("quarter '2025Q5' is not a quarter"),
        ConfigError("parameters/codes.yaml: icpc.dm2: 'T9' is not an ICPC code"),
        IndicatorError("parameters/indicators/dm_hba1c.yaml: target must be a number"),
        ContractError(PROBLEMS, subject="dataset data/x", limit=1),
        WarehouseBusyError("data/warehouse.duckdb", "process 4242 (spiegel ingest)", 0.5),
    ]


def _raise(index: int) -> None:
    raise _errors()[index]


def _same(got: BaseException, want: SpiegelError) -> None:
    assert type(got) is type(want)
    assert str(got) == str(want) and got.args == want.args
    assert got.__dict__ == want.__dict__
    if isinstance(want, ContractError):
        assert [p.describe() for p in got.problems] == [p.describe() for p in PROBLEMS]
        assert got.subject == "dataset data/x"


@pytest.mark.parametrize("index", range(len(_errors())), ids=[type(e).__name__ for e in _errors()])
def test_pickle_round_trip(index):
    want = _errors()[index]
    _same(pickle.loads(pickle.dumps(want)), want)


def test_attributes_set_after_raising_survive():
    err = ContractError(PROBLEMS)
    err.practice = "01000001"
    assert pickle.loads(pickle.dumps(err)).practice == "01000001"


def test_errors_cross_a_spawned_process_pool():
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        for index, want in enumerate(_errors()):
            with pytest.raises(type(want)) as caught:
                pool.submit(_raise, index).result(timeout=120)
            _same(caught.value, want)


def test_errors_cross_dask_worker_processes():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        for index, want in enumerate(_errors()):
            future = client.submit(_raise, index, pure=False)
            with pytest.raises(type(want)) as caught:
                future.result(timeout=120)
            _same(caught.value, want)


def test_exit_codes():
    assert [exit_code(e) for e in _errors()] == [2, 2, 2, 2, 2, 3]
    assert exit_code(KeyboardInterrupt()) == 130


def test_one_function_writes_every_problem():
    from helpers.errors import format_problem
    assert format_problem(PROBLEMS[1]) == ("extracts/01000001/patients.csv, line 14, column birth_year: "
                                           "found '19x5', expected a whole number (e.g. 12)")
    flag = Problem(None, None, None, "0", "a whole number of at least 1", fix="or auto", key="--workers")
    assert flag.describe() == format_problem(flag) == "--workers: found '0', expected a whole number of at least 1; or auto"


def test_a_parameter_error_of_many_problems_keeps_them_across_pickling():
    problems = [Problem("b.yaml", None, None, "2025Q5", "a quarter", key="quarters"),
                Problem("b.yaml", None, None, "2025Q5", "a quarter", key="quarters"),
                Problem(None, None, None, "x", "a report id", key="--report")]
    err = ParameterError.from_problems(problems)
    assert str(err).splitlines() == ["b.yaml, quarters: found '2025Q5', expected a quarter",
                                     "--report: found 'x', expected a report id"], "each line said once"
    got = pickle.loads(pickle.dumps(err))
    assert got.problems == problems and str(got) == str(err) and exit_code(got) == 2
