# followup: two commands for a fresh clone (see README.md).
#   make demo   install, then run the whole loop on a real-format LVK alert against the sandbox
#   make test   install, then run the test suite (what CI runs)
#   make install  the venv, and Debian's chromium for the browser test when it is missing

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian's chromium drives the Prefect UI in tests/test_observatory.py (playwright-core only).
CHROMIUM := /usr/bin/chromium

export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: demo test lint format lock bench clean install production

install: $(STAMP) $(CHROMIUM)

# The venv is rebuilt whenever the lock or the project metadata changes.
$(STAMP): requirements/dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Installed from Debian's registry, non-interactively (as root, else with sudo); never a browser
# build downloaded by playwright.
$(CHROMIUM):
	@if command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "installing Debian's chromium for the browser test"; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else \
		echo "no apt-get here: install chromium at $(CHROMIUM) for the browser test" >&2; \
	fi

demo: $(STAMP)
	$(BIN)/followup demo $(if $(ONCE),--once) $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(ALERT),--alert $(ALERT)) $(if $(SUMMARY_JSON),--summary-json $(SUMMARY_JSON)) $(if $(TIMEOUT),--timeout $(TIMEOUT)) $(if $(FIELDS),--fields $(FIELDS))

# The production profile on this machine: Prefect on PostgreSQL (2 API processes, Redis), the
# ledger on PostgreSQL, 2 process workers, a local Dask cluster (README: Production profile).
# ROOT: where its state goes (default: here). SIGTERM to make or Ctrl-C stops it all in seconds.
production: $(STAMP)
	$(BIN)/python -m deployments.production $(if $(ROOT),--root $(ROOT))

# TEST_WORKERS: pytest-xdist workers (default 2, one per core), a module whole on one of them;
# the stack modules first (the demo and the burst on one worker, the others one after the other
# on the second), then the rest (tests/conftest.py). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerate the pinned, hashed locks from pyproject.toml (needs the index).
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --generate-hashes \
		-o requirements/runtime.lock pyproject.toml
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --generate-hashes \
		--extra dev -o requirements/dev.lock pyproject.toml

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) .prefect .followup build *.egg-info
