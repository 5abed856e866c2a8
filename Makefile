# One obvious command per task. Each installs what it needs into ./.venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# GPUStack 2.3 in its own test-only virtualenv (`make gpustack-env`): the `gpustack` tests
# and bench/gpustack.py find it through this variable, and skip (fail on CI) without it.
GPUSTACK_VENV ?= /var/cache/tokenbridge-ci/gpustack-venv
export TOKENBRIDGE_TEST_GPUSTACK_PYTHON ?= $(GPUSTACK_VENV)/bin/python
# The official OpenAI instrumentation with the real openai client (`make openai-v2-env`, the
# record-openai-v2 extra): tests/system/test_source_rule_openai_v2.py runs its producer app
# with this python, and skips (fails on CI) without it.
OPENAI_V2_VENV ?= /var/cache/tokenbridge-ci/openai-v2-venv
export TOKENBRIDGE_TEST_OPENAI_V2_PYTHON ?= $(OPENAI_V2_VENV)/bin/python

.PHONY: install run test lint bench demo clean gpustack-env openai-v2-env

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
bench-sources: install  ## only the source-rule lines of make bench (ARGS go to bench.sources)
	$(PY) -m bench.sources $(ARGS)

bench-replicas: install  ## only the replica table of make bench (ARGS go to bench/replicas.py)
	$(PY) bench/replicas.py $(ARGS)

lint: install
	$(VENV)/bin/ruff check collector exporters tests
	$(VENV)/bin/mypy

bench: install  ## throughput, latency and memory figures beside their references (PostgreSQL at 127.0.0.1:5432)
	$(PY) -m bench.run $(ARGS)
	$(PY) bench/replicas.py
	$(PY) bench/gpustack.py
	$(PY) -m bench.partitions

.PHONY: bench-gpustack
bench-gpustack: install  ## only GPUStack 2.3's collector beside tokenbridge's gpustack layout
	$(PY) bench/gpustack.py $(ARGS)

gpustack-env:  ## GPUStack 2.3.0 in its own test-only virtualenv (about 900 MB; reused when there)
	.ci/gpustack-env $(GPUSTACK_VENV)

openai-v2-env:  ## opentelemetry-instrumentation-openai-v2 + openai in a test-only virtualenv (reused while its pins hold)
	PYTHON=$(PYTHON) .ci/openai-v2-env $(OPENAI_V2_VENV)

demo: install  ## serve on SQLite in a temp dir, send synthetic traffic, print the usage report
	$(VENV)/bin/tokenbridge demo $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
