# `make run` runs the default market; `make test` runs the whole suite.
# Both create .venv on first use and install the project with the pins in constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/modelmarket run --out results/default

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests --nbmake --nbmake-timeout=900 notebooks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_market.py

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache .hypothesis
