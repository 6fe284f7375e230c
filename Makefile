# Two commands matter on a fresh machine: `make demo` and `make test`.
# Each creates .venv when it is missing or older than pyproject.toml / constraints.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Keep Prefect's database, results and logs inside the checkout, away from ~/.prefect.
export PREFECT_HOME ?= $(CURDIR)/.prefect-home
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export PREFECT_SERVER_HOST ?= 127.0.0.1
export PREFECT_SERVER_PORT ?= 4200

.PHONY: venv demo test check lint typecheck fmt server serve deploy stack bench bench-sharded bench-tenant bench-status soak emulator clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m splendor_flows.demo

# pytest-xdist: PYTEST_WORKERS processes share the tests (tests/conftest.py says how the suites that share a
# server stay together). Most tests wait on servers, subprocesses and polls, so more processes than cores
# pays: five of them run the server groups, the others the rest. PYTEST_WORKERS=0 runs everything in
# this process. PYTEST_ARGS picks a part, e.g.
# `make test PYTEST_ARGS=tests/flows` or `make test PYTEST_ARGS="--ignore=tests/e2e_stack"`.
# The 20 slowest test phases close every run's output, to show where the time goes.
PYTEST_WORKERS ?= 7
PYTEST_ARGS ?=
# Bytecode caching on for the tests, whatever the environment says (some images set PYTHONDONTWRITEBYTECODE):
# the suite starts hundreds of Python processes (xdist's, servers, workers, flow runs, CLI runs) importing
# the same modules, and without the cache each compiles them from source again and every xdist process
# rewrites every test module's asserts anew. Measured: collecting the suite 6.4 -> 3.0 s of CPU per
# process, importing the flows, the CLI and the emulator 1.45 -> 1.28 s per process.
WITH_BYTECODE := PYTHONDONTWRITEBYTECODE=
test: $(STAMP)
	$(WITH_BYTECODE) $(PY) -m pytest -q -n $(PYTEST_WORKERS) --durations=20 $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy --strict on every product package (files in pyproject's [tool.mypy]); flows/, tasks/ and
# deployments/ are checked as the splendor_flows subpackages they install as (see .ci/typecheck.py).
typecheck: $(STAMP)
	$(PY) .ci/typecheck.py

# The inner loop while changing code: ruff, mypy --strict and every test that starts no server, browser
# or database (tests/conftest.py marks the others `server`; one that starts a server unmarked fails here).
# About 11 s on two cores with warm caches (mypy from a cold cache adds some 40 s); `make test` stays the whole suite.
check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) .ci/typecheck.py
	$(WITH_BYTECODE) SPLENDOR_TESTS_NO_SERVER=1 $(PY) -m pytest -q -n 0 -m "not server"

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# One table of fleet, polling and overhead figures (docs/fleet.md). BENCH_N=1000 for the big fleet.
bench: $(STAMP)
	$(PY) -m bench

# The sharded fleet on the stack: N sources on 1, 2 and 4 workers, and the floor (docs/fleet.md).
# BENCH_N=1000 for a thousand sources; BENCH_SHARDED_ARGS="--workers 1,2" for fewer stacks, "--again" for a
# second fleet on each stack, "--onboarded" for the sources' slots made first, as `apply` makes them.
bench-sharded: $(STAMP)
	$(PY) -m bench.sharded $(BENCH_SHARDED_ARGS)

# A tenant's schedules at their real number on the stack (1,000 hourly + 200 every-minute sources by
# default): lateness of each due source's work and orchestration CPU (docs/fleet.md). 25-40 minutes: its
# hourly phase waits for the next quarter hour, then measures one whole window of 15 minutes.
# BENCH_TENANT_ARGS="--hourly 60 --minutely 5 --window 2 --minutes 1" for a quick look (about 12 minutes).
bench-tenant: $(STAMP)
	$(PY) -m bench.tenant $(BENCH_TENANT_ARGS)

# `splendor-flows status` on a tenant of 1,000 connected sources, as a user runs it (docs/status.md).
bench-status: $(STAMP)
	$(PY) -m bench.status $(BENCH_STATUS_ARGS)

# A local Prefect server with its SQLite database under $(PREFECT_HOME); UI at http://127.0.0.1:4200.
server: $(STAMP)
	$(VENV)/bin/prefect server start --host $(PREFECT_SERVER_HOST) --port $(PREFECT_SERVER_PORT)

# Serve every deployment of prefect.yaml from one process (needs `make server` in another terminal).
serve: $(STAMP)
	PREFECT_API_URL=$${PREFECT_API_URL:-http://$(PREFECT_SERVER_HOST):$(PREFECT_SERVER_PORT)/api} \
		$(PY) -m splendor_flows.deployments.serve $(SERVE_ARGS)

# Register prefect.yaml's deployments for the `splendor-local` process pool (created when missing), and
# the tenant's `splendor-api-<tenant>` global concurrency limit (SPLENDOR_API_LIMIT slots, default 50)
# when missing: it bounds the calls to Splendor in flight across every worker. Then the automations of
# deployments/automations.yaml: the safety ones always, the notifications when SPLENDOR_NOTIFY_URL is set
# (or the splendor-notify block exists); a second run changes nothing.
SPLENDOR_API_LIMIT ?= 50
deploy: $(STAMP)
	@export PREFECT_API_URL=$${PREFECT_API_URL:-http://$(PREFECT_SERVER_HOST):$(PREFECT_SERVER_PORT)/api}; \
	$(VENV)/bin/prefect work-pool inspect splendor-local >/dev/null 2>&1 || \
		$(VENV)/bin/prefect work-pool create splendor-local --type process; \
	limit=splendor-api-$${SPLENDOR_TENANT_ID:-acme}; \
	$(VENV)/bin/prefect gcl inspect $$limit >/dev/null 2>&1 || \
		$(VENV)/bin/prefect gcl create $$limit --limit $(SPLENDOR_API_LIMIT); \
	$(VENV)/bin/prefect --no-prompt deploy --all && \
	$(VENV)/bin/splendor-flows automations apply && \
	echo "Now start a worker: PREFECT_API_URL=$$PREFECT_API_URL $(VENV)/bin/prefect worker start --pool splendor-local"

# The production-shaped stack in the foreground: PostgreSQL, a Prefect server on it (UI at
# http://127.0.0.1:4200), the emulator, the deployments and automations, and 2 process workers with
# separate homes; state under var/stack/. Ctrl-C stops all of it. STACK_ARGS="--help" lists the options.
stack: $(STAMP)
	$(PY) -m stack $(STACK_ARGS)

# Chaos soak: minutes, not part of `make test` (which runs a short one). See docs/reliability.md.
soak: $(STAMP)
	$(PY) -m soak $(SOAK_ARGS)

emulator: $(STAMP)
	$(PY) -m splendor_emulator --host 127.0.0.1 --port 8765 --state var/emulator.sqlite

clean:
	rm -rf $(VENV) .prefect-home var .pytest_cache .mypy_cache .ruff_cache
