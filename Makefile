# contractive_keras: every target works from a fresh clone; .venv/ holds the
# environment, data/ the offline datasets. Re-running a target on a ready tree
# only redoes what changed (stamp files).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export CONTRACTIVE_KERAS_DATA ?= $(CURDIR)/data
PYTEST_ARGS ?=
TRAIN_ARGS ?=

.PHONY: all install install-dev install-bench install-plots data test test-backends test-slow train bench clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.stamp-base: $(PY) setup.cfg pyproject.toml
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-base
	$(PIP) install --quiet -e '.[dev]'
	touch $@

$(VENV)/.stamp-bench: $(VENV)/.stamp-dev
	$(PIP) install --quiet -e '.[dev,bench,plots]'
	touch $@

$(VENV)/.stamp-plots: $(VENV)/.stamp-base
	$(PIP) install --quiet -e '.[plots]'
	touch $@

install: $(VENV)/.stamp-base
install-dev: $(VENV)/.stamp-dev
install-bench: $(VENV)/.stamp-bench
install-plots: $(VENV)/.stamp-plots

data/.stamp: scripts/prepare_data.py | $(PY)
	$(PY) scripts/prepare_data.py --dest data --stamp $@

data: data/.stamp

# Two pytest workers (pytest-xdist), one per core of the project's machine.
PYTEST_WORKERS ?= 2

# make test: the whole suite on TensorFlow, then the tests marked "backends"
# (layers, solvers, constraints, losses, certificates, the zoo, training)
# again under JAX and PyTorch with TensorFlow's import blocked, as on a GPU
# host that has JAX and PyTorch but no TensorFlow.
OTHER_BACKENDS ?= jax torch

test: install-dev data
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-backends

test-backends: install-dev data
	@for backend in $(OTHER_BACKENDS); do \
	  echo "[make] backends-marked tests under KERAS_BACKEND=$$backend, TensorFlow blocked"; \
	  KERAS_BACKEND=$$backend CONTRACTIVE_KERAS_NO_TENSORFLOW=1 \
	    $(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS) || exit 1; \
	done

test-slow: install-dev data
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m slow $(PYTEST_ARGS)
	@for backend in $(OTHER_BACKENDS); do \
	  echo "[make] slow backends-marked tests under KERAS_BACKEND=$$backend, TensorFlow blocked"; \
	  KERAS_BACKEND=$$backend CONTRACTIVE_KERAS_NO_TENSORFLOW=1 \
	    $(PY) -m pytest -n $(PYTEST_WORKERS) -m slow $(PYTEST_ARGS) || exit 1; \
	done

train: install data
	$(PY) train.py --model=chnode --depth=12 $(TRAIN_ARGS)

bench: install-bench data
	$(PY) -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
