# Hearth's tasks. `make run` and `make test` work on a fresh machine with python3 >= 3.11.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test check fmt bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt --editable '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## set up and serve on http://127.0.0.1:8765
	$(VENV)/bin/hearth serve $(ARGS)

test: $(STAMP)  ## set up and run every test
	$(PY) -m pytest $(PYTEST_ARGS)

check: $(STAMP)  ## lint, format check and strict typing
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

bench: $(STAMP)  ## benchmarks against their baselines (see README, Performance)
	$(PY) bench/bench_terminals.py
	$(PY) bench/bench_kernels.py

clean:
	rm -rf $(VENV) bench/.venv .pytest_cache .mypy_cache .ruff_cache
