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
	# compiled at install time on purpose: where PYTHONDONTWRITEBYTECODE is set (CI images,
	# this project's own machine) Python never caches a module it compiles on import, so with
	# --no-compile every process (worker, kernel factory, CLI) compiled its imports again,
	# and the demo build took twice as long
	$(BIN)/python -m pip install --quiet -e '.[test]'
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
