# The HTTP API: FastAPI under uvicorn. No torch in this image: the API imports only the torch-free
# part of gacd_core (spec, catalog, errors, normalization; tests/test_layers.py checks it).
#
#   docker build -f docker/api.Dockerfile -t gacd-api .      (from the repository root)
#
# docker-compose.yml builds it as the `api` service; docs/deployment.md describes the deployment.
# The base is the Docker Official Image python:3.11-slim-bookworm (Debian 12, CPython 3.11); where no
# registry is reachable, docker/airgap/build-bases.sh builds a stand-in and BASE_IMAGE names it.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
# A package index or wheelhouse of your own (a mirror for air-gapped sites); pip reads these variables.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The API and the workers run as the same uid/gid, because both write to the shared artifact store.
RUN groupadd --system --gid 10001 gacd \
 && useradd --system --uid 10001 --gid gacd --create-home --home-dir /home/gacd --shell /usr/sbin/nologin gacd

# Dependencies first (a layer that survives code changes), from an explicit torch-free list.
COPY docker/requirements-api.txt /tmp/req/requirements-api.txt
RUN pip install -r /tmp/req/requirements-api.txt

# The project itself, without its dependencies: pyproject.toml pins torch, and --no-deps keeps it out.
# The build fails if torch got in some other way.
COPY pyproject.toml README.md /tmp/src/
COPY gacd_core /tmp/src/gacd_core
COPY service /tmp/src/service
COPY worker /tmp/src/worker
RUN pip install --no-deps /tmp/src \
 && rm -rf /tmp/src /tmp/req \
 && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
 && mkdir -p /var/lib/gacd/artifacts /data \
 && chown gacd:gacd /var/lib/gacd/artifacts /data

# Defaults for a bare `docker run`; docker-compose.yml sets them all explicitly.
ENV GACD_ARTIFACT_ROOT=/var/lib/gacd/artifacts \
    GACD_DATA_ROOT=/data

# The commit the image was built from (.dockerignore drops .git); last, so a new commit rebuilds nothing above.
ARG GIT_COMMIT=
ENV GACD_GIT_COMMIT=${GIT_COMMIT}

USER gacd
WORKDIR /home/gacd
EXPOSE 8000

# Liveness only (/readyz also needs a worker, which is not this container's health). The slim image
# has no curl, so the probe is Python's own HTTP client; a non-2xx answer raises and exits 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# service.launch.commands.api_command("0.0.0.0", 8000), verbatim (tests/test_deployment.py checks it).
CMD ["uvicorn", "service.api.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--no-server-header", "--timeout-graceful-shutdown", "10"]
