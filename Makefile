# The two commands of the README:
#   make demo   set up everything, generate the demo care group, load it, build every report
#   make test   run the whole test suite (.ci/run calls exactly this)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
BATCH  ?= parameters/demo.yaml

.PHONY: demo setup system test test-fast bench clean

demo: setup
	$(BIN)/spiegel demo-data --out data/demo
	$(BIN)/spiegel ingest data/demo
	$(BIN)/spiegel build $(BATCH)

setup: system $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# --no-compile: Python compiles a module when it is first imported; compiling every file
	# of every package at install time cost 35 of the setup's 90 s (JupyterLab's server and
	# widgets, pandas' tests) on a 2-core machine. The venv's own pip is new enough (>= 21.3).
	$(BIN)/python -m pip install --quiet --no-compile -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Debian's chromium prints the PDFs; poppler-utils checks them in the tests.
system:
	@bash scripts/ensure-system-packages.sh

# the tests, then the package's own doctests (every public helper's example call)
test: setup
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest -q --doctest-modules src/helpers

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf outputs/20* outputs/index.html data/demo data/demo.ground_truth.csv data/warehouse.duckdb data/cube
