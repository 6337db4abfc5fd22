# Set-up and everyday commands. `make run` and `make test` each install what they need.
PYTHON ?= python3
VENV := .venv
UPSTREAM_VENV := .venv-upstream
CLIENTS := tests/clients
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test lint bench conformance clean

install: $(VENV)/.installed $(UPSTREAM_VENV)/.installed $(CLIENTS)/node_modules/.installed $(CHROMEDRIVER)

$(VENV)/.installed: pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements/dev.lock
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

# SecantusDB (the embedded upstream) lives in its own environment: it runs as a
# separate process and is never imported by Argon.
$(UPSTREAM_VENV)/.installed: requirements/upstream.lock
	$(PYTHON) -m venv $(UPSTREAM_VENV)
	$(UPSTREAM_VENV)/bin/pip install --quiet -r requirements/upstream.lock
	touch $@

$(CLIENTS)/node_modules/.installed: $(CLIENTS)/package.json $(CLIENTS)/package-lock.json
	cd $(CLIENTS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The console's browser tests drive Debian's Chromium through its WebDriver.
$(CHROMEDRIVER):
	$(SUDO) apt-get install -y --no-install-recommends chromium chromium-driver \
	  || ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium chromium-driver)

run: $(VENV)/.installed $(UPSTREAM_VENV)/.installed
	$(VENV)/bin/argon serve

test: install
	$(VENV)/bin/pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(VENV)/bin/python -m bench

# pymongo's own test suite direct to SecantusDB and through Argon (main, then a
# fresh branch); prints a comparison table. Downloads the pinned pymongo sdist once.
conformance: install
	$(VENV)/bin/python -m conformance $(CONFORMANCE_ARGS)

clean:
	rm -rf $(VENV) $(UPSTREAM_VENV) $(CLIENTS)/node_modules data
