# Thin wrappers; each target creates .venv if needed and installs the project.
# Redis: $AIOQ_REDIS_URL when it answers, else a private redis-server that is
# started for the command and stopped after (scripts/with_redis.py).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
WITH_REDIS := $(PY) scripts/with_redis.py --
# One Redis Cluster (3 primaries + 3 replicas) shared by every pytest process of a
# run (AIOQ_REDIS_CLUSTER_URL): the tests marked on_cluster_too run there too.
WITH_CLUSTER := $(PY) scripts/with_cluster.py --

.PHONY: demo pipeline test lint typecheck unit bench chaos docs clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "aioq needs Python 3.11 or newer (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(WITH_REDIS) $(PY) -m examples.quickstart.demo

# A workflow (chain -> chord) with a progress bar: examples/pipeline/.
pipeline: $(STAMP)
	$(WITH_REDIS) $(PY) -m examples.pipeline.run

lint: $(STAMP)
	$(VENV)/bin/ruff check aioq tests examples benchmarks scripts
	$(VENV)/bin/ruff format --check aioq tests examples benchmarks scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Tests mostly wait (on leases, timers, worker processes): 4 pytest processes on
# 2 cores halve the wall time. PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 4

test: lint typecheck
	$(WITH_REDIS) $(WITH_CLUSTER) $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

# The API reference from the docstrings, into site/ (warnings are errors; the
# test suite builds it too: tests/docs/test_api_docs.py).
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

unit: $(STAMP)
	$(PY) -m pytest tests/unit

bench: $(STAMP)
	$(PY) benchmarks/run.py

# The fault-injection suite at full size (make test runs a bounded version).
chaos: $(STAMP)
	AIOQ_CHAOS=full $(PY) -m pytest tests/chaos -v -s

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
