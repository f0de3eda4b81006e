"""The FastAPI application: ``create_app()`` wires settings, the store, the queue, auth and routers.

Run it with ``uvicorn service.api.app:create_app --factory`` (``gacd serve`` does this for you).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import docs, errors, openapi
from service.api.deps import KeyRing
from service.api.routers import datasets, jobs, models, schemas, system, teachers
from service.api.uploads import sweep_partials
from service.state.queue import Queue
from service.state.settings import Settings, get_settings
from service.state.store import STORE_ERRORS, Store, connect

log = logging.getLogger("gacd.api")

DESCRIPTION = """
Robust model compression as a service. Upload an adversarially robust **teacher**, choose a small
**student** architecture and a **dataset**, and submit a **job**: a worker distils the teacher into
the student with GACD (or a baseline) and evaluates both under a fixed protocol (clean, FGSM, PGD-20,
CW-inf, optionally AutoAttack at eps = 8/255). Download `student.safetensors`, `student.onnx` (ONNX
opset 18, dynamic batch, pixels in [0, 1] with the normalisation inside the graph, checked against
PyTorch with ONNX Runtime), `report.json`, `report.html` and `train.log` when it succeeds.

Every request carries `Authorization: Bearer <api key>`; a tenant sees only its own objects (another
tenant's id is a 404). Errors are `{"error": {"code", "message", "field"}}`.
"""


HEARTBEAT_SECONDS = 2.0  # an API process's heartbeat in the store
HEARTBEAT_TTL = 8.0
SWEEP_SECONDS = 10.0  # how often it looks for partial uploads of API processes that stopped


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """While the API runs: keep its heartbeat in the store and sweep partial uploads of dead API processes."""
    task = asyncio.create_task(_housekeeping(app))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(*STORE_ERRORS):
            await run_in_threadpool(app.state.store.fleet.api_gone, app.state.instance)


async def _housekeeping(app: FastAPI) -> None:
    store: Store = app.state.store
    root = app.state.settings.artifact_root
    swept = 0.0
    while True:
        try:
            await run_in_threadpool(store.fleet.api_heartbeat, app.state.instance, HEARTBEAT_TTL)
            if time.monotonic() - swept >= SWEEP_SECONDS:
                swept = time.monotonic()
                removed = await run_in_threadpool(sweep_partials, root, store.fleet.api_alive, HEARTBEAT_TTL)
                if removed:
                    log.warning("removed %d partial uploads left by an API process that stopped", removed)
        except STORE_ERRORS as exc:  # the store is away: no sweeping (nobody's liveness is known)
            log.debug("housekeeping skipped: %s", exc)
        except Exception:
            log.exception("housekeeping failed")
        await asyncio.sleep(HEARTBEAT_SECONDS)


class _Observe:
    """Counts every HTTP request by method, route template and status, and observes its latency up to
    the start of the response (the status line and headers), for ``/metrics``.

    A plain ASGI middleware: it watches the response's first message go by. One written with
    ``@app.middleware("http")`` runs every request in an extra task and passes the body through a
    memory stream: about a sixth of the API's CPU time per request (``benchmarks/RESULTS.md``).
    A request that raises before it answers is not counted (the 500 is sent outside this middleware).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                template = getattr(scope.get("route"), "path", "unmatched")  # set by the router on a match
                m = scope["app"].state.metrics
                m.requests.labels(scope["method"], template, str(message["status"])).inc()
                m.latency.labels(scope["method"], template).observe(time.perf_counter() - t0)
            await send(message)

        await self.app(scope, receive, observed)


def create_app(settings: Settings | None = None, store: Store | None = None, queue: Queue | None = None) -> FastAPI:
    settings = settings or get_settings()
    keys = settings.keys()
    if not keys:
        raise RuntimeError("no API keys: set GACD_API_KEYS or GACD_API_KEYS_FILE (gacd serve makes one for you)")
    app = FastAPI(
        lifespan=_lifespan,
        title="GACD: robust model compression",
        version="1.0.0",
        description=DESCRIPTION,
        docs_url=None,  # FastAPI's pages load their scripts from a CDN: docs.install serves local ones
        redoc_url=None,
        generate_unique_id_function=openapi.operation_id,
    )
    app.state.settings = settings
    app.state.keyring = KeyRing(keys)
    app.state.store = store or Store(connect(settings.redis_url), events_max=settings.events_max)
    app.state.queue = queue or Queue(settings)
    app.state.metrics = system.Metrics(app.state.store, settings)
    app.state.instance = secrets.token_hex(6)
    settings.artifact_root.mkdir(parents=True, exist_ok=True)

    errors.install(app)
    openapi.install(app)
    docs.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        )

    app.add_middleware(_Observe)

    routers = (teachers.router, datasets.router, models.router, jobs.router, teachers.from_job_router, schemas.router)
    for r in (*routers, system.router):
        app.include_router(r)
    return app
