"""The processes a deployment runs, written once: ``gacd serve`` starts exactly these, and
``docker-compose.yml`` runs the same command lines (a test checks that they agree).
"""

from __future__ import annotations


def api_command(host: str = "0.0.0.0", port: int = 8000) -> list[str]:
    """The HTTP API (one uvicorn process; scale with more containers behind a load balancer)."""
    return [
        "uvicorn",
        "service.api.app:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--no-server-header",
        "--timeout-graceful-shutdown",
        "10",
    ]


def worker_command(queues: str = "gacd,gacd.validate", name: str = "worker@%h") -> list[str]:
    """A worker: one job at a time in its own process (``--pool solo``), one per GPU."""
    return [
        "celery",
        "-A",
        "worker.app",
        "worker",
        "--pool",
        "solo",
        "--concurrency",
        "1",
        "-Q",
        queues,
        "-n",
        name,
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]
