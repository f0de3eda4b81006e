"""``/healthz``, ``/readyz`` and ``/metrics`` (Prometheus). Unauthenticated, as probes and scrapers expect."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from service.api.schemas import Health
from service.state.records import JOB_STATUSES
from service.state.settings import Settings
from service.state.store import Store, StoreError

router = APIRouter(tags=["system"])


class Metrics:
    """The API's Prometheus registry: request counts and latencies, and a collector that reads jobs by
    status, queue depth and live workers from the store at scrape time."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gacd_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "gacd_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(store, settings))


class _StoreCollector(Collector):
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("gacd_store_up", "1 when the job store answered this scrape")
        try:
            counts = self.store.health.status_counts()
            depth = self.store.fleet.queue_depth(self.settings.queue)
            workers = len(self.store.fleet.workers(self.settings.worker_stale_seconds))
            consumers = len(self.store.fleet.job_consumers(self.settings.queue, self.settings.worker_stale_seconds))
        except StoreError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("gacd_jobs", "jobs by status", labels=["status"])
        for s in JOB_STATUSES:
            jobs.add_metric([s], counts.get(s, 0))
        yield jobs
        yield GaugeMetricFamily("gacd_queue_depth", "jobs waiting in the queue", value=depth)
        yield GaugeMetricFamily("gacd_workers", "workers with a recent heartbeat", value=workers)
        yield GaugeMetricFamily(
            "gacd_job_workers", "workers with a recent heartbeat that take jobs from the job queue", value=consumers
        )


@router.get("/healthz", response_model=Health, summary="Liveness: the API process answers")
def healthz() -> dict[str, Any]:
    return {"status": "ok", "checks": {}}


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness: Redis answers and a worker that takes jobs reported in recently",
    responses={503: {"model": Health, "description": "not ready; checks say why"}},
)
def readyz(request: Request) -> Any:
    store: Store = request.app.state.store
    settings: Settings = request.app.state.settings
    checks: dict[str, Any] = {}
    try:
        store.health.ping()
        checks["redis"] = "ok"
        # Only workers that take jobs: one that stopped consuming the job queue (Celery's
        # cancel_consumer) or was drained (gacd drain) no longer makes the service ready.
        checks["workers"] = len(store.fleet.job_consumers(settings.queue, settings.worker_stale_seconds))
    except StoreError as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
        checks["workers"] = None
    ready = checks["redis"] == "ok" and bool(checks["workers"])
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "the Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
