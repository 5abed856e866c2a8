# One obvious command per task. Each installs what it needs into ./.venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install run test lint bench demo clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install  ## serve on the embedded SQLite default (./tokenbridge.db)
	$(VENV)/bin/tokenbridge serve $(ARGS)

test: install  ## the whole test suite (PostgreSQL tests skip when it is unreachable, fail on CI)
	$(PY) -m pytest $(ARGS)

.PHONY: bench-partitions
bench-partitions: install  ## only the partition and prune figures of make bench
	$(PY) -m bench.partitions $(ARGS)

.PHONY: bench-replicas bench-sources
bench-sources: install  ## only the producer-rule line of make bench (ARGS go to bench.sources)
	$(PY) -m bench.sources $(ARGS)

bench-replicas: install  ## only the replica table of make bench (ARGS go to bench/replicas.py)
	$(PY) bench/replicas.py $(ARGS)

lint: install
	$(VENV)/bin/ruff check collector exporters tests
	$(VENV)/bin/mypy

bench: install  ## throughput, latency and memory figures beside their references (PostgreSQL at 127.0.0.1:5432)
	$(PY) -m bench.run $(ARGS)
	$(PY) bench/replicas.py
	$(PY) -m bench.partitions

demo: install  ## serve on SQLite in a temp dir, send synthetic traffic, print the usage report
	$(VENV)/bin/tokenbridge demo $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
