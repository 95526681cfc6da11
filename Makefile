# gmnae — the two commands a newcomer needs:
#   make train   set up, build the embedded default zoo if missing, train the autoencoder on it
#   make test    set up, run the test suite (what CI runs; `make test-fast`: the unit tier only)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATASET ?= digits-inr
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup train zoo test test-fast test-all wheel-check bench experiment gpu-check scatter clean

$(BIN)/gmnae: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,lap]'
	touch $@

setup: $(BIN)/gmnae

train: setup
	$(BIN)/gmnae train --build-zoo dataset=$(DATASET) $(ARGS)

zoo: setup
	$(BIN)/gmnae zoo build $(DATASET)

test: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Build a wheel, install it into a fresh venv, build a tiny zoo and train one epoch outside the checkout.
wheel-check: setup
	PY=$(BIN)/python bash .ci/wheel_check.sh

# The unit tier (no trained zoo, < 2 min on 2 cores): the edit-test loop. tests/conftest.py says what is a unit test.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not integration" $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m benchmarks

# A research study of experiments/ (python -m experiments lists them): regenerates its tables into
# runs/experiments/NAME/results.md, e.g. make experiment NAME=kway ARGS=--dry-run
NAME ?=
experiment: setup
	$(BIN)/python -m experiments $(NAME) $(ARGS)

# Every GPU check in one run (<= 8 min on one GPU); skips with one line where there is no CUDA device.
gpu-check:
	bash scripts/gpu_check.sh

# Optional: torch-scatter has no wheels; it builds from source against the installed torch (~6 min on 2 cores).
scatter: setup
	$(BIN)/pip install --no-build-isolation -e '.[scatter]'

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache build dist
