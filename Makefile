# Hearth's tasks. `make run` and `make test` work on a fresh machine with python3 >= 3.11.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test check fmt bench clean web wire

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt --editable '.[dev]'
	touch $(STAMP)

# The web workspace: built from web/ into the package (src/hearth/static), so a wheel ships it.
WEB_DEPS := web/node_modules/.installed
WEB_BUILT := src/hearth/static/index.html
WEB_SOURCES := $(wildcard web/src/* web/screen/*) web/index.html web/vite*.config.ts web/tsconfig.json

$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

$(WEB_BUILT): $(WEB_DEPS) $(WEB_SOURCES)
	cd web && npm run build

# `npm run build` also bundles the screen model (web/screen/, SPEC §9) into
# src/hearth/terminals/screen-model.mjs, which the session host runs with Node.js.
SCREEN_BUILT := src/hearth/terminals/screen-model.mjs
$(SCREEN_BUILT): $(WEB_DEPS) $(WEB_SOURCES)
	cd web && npm run build

# The workspace's types of the wire (web/src/wire.ts), generated from hearth.protocol.
wire: $(STAMP)
	$(PY) build_support/wire_types.py

web: $(WEB_BUILT) $(SCREEN_BUILT)  ## build the web workspace and the screen model (needs Node.js and npm)

run: $(STAMP) web  ## set up and serve on http://127.0.0.1:8765
	$(VENV)/bin/hearth serve $(ARGS)

test: $(STAMP) web  ## set up and run every test (the browser tests need /usr/bin/chromium)
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
	$(PY) bench/bench_jupyter.py
	$(PY) bench/bench_scale.py
	$(PY) bench/bench_restart.py
	$(PY) bench/bench_screen.py
	$(PY) bench/bench_emulators.py

clean:
	rm -rf $(VENV) bench/.venv .pytest_cache .mypy_cache .ruff_cache web/node_modules src/hearth/static $(SCREEN_BUILT)
