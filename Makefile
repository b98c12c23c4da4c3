# fleetdr.kube — one entry point for set-up, tests, demo and benchmarks.
# Everything installs into .venv from PyPI; a fresh machine needs only python3.11, pip, gcc, git.
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
COLLECTIONS := $(CURDIR)/.build/collections
STAMP := $(VENV)/.installed

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := false
export PATH := $(BIN):$(PATH)

.PHONY: help venv collections browser lint sanity pytest test demo demo-down bench bench-lab reliability clean

help:
	@echo "make demo   - bring up a 3-cluster lab and run backup -> migrate -> restore with a report"
	@echo "make test   - everything CI runs: lint, sanity, unit, lab and integration tests"
	@echo "make bench  - fleet benchmarks (1/10/50/100 clusters); make bench-lab - lab benchmarks (API, watch, 100 emulated backups)"
	@echo "make reliability - faults (429/503 x10 rounds, down, hung, Velero at 0, location Unavailable, wrong CA, latency), bad inputs, secret scan"

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt lab/pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "python3 (3.11) is required" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet -e lab
	touch $@

# ansible (the community package) ships kubernetes.core; Galaxy is not reachable, so link it
# next to this collection in one collections tree.
collections: venv
	@$(BIN)/python tools/collections_tree.py $(COLLECTIONS)

lint: collections
	$(BIN)/ansible-lint --strict

sanity: collections
	$(BIN)/python tools/sanity.py

# The HTML report is checked in a real browser: Debian's chromium (needs root to install).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

pytest: collections browser
	$(BIN)/python -m pytest

test: lint sanity pytest

demo: collections
	$(BIN)/python tools/demo.py

demo-down: venv
	-$(BIN)/fleetdr-lab down --dir .lab

bench: collections
	$(BIN)/python tools/bench_fleet.py

# Faults and bad input on a 5-cluster lab, ten rounds under 429/503; figures in bench-results/reliability.json.
reliability: collections
	$(BIN)/python tools/reliability.py

bench-lab: venv
	$(BIN)/python lab/bench/bench_lab.py
	$(BIN)/python lab/bench/bench_backups.py

clean:
	-$(BIN)/fleetdr-lab down --dir .lab 2>/dev/null
	rm -rf .build .lab tests/output fleetdr-reports
