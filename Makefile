# Two commands matter: `make run` (local stack) and `make test` (whole suite).
# Both create .venv and install the pinned dependencies on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install run test test-containers bench bench-soak lint format lock proto diagram postman clean

install: $(STAMP)

$(STAMP): requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

run: install
	$(PY) -m devstack

# Three pytest-xdist workers (TEST_WORKERS=0: one process). A unit of work runs whole on
# one: a module, or every module of a stack they share, so each stack starts once; the
# longest units go first (tests/scheduling.py). Many tests wait on processes rather than
# compute, so a third worker on two cores finishes the suite sooner.
TEST_WORKERS ?= 3

test: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The compose stack scaled to 3 x 3 on this machine's Docker engine: the integration suite
# through the gateway, then the fault drills, and a table of their figures (docs/performance.md,
# "The scaled compose stack"). Not part of `make test`; with no Docker engine it says so
# and exits 0 without running anything.
test-containers: install
	$(PY) -m tests.containers.drills $(DRILL_ARGS)

# The benchmark (docs/performance.md): a stack of its own, ceilings, every scenario, one table.
bench: install
	$(PY) -m bench $(BENCH_ARGS)

# Five minutes of create_user at 64 connections: errors and RSS growth.
bench-soak: install
	$(PY) -m bench --soak $(BENCH_ARGS)

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Re-pin every dependency (direct and transitive) from the ranges in pyproject.toml.
lock: install
	$(PY) -m pip install --quiet uv==0.13.8
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 -q -o requirements.txt
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 -q -o requirements-dev.txt

# Regenerate the gRPC code committed in common/rpc/generated (a test fails when it is stale).
proto: install
	$(PY) -m devstack.protos

# Re-render architecture.png from docs/architecture.dot (needs graphviz's `dot`; a test
# fails when the picture is older than its source).
diagram: install
	$(PY) -m devstack.diagram

# Rewrite postman/*.json from devstack/postman.py (a test fails when they are stale).
postman: install
	$(PY) -m devstack.postman

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache postman/node_modules
