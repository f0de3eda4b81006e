"""The FastAPI application: ``create_app()`` wires settings, the store, the queue, auth and routers.

Run it with ``uvicorn service.app:create_app --factory`` (``gacd serve`` does this for you).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

from service import errors
from service.deps import KeyRing
from service.queue import Queue
from service.routers import datasets, jobs, system, teachers
from service.settings import Settings, get_settings
from service.store import Store, connect
from service.uploads import sweep_partials

log = logging.getLogger("gacd.api")

DESCRIPTION = """
Robust model compression as a service. Upload an adversarially robust **teacher**, choose a small
**student** architecture and a **dataset**, and submit a **job**: a worker distils the teacher into
the student with GACD (or a baseline) and evaluates both under a fixed protocol (clean, FGSM, PGD-20,
CW-inf, optionally AutoAttack at eps = 8/255). Download `student.safetensors`, `report.json`,
`report.html` and `train.log` when it succeeds.

Every request carries `Authorization: Bearer <api key>`; a tenant sees only its own objects (another
tenant's id is a 404). Errors are `{"error": {"code", "message", "field"}}`.
"""


def create_app(settings: Settings | None = None, store: Store | None = None, queue: Queue | None = None) -> FastAPI:
    settings = settings or get_settings()
    keys = settings.keys()
    if not keys:
        raise RuntimeError("no API keys: set GACD_API_KEYS or GACD_API_KEYS_FILE (gacd serve makes one for you)")
    app = FastAPI(
        title="GACD: robust model compression",
        version="1.0.0",
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.keyring = KeyRing(keys)
    app.state.store = store or Store(connect(settings.redis_url), events_max=settings.events_max)
    app.state.queue = queue or Queue(settings)
    app.state.metrics = system.Metrics(app.state.store, settings)
    settings.artifact_root.mkdir(parents=True, exist_ok=True)
    removed = sweep_partials(settings.artifact_root)
    if removed:
        log.warning("removed %d partial uploads left by an earlier API process", removed)

    errors.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        )

    @app.middleware("http")
    async def _observe(request: Request, call_next: Any) -> Any:
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        m = request.app.state.metrics
        m.requests.labels(request.method, template, str(response.status_code)).inc()
        m.latency.labels(request.method, template).observe(time.perf_counter() - t0)
        return response

    for r in (teachers.router, datasets.router, jobs.router, system.router):
        app.include_router(r)
    return app
