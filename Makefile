# Set-up and checks. `make test` and `make demo` are all a fresh machine needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

SHARED_DATA ?= ../shared/data

# The deployment (docs/deployment.md). COMPOSE: `docker compose` (v2) where installed, else docker-compose (v1).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
GIT_COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
export GIT_COMMIT
# AIRGAP=1: base images from docker/airgap/build-bases.sh instead of a registry. Unset, it is chosen
# when a compose target runs: the registry's python:3.11-slim-bookworm if it is here or can be pulled,
# else the airgap bases (built first if missing). AIRGAP= (empty) forces the registry.
AIRGAP ?= $(shell docker image inspect python:3.11-slim-bookworm >/dev/null 2>&1 || docker pull -q python:3.11-slim-bookworm >/dev/null 2>&1 || echo 1)
COMPOSE_CPU_FILES = docker-compose.cpu.yml $(if $(AIRGAP),docker/airgap/docker-compose.airgap.yml)
COMPOSE_GPU_FILES = docker-compose.yml $(if $(AIRGAP),docker/airgap/docker-compose.airgap.yml)

.PHONY: test test-fast lint data demo serve bench bench-train bench-stream compare venv clean help compose-up compose-up-cpu compose-down compose-test airgap-bases

help:
	@echo "make demo       the service end to end: a robust teacher, then a GACD student, through the HTTP API"
	@echo "make serve      gacd serve: Redis, workers and the API on this machine"
	@echo "make bench      API load test: 100 clients polling job status and listing jobs (benchmarks/load.py)"
	@echo "make bench-train  training and PGD-20 evaluation throughput, naive reference vs ours (benchmarks/train_throughput.py)"
	@echo "make bench-stream  peak RSS and images/s of an epoch streamed from 2,000 and 20,000 224-px JPEGs, and in memory (benchmarks/stream_memory.py)"
	@echo "make compare    the method comparison (benchmarks/compare.py): make compare SCALE=cpu COMPARE_ARGS=--train"
	@echo "make test       create $(VENV) if needed, install the project, run the whole test suite"
	@echo "make test-fast  the fast unit tests only (no training runs, no command line or service processes)"
	@echo "make lint       ruff and mypy"
	@echo "make compose-up-cpu   the deployment on this machine without a GPU (docker-compose.cpu.yml)"
	@echo "make compose-up       the deployment with an NVIDIA GPU worker (docker-compose.yml)"
	@echo "make compose-down     stop the deployment (volumes kept)"
	@echo "make compose-test     build the images, run a job through the CPU stack, restart Redis and the worker (needs Docker)"
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
	$(PY) -m service.launch.demo

serve: $(STAMP)
	$(VENV)/bin/gacd serve

bench: $(STAMP)
	$(PY) benchmarks/load.py

# make compare SCALE=cpu [COMPARE_ARGS="--train --split val --variants"]: the method comparison (benchmarks/compare.py)
SCALE ?= cpu
# The table alone needs no data (the committed run folders hold the reports); training needs CIFAR-10.
compare: $(if $(findstring --train,$(COMPARE_ARGS)),data,$(STAMP))
	$(PY) benchmarks/compare.py --scale $(SCALE) --data-root data $(COMPARE_ARGS)

bench-train: $(STAMP)
	$(PY) benchmarks/train_throughput.py --json benchmarks/train_throughput.json

# generates its JPEG folders under .cache/stream_bench/ (not committed) the first time
bench-stream: $(STAMP)
	$(PY) benchmarks/stream_memory.py --json benchmarks/stream_memory_cpu.json

# The compose end-to-end test runs only in `make compose-test` (it builds images and starts containers).
test: $(STAMP)
	$(PY) -m pytest -m "not docker"

# The unit tests that take seconds: no training runs, no command line or service processes (pyproject.toml's
# markers say which tests are unit, slow and e2e).
test-fast: $(STAMP)
	$(PY) -m pytest -m "unit and not slow and not e2e"

secrets/api-keys.txt:
	@mkdir -p secrets
	@printf 'default %s\n' "$$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')" > $@
	@chmod 644 $@
	@echo "wrote $@ (tenant 'default'; its key is the second field)"

airgap-bases:
	@docker image inspect gacd-base/python:3.11-bookworm gacd-base/redis:7-bookworm >/dev/null 2>&1 \
		|| docker/airgap/build-bases.sh

compose-up-cpu: secrets/api-keys.txt
	$(if $(AIRGAP),@$(MAKE) --no-print-directory airgap-bases)
	$(COMPOSE) $(addprefix -f ,$(COMPOSE_CPU_FILES)) up -d --build

compose-up: secrets/api-keys.txt
	$(if $(AIRGAP),@$(MAKE) --no-print-directory airgap-bases)
	$(COMPOSE) $(addprefix -f ,$(COMPOSE_GPU_FILES)) up -d --build

compose-down:
	$(COMPOSE) $(addprefix -f ,$(COMPOSE_CPU_FILES)) down

compose-test: $(STAMP)
	$(if $(AIRGAP),@$(MAKE) --no-print-directory airgap-bases)
	@mkdir -p var
	GACD_COMPOSE_FILES="$(COMPOSE_CPU_FILES)" GACD_COMPOSE_RECORD=$${GACD_COMPOSE_RECORD:-var/compose-test.json} \
		$(PY) -m pytest -m docker tests/test_compose.py -rs -s

lint: $(STAMP)
	$(VENV)/bin/ruff check gacd_core service worker tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
