# Everyday commands. Each one works from a fresh clone with only Python and make: the
# first run creates .venv and installs what it needs; later runs reuse it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
MUTATION_STAMP := $(VENV)/.installed-mutation
# make demo and make docs need only a part of the toolchain: each has a stamp of its own.
# (-client: the demo's API page needs the [client] extra too; a new stamp installs it.)
DEMO_STAMP := $(VENV)/.installed-demo-client
DOCS_STAMP := $(VENV)/.installed-docs
# make load: how long and how many concurrent clients (see benchmarks/load.py).
SECONDS ?= 60
CLIENTS ?= 16

.PHONY: help test test-fast lint typecheck demo docs browser-test load bench clean mutation

help:
	@echo "make demo   serve the example project with the Bitbucket simulator (PORT=$(PORT))"
	@echo "make test   run the whole test suite (SQLite; DATABASE_URL=... for another database)"
	@echo "make lint   ruff (lint and format check) and mypy"
	@echo "make docs   build the documentation into docs/_build/html (Sphinx, warnings as errors)"
	@echo "make load   installs under load: gunicorn + PostgreSQL (SECONDS=$(SECONDS) CLIENTS=$(CLIENTS))"
	@echo "make bench  the app against hand-written code, side by side (PostgreSQL; BENCH_ARGS=--quick)"
	@echo "make mutation  mutation testing of the protocol core and return trip: score, survivors (not CI)"

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres,browser,lint,example]'
	touch $(STAMP)

# The demo: the app, the example project's extra dependency (django-environ), the API
# client's (httpx, for its API page) and the forge extra's (cryptography, for the
# simulator's Forge page), not the test and lint toolchain.
$(DEMO_STAMP): setup.cfg pyproject.toml
	@echo "make demo: installing the app and the example project into $(VENV) (first run only)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[example,client,forge]'
	@touch $(DEMO_STAMP)

$(DOCS_STAMP): setup.cfg pyproject.toml
	@echo "make docs: installing Sphinx and the furo theme into $(VENV) (first run only)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[docs]'
	@touch $(DOCS_STAMP)

# The benchmarks' own dependencies (gunicorn, psycopg), on top of the everyday ones.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

# BROWSER_TESTS=no leaves the browser tests out of `make test` (.ci/run runs them as a
# step of its own, with REQUIRE_BROWSER=1).
BROWSER_TESTS ?= yes

test: $(STAMP)
	$(BIN)/python -m pytest -n auto --cov --cov-report=term -m "not browser and not concurrency"
ifneq ($(BROWSER_TESTS),no)
	@$(MAKE) --no-print-directory browser-test
endif

browser-test: $(STAMP)
	@if [ ! -d tests/browser ]; then \
		if [ -n "$$REQUIRE_BROWSER" ]; then \
			echo "tests/browser is missing and REQUIRE_BROWSER is set: failing."; exit 1; \
		fi; \
		echo; echo "*** Browser tests did NOT run: there is no tests/browser yet. ***"; echo; \
	elif [ -x "$${CHROMIUM:-/usr/bin/chromium}" ]; then \
		$(BIN)/python -m pytest -p no:randomly -m browser tests/browser; \
	elif [ -n "$$REQUIRE_BROWSER" ]; then \
		echo "Chromium is missing and REQUIRE_BROWSER is set: failing."; exit 1; \
	else \
		echo; echo "*** Browser tests did NOT run: Chromium is missing (apt-get install chromium). ***"; echo; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy bitbucket_install tests scripts benchmarks $(wildcard example_project)

# The example project is for development only: DEBUG is off unless the environment turns
# it on, and the demo needs it on.
demo: $(DEMO_STAMP)
	@DEBUG=on $(BIN)/python example_project/manage.py demo --port $(PORT)

# The documentation site, as CI builds it: every warning (a broken reference too) fails.
docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html
	@printf '*\n' > docs/_build/.gitignore  # the build is never committed
	@echo "The documentation is in docs/_build/html/index.html"

# Concurrent complete installs against gunicorn on PostgreSQL (127.0.0.1:5432, user
# postgres, or LOAD_POSTGRES_URL=...), then a check of the database; fails on any lost or
# duplicated install, 5xx or unexpected answer.
load: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.load --seconds $(SECONDS) --clients $(CLIENTS)

# The benchmarks (benchmarks/run.py): one line per figure, PASS or FAIL; needs
# PostgreSQL (BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432) and creates
# and drops its own databases (named BENCH_DATABASE_PREFIX..., default
# bitbucket_install_bench_). BENCH_ARGS=--quick for a short smoke run.
BENCH_ARGS ?=
bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# Mutation testing with mutmut (its settings: [tool.mutmut] in pyproject.toml), a mutant
# at a time per core, each on its own in-memory SQLite database; not part of CI. Starts
# from an empty mutants/ each time: mutmut keeps the verdicts of unchanged functions even
# when the tests changed, so a kept one could show a gap the tests have since closed.
# MUTANTS='bitbucket_install.tokens.*' tries only the mutants of those names (the score
# then counts only them).
MUTANTS ?=
$(MUTATION_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[mutation]'
	touch $(MUTATION_STAMP)

mutation: $(MUTATION_STAMP)
	rm -rf mutants
	set -f; DATABASE_URL=sqlite:///:memory: HYPOTHESIS_PROFILE=quick $(BIN)/mutmut run $(MUTANTS)
	$(BIN)/python scripts/mutation_score.py

clean:
	rm -rf $(VENV) .tox build dist *.egg-info .coverage .coverage.* htmlcov docs/_build
