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

.PHONY: help venv collections browser lint sanity pytest test demo demo-down bench bench-lab bench-scale reliability ee-context ee docs galaxy-import clean

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

# One run on one controller at 1,000 clusters: install, backup, status, report (bench-results/scale.json).
bench-scale: collections
	$(BIN)/python tools/bench_scale.py

bench-lab: venv
	$(BIN)/python lab/bench/bench_lab.py
	$(BIN)/python lab/bench/bench_backups.py

# Execution environment (execution-environment.yml): the collection's tarball goes where the
# definition's additional_build_files expects it; ee-context writes the build context only,
# ee builds the image with podman (or docker: make ee EE_RUNTIME=docker).
EE_RUNTIME ?= podman
EE_TAG ?= fleetdr-kube-ee:latest

ee-context: venv
	rm -rf .build/ee && mkdir -p .build/ee
	$(BIN)/ansible-galaxy collection build --output-path .build/ee .
	mv .build/ee/fleetdr-kube-*.tar.gz .build/ee/fleetdr-kube.tar.gz
	$(BIN)/ansible-builder create -f execution-environment.yml -c .build/ee/context --output-filename Containerfile

ee: ee-context
	$(EE_RUNTIME) build -f .build/ee/context/Containerfile -t $(EE_TAG) .build/ee/context

# Collection docs (RST, the Ansible docsite format) rendered by antsibull-docs into $(DOCS_DIR), after
# antsibull-docs' own lint of every plugin's and role's documentation (markup, references).
DOCS_DIR ?= build/docs

docs: collections
	rm -rf $(DOCS_DIR) && mkdir -p $(DOCS_DIR) && chmod 755 $(DOCS_DIR)
	cd $(COLLECTIONS)/ansible_collections/fleetdr/kube && $(BIN)/antsibull-docs lint-collection-docs --plugin-docs .
	$(BIN)/antsibull-docs collection --use-current --fail-on-error --dest-dir $(DOCS_DIR) fleetdr.kube
	@echo "collection docs in $(DOCS_DIR)/collections/fleetdr/kube/"

# Galaxy's import checks of the built tarball, with only this collection installed (as on Galaxy).
galaxy-import: venv
	rm -rf .build/galaxy && mkdir -p .build/galaxy
	$(BIN)/ansible-galaxy collection build --output-path .build/galaxy .
	cd .build/galaxy && env -u ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false \
		GALAXY_IMPORTER_CONFIG=$(CURDIR)/tools/galaxy-importer.cfg $(BIN)/python -m galaxy_importer.main fleetdr-kube-*.tar.gz

clean:
	-$(BIN)/fleetdr-lab down --dir .lab 2>/dev/null
	rm -rf .build .lab tests/output fleetdr-reports build
