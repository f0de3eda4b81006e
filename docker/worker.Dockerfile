# A job worker: the Celery app of worker/ on PyTorch. One image for GPU and CPU workers: PyPI's torch
# wheels for Linux x86_64 bundle the CUDA runtime (as nvidia-* wheels), so a GPU host needs only the
# NVIDIA driver and the container toolkit; on a CPU the same image runs with GACD_WORKER_DEVICE=cpu.
#
#   docker build -f docker/worker.Dockerfile --build-arg GIT_COMMIT=$(git rev-parse HEAD) -t gacd-worker .
#
# The base is the Docker Official Image python:3.11-slim-bookworm (Debian 12, CPython 3.11); where no
# registry is reachable, docker/airgap/build-bases.sh builds a stand-in from a Debian mirror and
# BASE_IMAGE names it. torch and torchvision are installed at the versions pyproject.toml pins
# (tests/test_deployment.py checks that they agree), and the build fails if anything replaced them.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# A package index or wheelhouse of your own (a mirror for air-gapped sites); pip reads these variables.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Same uid/gid as the API image: both write to the shared artifact store.
RUN groupadd --system --gid 10001 gacd \
 && useradd --system --uid 10001 --gid gacd --create-home --home-dir /home/gacd --shell /usr/sbin/nologin gacd

# torch first, in a layer of its own (several GB with its CUDA libraries) that survives code changes.
RUN pip install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

# How torch is kept as installed above:
#  1. the dependency list installed here names neither torch nor torchvision;
#  2. a constraints file pins both to the versions already installed, so a dependency asking for
#     another torch makes pip fail instead of silently replacing it;
#  3. the project itself is installed with --no-deps (its pyproject.toml names torch);
#  4. the last check compares the installed torch and torchvision with the pins.
COPY docker/requirements-api.txt docker/requirements-worker.txt /tmp/req/
RUN printf 'torch==%s\ntorchvision==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" > /tmp/req/constraints.txt \
 && pip install -c /tmp/req/constraints.txt -r /tmp/req/requirements-worker.txt

COPY pyproject.toml README.md /tmp/src/
COPY gacd_core /tmp/src/gacd_core
COPY service /tmp/src/service
COPY worker /tmp/src/worker
RUN pip install --no-deps /tmp/src \
 && rm -rf /tmp/src /tmp/req \
 && python -c "import sys; from importlib.metadata import version as v; \
got = (v('torch').split('+')[0], v('torchvision').split('+')[0]); \
sys.exit(None if got == ('$TORCH_VERSION', '$TORCHVISION_VERSION') else f'torch/torchvision {got} differ from the pins')" \
 && mkdir -p /var/lib/gacd/artifacts /data \
 && chown gacd:gacd /var/lib/gacd/artifacts /data

# Defaults for a bare `docker run`; the compose files set them all explicitly.
ENV GACD_ARTIFACT_ROOT=/var/lib/gacd/artifacts \
    GACD_DATA_ROOT=/data \
    GACD_WORKER_DEVICE=cuda

# The commit the image was built from: report.json's environment.git_commit (.dockerignore drops .git).
# Last, so that a new commit rebuilds no layer above.
ARG GIT_COMMIT=
ENV GACD_GIT_COMMIT=${GIT_COMMIT}

USER gacd
WORKDIR /home/gacd

# The health check (the worker's own heartbeat in Redis) is defined in docker-compose.yml.
# service.launch.commands.worker_command(), verbatim (tests/test_deployment.py checks it).
CMD ["celery", "-A", "worker.app", "worker", "--pool", "solo", "--concurrency", "1", "-Q", "gacd,gacd.validate", "-n", "worker@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
