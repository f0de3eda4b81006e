# A GPU worker: the Celery app of worker/ on a CUDA build of PyTorch. Run one container per GPU.
#
#   docker build -f docker/worker.Dockerfile -t gacd-worker .      (from the repository root)
#
# torch and torchvision come from the official PyTorch image, which ships the two as a matched pair
# (a torchvision built against a different torch fails at import or in its C++ ops). The image tag is
# derived from the versions pyproject.toml pins; tests/test_deployment.py checks that they agree, and
# the build below fails if the image's torch or torchvision differ from the pins. The tag follows the
# pytorch/pytorch scheme <torch>-cuda<X.Y>-cudnn<N>-runtime; check that it is published (or pass
# --build-arg CUDA_FLAVOR=...) before building, since no registry could be queried where this was written.
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG CUDA_FLAVOR=cuda13.0-cudnn9-runtime
FROM pytorch/pytorch:${TORCH_VERSION}-${CUDA_FLAVOR}
ARG TORCH_VERSION
ARG TORCHVISION_VERSION

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Same uid/gid as the API image: both write to the shared artifact store.
RUN groupadd --system --gid 10001 gacd \
 && useradd --system --uid 10001 --gid gacd --create-home --home-dir /home/gacd --shell /usr/sbin/nologin gacd

# How torch is kept as the base image has it:
#  1. the dependency list installed here names neither torch nor torchvision;
#  2. a constraints file pins both to the versions already installed, so a dependency asking for
#     another torch makes pip fail instead of silently replacing the CUDA build;
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

# Defaults for a bare `docker run`; docker-compose.yml sets them all explicitly.
ENV GACD_ARTIFACT_ROOT=/var/lib/gacd/artifacts \
    GACD_DATA_ROOT=/data \
    GACD_WORKER_DEVICE=cuda

USER gacd
WORKDIR /home/gacd

# The health check (the worker's own heartbeat in Redis) is defined in docker-compose.yml.
# service.commands.worker_command(), verbatim (tests/test_deployment.py checks it).
CMD ["celery", "-A", "worker.app", "worker", "--pool", "solo", "--concurrency", "1", "-Q", "gacd,gacd.validate", "-n", "worker@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
