"""Schemathesis against the service's own OpenAPI document: every operation, authenticated.

The app is built in this process over a real Redis server (started here) and its schema is loaded from
the app itself (``schemathesis.openapi.from_asgi``), so what is tested is exactly what the service
serves at ``/openapi.json``. Jobs and upload validations go to a queue no worker reads: nothing trains.
The store is seeded with real objects for generated requests to find: jobs that are queued, running,
cancelled and succeeded (its four artifacts on disk), another tenant's job, a ready teacher, a dataset
being validated, and a worker's heartbeat (so ``/readyz`` is ready).

For every operation (all of ``/v1`` and ``/healthz``, ``/readyz``, ``/metrics``) Schemathesis sends the
schema's examples and a few fixed bodies that name seeded objects, then ``MAX_EXAMPLES`` = 100 valid
requests, then 100 invalid ones where the operation has an input that can be invalid (a query, a header
or a body). Where a path names an object, some requests name seeded ones. Every response must pass:

- ``not_a_server_error``: no 5xx at all, 503 included (the store is up and a worker reported in);
- ``status_code_conformance``: the status code is documented for the operation;
- ``content_type_conformance``: the ``Content-Type`` is one documented for that status code;
- ``response_schema_conformance``: the body matches the documented schema (errors are ``ErrorBody``);
- ``response_headers_conformance``: documented response headers are there and match their schemas;

and another tenant's object is never found. Generation is deterministic (Hypothesis ``derandomize``;
no example database, so nothing of it lands in ``.hypothesis/``): CI sends the same requests every run.

About 2,000 requests; measured with Schemathesis 4.32.5 on the 2-core development machine,
``pytest tests/test_fuzz.py`` takes 19 s wall clock when the machine is otherwise idle, 28 to 35 s while
another test run shares it. Operations run in document order, except that deletions run last, so the
seeded objects are still there for the others. The Python API drives it, not the pytest plugin (whose
``from_fixture`` does not work with pytest 9.2's node ids).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
import schemathesis
from _workers import ServiceEnv
from fastapi import FastAPI
from fastapi.testclient import TestClient
from safetensors.numpy import save_file
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.app import create_app
from service.state.artifacts import ArtifactStore
from service.state.records import now_iso
from service.state.settings import Settings
from service.state.store import Store

pytestmark = [pytest.mark.api]

KEY = "fuzz-key-" + "f" * 24
OTHER = "other-key-" + "o" * 24
AUTH = {"Authorization": f"Bearer {KEY}"}
TENANT = "fuzz"
QUEUE = "fuzz-nobody-reads-this"
MAX_EXAMPLES = 100
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# What the fuzzer did, per operation label ("GET /v1/jobs/{job_id}"): the status codes it received.
SEEN: dict[str, Counter[int]] = defaultdict(Counter)


def job_body(method: str = "natural", teacher: str | None = None) -> dict[str, Any]:
    """A valid, small job (natural training needs no teacher; the others name one)."""
    body: dict[str, Any] = {
        "method": method,
        "student": {"arch": "tiny_wrn"},
        "dataset": {"name": "cifar10", "train_subset": 64, "test_subset": 16},
        "hyperparameters": {"epochs": 1, "batch_size": 32},
        "seed": 0,
    }
    if teacher is not None:
        body["teacher"] = {"id": teacher}
    return body


# --------------------------------------------------------------------------------------------------
# The app, over a real Redis, seeded
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_app(start_service: Callable[..., ServiceEnv], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env = start_service(
        "fuzz",
        data_root=tmp_path_factory.mktemp("no-data"),
        api_keys=f"{KEY}={TENANT},{OTHER}=other",
        queue=QUEUE,
        worker_stale_seconds=3600,
        tenant_max_active_jobs=100_000,
        tenant_jobs_per_minute=100_000,
    )
    app = create_app(Settings(**env.settings))
    return {"app": app, **_seed(app, env.base)}


def _seed(app: FastAPI, base: Path) -> dict[str, Any]:
    """Real objects for generated requests to find, made through the API where it can make them."""
    store: Store = app.state.store
    store.worker_heartbeat("fuzz-worker", {"queues": [QUEUE], "device": "cpu"})
    client = TestClient(app)

    def submit(body: dict[str, Any]) -> str:
        r = client.post("/v1/jobs", headers=AUTH, json=body)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    queued, running, cancelled, succeeded = (submit(job_body()) for _ in range(4))
    r = client.post("/v1/jobs", headers={"Authorization": f"Bearer {OTHER}"}, json=job_body())
    assert r.status_code == 202, r.text
    foreign = r.json()["id"]  # another tenant's job: for this tenant it does not exist
    assert client.post(f"/v1/jobs/{cancelled}/cancel", headers=AUTH).json()["status"] == "cancelled"
    store.transition(running, ["queued"], "running", {"started_at": now_iso()})
    store.transition(succeeded, ["queued"], "running", {"started_at": now_iso()})
    artifacts = _outputs(ArtifactStore(app.state.settings.artifact_root).job_out(TENANT, succeeded))
    store.transition(succeeded, ["running"], "succeeded", {"finished_at": now_iso(), "artifacts": artifacts})

    weights = base / "teacher.safetensors"
    save_file({"w": np.zeros((2, 2), np.float32)}, str(weights))
    with open(weights, "rb") as f:
        form = {"arch": "tiny_resnet", "num_classes": "10", "dataset": "cifar10"}
        r = client.post("/v1/teachers", headers=AUTH, data=form, files={"file": (weights.name, f)})
    assert r.status_code == 201, r.text
    teacher = r.json()["id"]
    store.update(teacher, {"status": "ready"})  # as a worker's validation would leave it
    gacd = submit(job_body("gacd", teacher))  # a job that uses the teacher: deleting it is a 409

    data = base / "parts.npz"
    np.savez(data, x_train=np.zeros((4, 8, 8, 3), np.uint8), y_train=np.zeros(4, np.int64))
    with open(data, "rb") as f:
        r = client.post("/v1/datasets", headers=AUTH, files={"file": (data.name, f)})
    assert r.status_code == 201, r.text
    dataset = r.json()["id"]

    ids = {
        "job_id": [queued, running, cancelled, succeeded, gacd, foreign],
        "teacher_id": [teacher],
        "dataset_id": [dataset, "cifar10"],
        "name": [a["name"] for a in artifacts],
    }
    # Fixed bodies that name the seeded objects, sent besides the generated ones.
    bodies = {
        "POST /v1/teachers": [
            {"body": {"source_job_id": succeeded}, "media_type": "application/json"},
            {"body": {"source_job_id": queued, "name": "not yet"}, "media_type": "application/json"},
        ],
        "POST /v1/jobs": [{"body": job_body("gacd", teacher)}, {"body": job_body("kd", teacher)}],
    }
    return {"ids": ids, "bodies": bodies, "foreign": {foreign}}


def _outputs(out: Path) -> list[dict[str, Any]]:
    """The four outputs of a finished job, as a worker leaves them (small, but real files)."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {"arch": "tiny_wrn", "num_classes": "10", "mean": "[0.49, 0.48, 0.45]", "std": "[0.25, 0.24, 0.26]"}
    save_file({"w": np.zeros((2, 2), np.float32)}, str(out / "student.safetensors"), metadata=meta)
    (out / "report.json").write_text(json.dumps({"metrics": {"clean_acc": 0.5}}))
    (out / "report.html").write_text("<!doctype html><title>report</title><p>clean 50%</p>\n")
    (out / "train.log").write_text("epoch 1/1: loss 2.30\n")
    names = ("student.safetensors", "report.json", "report.html", "train.log")
    return [
        {"name": n, "bytes": (out / n).stat().st_size, "sha256": hashlib.sha256((out / n).read_bytes()).hexdigest()}
        for n in names
    ]


# --------------------------------------------------------------------------------------------------
# The fuzzer
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api_schema(fuzz_app: dict[str, Any]) -> Any:
    """The app's own OpenAPI document, loaded by Schemathesis (every generated request carries the key)."""
    config = schemathesis.Config.from_dict({"headers": AUTH})
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app["app"], config=config)


@pytest.fixture(scope="module")
def fuzz_report(fuzz_app: dict[str, Any], api_schema: Any) -> dict[str, str | None]:
    """Fuzz every operation, once for the module: operation label -> the failure's report, or None."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    operations.sort(key=lambda op: op.method.upper() == "DELETE")  # stable: document order otherwise
    return {op.label: _fuzz(op, fuzz_app, fuzz_app["bodies"].get(op.label, [])) for op in operations}


def _strategies(operation: Any, mode: GenerationMode, ids: dict[str, list[str]]) -> st.SearchStrategy:
    """Requests in ``mode``; where the path names objects, some of them name seeded ones."""
    real: list[dict[str, str]] = [{}]
    for param in operation.path_parameters:
        if param.name in ids:
            real = [{**r, param.name: v} for r in real for v in ids[param.name]]
    generated = operation.as_strategy(mode)
    if real == [{}]:
        return generated
    return st.one_of(generated, *(operation.as_strategy(mode, path_parameters=fixed) for fixed in real))


def _fuzz(operation: Any, seeded: dict[str, Any], bodies: list[dict[str, Any]]) -> str | None:
    """Send the operation's examples, valid and invalid requests; the first failure's report, or None."""
    label, ids = operation.label, seeded["ids"]

    def send(case: Any) -> None:
        response = case.call(headers=AUTH)  # (the examples' cases do not carry the configured headers)
        SEEN[label][response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=AUTH)
        if seeded["foreign"] & {str(v) for v in (case.path_parameters or {}).values()}:
            # Another tenant's object does not exist for this one: 404, or a refusal of the request itself
            # that any id would get (never a 2xx, nor a 409 that would tell its state).
            status = response.status_code
            assert status in (400, 404, 413, 415, 422), f"{label}: another tenant's object answered {status}"

    runs: list[tuple[st.SearchStrategy, int]] = []
    examples = operation.get_strategies_from_examples()
    if examples:
        runs.append((st.one_of(examples), 2 * len(examples)))
    if bodies:
        runs.append((st.one_of([operation.as_strategy(**fixed) for fixed in bodies]), 2 * len(bodies)))
    runs.append((_strategies(operation, GenerationMode.POSITIVE, ids), MAX_EXAMPLES))
    # Invalid requests need an input that can be invalid. A path parameter that may be any string
    # cannot: an operation with nothing else (GET /v1/jobs/{job_id}) has no invalid requests.
    if len(operation.query) or len(operation.headers) or len(operation.body):
        runs.append((_strategies(operation, GenerationMode.NEGATIVE, ids), MAX_EXAMPLES))
    settings = hypothesis.settings(
        derandomize=True,  # the same requests on every run: a failure in CI is a failure here
        database=None,  # no example database: nothing carried from one run to the next
        deadline=None,
        print_blob=False,
        suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.data_too_large],
    )
    for strategy, max_examples in runs:
        test = hypothesis.settings(settings, max_examples=max_examples)(hypothesis.given(case=strategy)(send))
        try:
            test()
        except (Exception, BaseExceptionGroup) as exc:  # Schemathesis' FailureGroup is an exception group
            return f"{label}: {exc}"
    return None


def test_every_response_conforms_to_the_schema(fuzz_report: dict[str, str | None]) -> None:
    failures = [report for report in fuzz_report.values() if report]
    assert not failures, "\n\n".join(failures)


def test_the_fuzzer_reached_every_operation(
    fuzz_app: dict[str, Any], api_schema: Any, fuzz_report: dict[str, str | None]
) -> None:
    """The fuzzer ran against every operation of the OpenAPI document, authenticated, generating every
    part of each request, and reached both seeded objects and missing ones: it cannot have silently
    tested nothing."""
    doc = TestClient(fuzz_app["app"]).get("/openapi.json").json()
    dangling = sorted(ref for ref in _refs(doc) if not _resolves(doc, ref))
    assert not dangling, f"references to nothing: {dangling}"
    for result in api_schema.get_all_operations():
        operation = result.ok()
        # Schemathesis leaves out (and then never sends) a parameter or body whose schema it cannot read.
        assert not operation.skipped_parameters, (operation.label, operation.skipped_parameters)
    documented = {f"{method.upper()} {path}" for path, ops in doc["paths"].items() for method in ops}
    with_inputs = {
        f"{method.upper()} {path}"
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if op.get("parameters") or op.get("requestBody")
    }
    assert {"GET /healthz", "GET /readyz", "GET /metrics", "POST /v1/jobs", "GET /v1/jobs/{job_id}"} <= documented
    assert set(fuzz_report) == documented
    assert set(SEEN) == documented, f"never called: {sorted(documented - set(SEEN))}"
    summary = {label: dict(sorted(SEEN[label].items())) for label in sorted(documented)}
    for label, statuses in SEEN.items():
        assert 401 not in statuses, f"{label}: a request went out without the API key: {summary}"
        if label in with_inputs:  # (one without inputs has one request to send, and Hypothesis sends it once)
            assert statuses.total() >= MAX_EXAMPLES, f"{label}: only {statuses.total()} requests: {summary}"
    for label in documented:
        if "{" in label:  # an operation on one object: it found seeded ones and missed others
            found = {s for s in SEEN[label] if s < 300 or s == 409}
            assert found and 404 in SEEN[label], f"{label}: {summary}"
    assert SEEN["GET /readyz"] == Counter({200: SEEN["GET /readyz"].total()})
    assert 202 in SEEN["POST /v1/jobs"] and 201 in SEEN["POST /v1/teachers"], summary


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        discriminator = node.get("discriminator")
        if isinstance(discriminator, dict):
            yield from (v for v in discriminator.get("mapping", {}).values() if isinstance(v, str))
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolves(doc: dict[str, Any], ref: str) -> bool:
    if not ref.startswith("#/"):
        return False
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


# --------------------------------------------------------------------------------------------------
# What the generator cannot send (it draws Unicode text, shallow bodies, and ASCII for regex digits),
# and the fuzzer once found through it, checked the same way
# --------------------------------------------------------------------------------------------------
U64 = 2**64 - 1
RAW = {"Content-Type": "application/json", **AUTH}
NATURAL = b'{"method": "natural", "student": {"arch": "tiny_wrn"}'


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/v1/jobs/{job_id}/events", {"params": {"after": f"{U64 + 1}-0"}}, 422),
        ("GET", "/v1/jobs/{job_id}/events", {"params": {"after": f"{U64}-{U64}"}}, 200),
        ("GET", "/v1/jobs/{job_id}/events", {"params": {"after": "\u0663-\u0663"}}, 422),  # Arabic-Indic digits
        ("POST", "/v1/jobs", {"content": NATURAL + b', "metadata": {"x": "\\ud800"}}'}, 400),  # a lone surrogate
        ("POST", "/v1/jobs", {"content": NATURAL + b', "metadata": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}"}, 400),
        ("POST", "/v1/teachers", {"content": b'{"source_job_id": "job_1", "name": "\\udfff"}'}, 422),
    ],
    ids=["event-id-over-64-bits", "the-last-event-id", "unicode-digits", "lone-surrogate", "deep-json", "teacher-name"],
)
def test_inputs_the_generator_cannot_make(
    fuzz_app: dict[str, Any], api_schema: Any, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    """Each answer is a documented 4xx (or 200) whose body matches its schema, and nothing is left
    behind that breaks later answers (a job created with a string no response can show)."""
    job_id = fuzz_app["ids"]["job_id"][0]
    client = TestClient(fuzz_app["app"], raise_server_exceptions=False)
    response = client.request(method, path.format(job_id=job_id), headers=RAW, **kwargs)
    assert response.status_code == status, response.text
    operation = api_schema[path][method]
    case = operation.Case(path_parameters={"job_id": job_id} if "{job_id}" in path else None)
    case.validate_response(response, checks=CHECKS)
    for listing in ("/v1/jobs", "/v1/teachers"):
        assert client.get(listing, headers=AUTH).status_code == 200
