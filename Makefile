# Set-up and checks. `make test` and `make demo` are all a fresh machine needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

SHARED_DATA ?= ../shared/data

.PHONY: test test-fast lint data demo serve bench bench-train venv clean help

help:
	@echo "make demo       the service end to end: a robust teacher, then a GACD student, through the HTTP API"
	@echo "make serve      gacd serve: Redis, workers and the API on this machine"
	@echo "make bench      API load test: 100 clients polling job status and listing jobs (benchmarks/load.py)"
	@echo "make bench-train  training and PGD-20 evaluation throughput, naive reference vs ours (benchmarks/train_throughput.py)"
	@echo "make test       create $(VENV) if needed, install the project, run the whole test suite"
	@echo "make test-fast  the unit tests only (no training on real data)"
	@echo "make lint       ruff and mypy"
	@echo "make data       CIFAR-10 into ./data (decoded from $(SHARED_DATA) when present, else downloaded)"
	@echo "make venv       create $(VENV) and install the project, nothing else"
	@echo "make clean      remove caches (keeps $(VENV))"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,service]'
	@touch $(STAMP)

venv: $(STAMP)

data: $(STAMP)
	@if [ -f data/cifar-10-batches-py/test_batch ]; then echo "data/cifar-10-batches-py is already there"; \
	elif [ -f $(SHARED_DATA)/cifar10/make_batches.py ]; then $(PY) $(SHARED_DATA)/cifar10/make_batches.py data; \
	else $(PY) -c "from torchvision.datasets import CIFAR10; CIFAR10('data', train=True, download=True)"; fi

demo: data
	$(PY) -m service.demo

serve: $(STAMP)
	$(VENV)/bin/gacd serve

bench: $(STAMP)
	$(PY) benchmarks/load.py

bench-train: $(STAMP)
	$(PY) benchmarks/train_throughput.py --json benchmarks/train_throughput.json

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check gacd_core service worker tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
