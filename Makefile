# make demo   create .venv, install, run the bundled example (SQLite queue, outbox)
# make test   create .venv, install, start the services the tests need, run the suite
# make check  ruff, mypy --strict and the import-layer contract (lint-imports)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,redis,rabbitmq,api,otel

.PHONY: demo test check lint typecheck layers services bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

demo: $(VENV)/.installed
	mkdir -p demo
	cd demo && ../$(VENV)/bin/mailspool send ../examples/recipients.csv \
		--template ../examples/welcome.txt --campaign welcome --log-format console; \
		rc=$$?; [ $$rc -eq 0 ] || exit $$rc
	@echo "demo: messages are in demo/outbox/welcome/ (the outbox has a folder per campaign); the job store is demo/mailspool.db"

services:
	bash scripts/services.sh

# three at once on two cores: most tests wait on servers and real time, not the CPU;
# those that measure real-time rates (marked serial) then run alone. A module stays on one
# worker (loadscope): its module-scoped servers are shared and its tests keep their order
TEST_WORKERS ?= 3

test: $(VENV)/.installed services
	$(PY) -m pytest -q -ra -n $(TEST_WORKERS) --dist loadscope -m "not serial" $(PYTEST_ARGS)
	$(PY) -m pytest -q -ra -m serial $(PYTEST_ARGS)

check: lint typecheck layers

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# imports only go down the layers of docs/architecture.md (pyproject.toml: tool.importlinter)
layers: $(VENV)/.installed
	$(VENV)/bin/lint-imports

bench: $(VENV)/.installed services
	$(PY) bench/bench_send.py

clean:
	rm -rf $(VENV) demo build *.egg-info .mypy_cache .ruff_cache .pytest_cache
