# `make train` and `make test` are the only set-up a new machine needs: both create .venv
# and install genlab into it when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.genlab-installed
ARGS ?=

.PHONY: install train test lint format bench mutate gpu-wheels docs docs-serve clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

## train the default model (deep autoencoder on the bundled MNIST digits); extra Hydra overrides via ARGS="..."
train: $(STAMP)
	$(PY) -m genlab.train $(ARGS)

## run the test suite (CPU, a few minutes)
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

format: $(STAMP)
	$(PY) -m ruff check --fix src tests benchmarks
	$(PY) -m ruff format src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/throughput.py $(ARGS)

## mutation testing of the modules where a wrong sign or constant gives wrong science, or a
## resume, a layer or a pair silently does nothing: one group at a time on a scratch copy
## (groups: losses distributions distances generation gan data progressive paired health
## resume; benchmarks/results/mutation.md says how long each takes; ARGS="progressive paired")
mutate: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[mutate]"
	OMP_NUM_THREADS=1 $(PY) benchmarks/mutate.py $(ARGS)

## the wheels the lent GPU machine lacks, for its Python 3.12 (benchmarks/gpu/wheels; docs/gpu.md)
gpu-wheels: $(STAMP)
	$(PY) benchmarks/gpu/fetch_wheels.py $(ARGS)

## build the documentation site (docs/, mkdocs.yml) into site/; warnings are errors
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

## serve the documentation at http://127.0.0.1:8000, rebuilt on every edit
docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

clean:
	rm -rf logs outputs multirun wandb .pytest_cache site
