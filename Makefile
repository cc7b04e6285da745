# compt — every command a user types. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
# test processes (pytest-xdist; a test file stays in one process, so its module fixtures are built once)
TEST_WORKERS ?= 2
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= disabled
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help install demo test test-fast lint format bench clean

help:  ## list the commands
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# CPU wheel by default; a torch you installed yourself (e.g. CUDA) is kept.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install compt with its dev tools (CPU torch unless one is present)
	@echo "Next: source $(VENV)/bin/activate   (then python train.py ..., compt ..., as in README.md)"

demo: $(STAMP)  ## train the tiny demo (tiny T5 + bundled demo data) and print its results
	$(PY) train.py experiment=demo
	@echo "Next: source $(VENV)/bin/activate   (then python train.py ..., compt report ..., as in README.md)"

test: $(STAMP)  ## run the whole test suite (CPU, offline; TEST_WORKERS=2 processes)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)  ## the suite without the slow end-to-end runs
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

lint: $(STAMP)  ## ruff lint + format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)  ## apply ruff fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP)  ## run the benchmark harness (benchmarks/README.md)
	$(PY) benchmarks/run.py --out bench.json

clean:  ## remove run outputs (not the venv)
	rm -rf outputs multirun lightning_logs wandb .pytest_cache
