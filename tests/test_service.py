"""The job service end to end: a real Redis server (started here), a real Celery worker process, and the
API in this process. Tiny models and tiny data, so the whole file runs in a minute or two on a CPU.

Two API apps share the store: ``api`` sends jobs to the queue the worker consumes; ``idle`` sends them to
a queue no worker reads, so those jobs stay ``queued`` for as long as a test needs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _fakes import RunsCode, make_cifar10, make_npz
from _workers import ServiceEnv, wait_until
from fastapi.testclient import TestClient

from gacd_core.models import create_model, save_weights
from service.api.app import create_app
from service.state.queue import Queue
from service.state.settings import Settings
from service.state.store import Store

pytestmark = [pytest.mark.api, pytest.mark.worker, pytest.mark.e2e]

ALICE, BOB, CAROL = "alice-key-" + "a" * 24, "bob-key-" + "b" * 24, "carol-key-" + "c" * 24
DAVE = "dave-key-" + "d" * 24
QUEUE = "gacdtest"
TIMEOUT = 240


# --------------------------------------------------------------------------------------------------
# Fixtures: Redis, a worker process, two API apps
# --------------------------------------------------------------------------------------------------
WORKER = "test-worker"


@pytest.fixture(scope="module")
def env(start_service: Callable[..., ServiceEnv], tmp_path_factory: pytest.TempPathFactory) -> ServiceEnv:
    data_root = tmp_path_factory.mktemp("data")
    make_cifar10(data_root, n_train=200, n_test=40)
    return start_service(
        "service",
        workers=[WORKER],
        data_root=data_root,
        api_keys=f"{ALICE}=alice,{BOB}=bob,{CAROL}=carol,{DAVE}=dave",
        queue=QUEUE,
    )


@pytest.fixture(scope="module")
def api(env: ServiceEnv) -> TestClient:
    return env.app()


@pytest.fixture(scope="module")
def idle(env: ServiceEnv) -> TestClient:
    return env.app(queue="nobody-reads-this")


def H(key: str = ALICE, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def wait_for(fn: Any, what: str, timeout: float = TIMEOUT, env: ServiceEnv | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = env.log(WORKER).read_text()[-4000:] if env else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.2)


def wait_status(client: TestClient, kind: str, rid: str, statuses: tuple[str, ...], env: ServiceEnv) -> dict:
    def check() -> dict | None:
        rec = client.get(f"/v1/{kind}/{rid}", headers=H()).json()
        return rec if rec["status"] in statuses else None

    return wait_for(check, f"{kind} {rid} to be {statuses}", env=env)


def teacher_file(tmp: Path, arch: str = "tiny_resnet", fmt: str = "pt") -> Path:
    torch.manual_seed(0)
    model = create_model(arch, 10)
    if fmt == "pt":
        path = tmp / f"{arch}.pt"
        torch.save({"state_dict": model.state_dict()}, path)
        return path
    return save_weights(model, tmp / f"{arch}.safetensors")


def upload_teacher(client: TestClient, path: Path, key: str = ALICE, **fields: str) -> Any:
    # The teachers here have random weights and the fake data random labels: every teacher is at chance,
    # so uploads and jobs say allow_weak (the check itself is tested in test_teachers.py on real data).
    data = {"arch": "tiny_resnet", "num_classes": "10", "dataset": "cifar10", "allow_weak": "true", **fields}
    with open(path, "rb") as f:
        return client.post("/v1/teachers", headers=H(key), data=data, files={"file": (path.name, f)})


def upload_dataset(client: TestClient, path: Path, key: str = ALICE) -> Any:
    with open(path, "rb") as f:
        return client.post("/v1/datasets", headers=H(key), files={"file": (path.name, f)})


def small_job(method: str = "gacd", teacher: str | None = None, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "method": method,
        "student": {"arch": "tiny_wrn"},
        "dataset": {"name": "cifar10", "train_subset": 64, "test_subset": 16},
        "hyperparameters": {"epochs": 2, "batch_size": 32, "attack": {"steps": 1}},
        "evaluation": {"eps_sweep": [0, 8 / 255], "throughput": False},
        "seed": 0,
    }
    if teacher:
        doc["teacher"] = {"id": teacher, "allow_weak": True}
        if method == "gacd":
            doc["hyperparameters"]["method_params"] = {"n_negatives": 16}
    for k, v in over.items():
        doc[k] = v
    return doc


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture(scope="module")
def ready_teacher(api: TestClient, env: ServiceEnv, tmp_path_factory: pytest.TempPathFactory) -> str:
    r = upload_teacher(api, teacher_file(tmp_path_factory.mktemp("t")))
    assert r.status_code == 201, r.text
    return wait_status(api, "teachers", r.json()["id"], ("ready", "invalid"), env)["id"]


@pytest.fixture(scope="module")
def succeeded_job(api: TestClient, env: ServiceEnv) -> str:
    r = api.post("/v1/jobs", headers=H(), json=small_job("natural", hyperparameters={"epochs": 1}))
    done = wait_status(api, "jobs", r.json()["id"], ("succeeded", "failed"), env)
    assert done["status"] == "succeeded" and done["artifacts"], done
    return str(done["id"])


# --------------------------------------------------------------------------------------------------
# Health, auth, OpenAPI
# --------------------------------------------------------------------------------------------------
def test_health_and_readiness_see_the_worker(api: TestClient) -> None:
    assert api.get("/healthz").json()["status"] == "ok"
    r = api.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"redis": "ok", "workers": 1}
    metrics = api.get("/metrics").text
    assert "gacd_workers 1.0" in metrics and "gacd_store_up 1.0" in metrics


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {ALICE}"}])
def test_every_request_needs_a_known_key(api: TestClient, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/v1/jobs"), ("GET", "/v1/teachers"), ("GET", "/v1/datasets"), ("POST", "/v1/jobs")]:
        r = api.request(method, path, headers=headers)
        assert r.status_code == 401, (method, path)
        assert r.json()["error"]["code"] == "unauthorized"


def test_openapi_documents_examples_and_errors(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/"):
                assert "401" in op["responses"] and "503" in op["responses"], (method, path)
                err = op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"]
                assert err.endswith("/ErrorBody")
    create = doc["paths"]["/v1/jobs"]["post"]
    examples = create["requestBody"]["content"]["application/json"]["examples"]
    assert examples["gacd"]["value"]["method"] == "gacd" and examples["natural"]["value"]["method"] == "natural"
    assert {"404", "409", "413", "422"} <= set(create["responses"])
    assert api.get("/docs").status_code == 200


# --------------------------------------------------------------------------------------------------
# The lifecycle
# --------------------------------------------------------------------------------------------------
def test_whole_lifecycle_on_a_custom_dataset(
    api: TestClient, env: ServiceEnv, ready_teacher: str, tmp_path: Path
) -> None:
    teacher = api.get(f"/v1/teachers/{ready_teacher}", headers=H()).json()
    assert teacher["status"] == "ready" and teacher["error"] is None and teacher["arch"] == "tiny_resnet"
    # a .pt state_dict without gacd metadata: not normalised, and the record says that nobody chose it
    assert teacher["normalization"] == {"name": "none", "mean": [0.0] * 3, "std": [1.0] * 3, "source": "default"}
    check = teacher["checks"]["cifar10"]  # measured on the fake data's 40 test images; allowed by allow_weak
    assert check["clean_subset"] == 40 and 0.0 <= check["clean_acc"] <= 1.0 and check["allowed_weak"]
    npz = tmp_path / "mydata.npz"
    make_npz(npz, n_train=60, n_test=20, num_classes=10, size=32)
    r = upload_dataset(api, npz)
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest()
    ds = wait_status(api, "datasets", r.json()["id"], ("ready", "invalid"), env)
    assert ds["status"] == "ready", ds
    assert (ds["num_classes"], ds["train_size"], ds["test_size"], ds["image_size"]) == (10, 60, 20, 32)
    listed = api.get("/v1/datasets", headers=H()).json()["data"]
    assert {"cifar10", ds["id"]} <= {d["id"] for d in listed}
    assert next(d for d in listed if d["id"] == "cifar10")["status"] == "available"

    spec = small_job("gacd", ready_teacher, dataset={"name": "custom", "id": ds["id"]}, metadata={"run": "t1"})
    r = api.post("/v1/jobs", headers=H(), json=spec)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["metadata"] == {"run": "t1"}
    assert job["spec"]["teacher"]["id"] == ready_teacher and "weights" not in job["spec"]["teacher"]
    assert "root" not in job["spec"]["dataset"] and "path" not in job["spec"]["dataset"]  # never over HTTP

    seen: dict[str, list[float]] = {}  # fraction by stage: of training while training, of evaluation after

    def done() -> dict | None:
        j = api.get(f"/v1/jobs/{job['id']}", headers=H()).json()
        seen.setdefault(j["progress"]["stage"] or "", []).append(j["progress"]["fraction"])
        return j if j["status"] in ("succeeded", "failed", "cancelled") else None

    final = wait_for(done, "the job to finish", env=env)
    assert final["status"] == "succeeded", final["error"]
    assert final["started_at"] and final["finished_at"] and final["attempts"] == 1
    assert final["progress"]["fraction"] == 1.0 and final["progress"]["epoch"] == 2
    assert all(f == sorted(f) for f in seen.values()), seen  # progress never goes back within a stage
    assert 0.0 <= final["progress"]["metrics"]["pgd20_acc"] <= 1.0

    events = api.get(f"/v1/jobs/{job['id']}/events", headers=H()).json()
    types = [e["type"] for e in events["data"]]
    assert types[0] == "queued" and types[1] == "started" and types[-1] == "succeeded"
    assert types.count("epoch") == 2
    assert types.index("epoch") < types.index("stage", types.index("epoch"))  # evaluation after training
    ids = [tuple(map(int, e["id"].split("-"))) for e in events["data"]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    later = api.get(f"/v1/jobs/{job['id']}/events", headers=H(), params={"after": events["data"][2]["id"]}).json()
    assert [e["id"] for e in later["data"]] == [e["id"] for e in events["data"][3:]]

    arts = api.get(f"/v1/jobs/{job['id']}/artifacts", headers=H()).json()["data"]
    names = {"student.safetensors", "student.onnx", "report.json", "report.html", "train.log"}
    assert {a["name"] for a in arts} == names
    for a in arts:
        got = api.get(f"/v1/jobs/{job['id']}/artifacts/{a['name']}", headers=H())
        assert got.status_code == 200
        assert len(got.content) == a["bytes"] and hashlib.sha256(got.content).hexdigest() == a["sha256"]
    report = api.get(f"/v1/jobs/{job['id']}/artifacts/report.json", headers=H()).json()
    assert report["method"] == "gacd" and report["dataset"]["name"] == "custom"
    assert report["teacher"]["arch"] == "tiny_resnet" and report["student"]["arch"] == "tiny_wrn"
    assert "epoch 2/2" in api.get(f"/v1/jobs/{job['id']}/artifacts/train.log", headers=H()).text

    # the same events, as server-sent events
    with api.stream("GET", f"/v1/jobs/{job['id']}/events", headers=H(Accept="text/event-stream")) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        text = "".join(s.iter_text())
    sse_ids = [line[4:] for line in text.splitlines() if line.startswith("id: ")]
    assert sse_ids == [e["id"] for e in events["data"]] and text.rstrip().endswith("data: {}")
    assert 'gacd_jobs{status="succeeded"}' in api.get("/metrics").text

    r = api.post(f"/v1/jobs/{job['id']}/cancel", headers=H())
    assert r.status_code == 409 and r.json()["error"] == {
        "code": "conflict", "message": f"job {job['id']} is already succeeded", "field": None,
    }  # fmt: skip

    # the student of the job becomes a teacher
    r = api.post("/v1/teachers", headers=H(), json={"source_job_id": job["id"], "allow_weak": True})
    assert r.status_code == 201, r.text
    t2 = wait_status(api, "teachers", r.json()["id"], ("ready", "invalid"), env)
    assert t2["status"] == "ready" and t2["arch"] == "tiny_wrn" and t2["source_job_id"] == job["id"]


def test_a_failing_job_says_why(api: TestClient, env: ServiceEnv, ready_teacher: str) -> None:
    # CIFAR-100's files are in the workers' data root (so the API takes the job) but cannot be read: the
    # job fails on the worker with the dataset error, not a traceback (a dataset that is not there at all
    # is refused at submission: test_a_job_on_a_dataset_the_workers_lack_is_refused_before_anything_is_queued)
    folder = Path(env.settings["data_root"]) / "cifar-100-python"
    folder.mkdir(exist_ok=True)
    for name in ("train", "test"):
        (folder / name).write_bytes(b"not a pickle")
    try:
        r = api.post("/v1/jobs", headers=H(), json=small_job("kd", ready_teacher, dataset={"name": "cifar100"}))
        assert r.status_code == 202, r.text
        final = wait_status(api, "jobs", r.json()["id"], ("succeeded", "failed"), env)
    finally:
        shutil.rmtree(folder)
    assert final["status"] == "failed"
    error = final["error"]
    assert error["code"] == "invalid_dataset" and "cifar-100-python/train is not a valid" in error["message"], error
    assert final["artifacts"] == []


# --------------------------------------------------------------------------------------------------
# Cancellation
# --------------------------------------------------------------------------------------------------
def test_cancel_while_queued(idle: TestClient, env: ServiceEnv) -> None:
    job = idle.post("/v1/jobs", headers=H(), json=small_job("natural")).json()
    r = idle.post(f"/v1/jobs/{job['id']}/cancel", headers=H())
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    r = idle.post(f"/v1/jobs/{job['id']}/cancel", headers=H())
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    # a message for it that still reaches a worker changes nothing
    Queue(Settings(**env.settings)).enqueue_job(job["id"])
    time.sleep(3)
    again = idle.get(f"/v1/jobs/{job['id']}", headers=H()).json()
    assert again["status"] == "cancelled" and again["started_at"] is None
    types = [e["type"] for e in idle.get(f"/v1/jobs/{job['id']}/events", headers=H()).json()["data"]]
    assert types == ["queued", "cancelled"]


def test_cancel_while_running(api: TestClient, env: ServiceEnv) -> None:
    spec = small_job("at", hyperparameters={"epochs": 500, "batch_size": 32, "attack": {"steps": 1}})
    job = api.post("/v1/jobs", headers=H(), json=spec).json()

    def first_epoch() -> bool:
        evs = api.get(f"/v1/jobs/{job['id']}/events", headers=H()).json()["data"]
        return any(e["type"] == "epoch" for e in evs)

    wait_for(first_epoch, "the first epoch", env=env)
    r = api.post(f"/v1/jobs/{job['id']}/cancel", headers=H())
    assert r.status_code == 200 and r.json()["status"] in ("cancelling", "cancelled")
    final = wait_status(api, "jobs", job["id"], ("cancelled", "succeeded", "failed"), env)
    assert final["status"] == "cancelled" and final["artifacts"] == [] and final["progress"]["epoch"] < 500
    types = [e["type"] for e in api.get(f"/v1/jobs/{job['id']}/events", headers=H()).json()["data"]]
    assert "cancelling" in types and types[-1] == "cancelled"
    assert api.post(f"/v1/jobs/{job['id']}/cancel", headers=H()).status_code == 409


# --------------------------------------------------------------------------------------------------
# Listing, idempotency, tenants
# --------------------------------------------------------------------------------------------------
def test_pagination_and_status_filter(idle: TestClient) -> None:
    made = [idle.post("/v1/jobs", headers=H(BOB), json=small_job("natural", seed=i)).json()["id"] for i in range(5)]
    pages, after = [], None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = idle.get("/v1/jobs", headers=H(BOB), params=params).json()
        pages.append([j["id"] for j in page["data"]])
        if not page["has_more"]:
            assert page["next_after"] is None
            break
        after = page["next_after"]
        assert after == page["data"][-1]["id"]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [jid for p in pages for jid in p] == made[::-1]  # newest first, nothing twice, nothing missing
    idle.post(f"/v1/jobs/{made[1]}/cancel", headers=H(BOB))
    cancelled = idle.get("/v1/jobs", headers=H(BOB), params={"status": "cancelled"}).json()["data"]
    queued = idle.get("/v1/jobs", headers=H(BOB), params={"status": "queued"}).json()["data"]
    assert [j["id"] for j in cancelled] == [made[1]]
    assert {j["id"] for j in queued} == set(made) - {made[1]}
    bad = idle.get("/v1/jobs", headers=H(BOB), params={"status": "lost"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"
    bad = idle.get("/v1/jobs", headers=H(BOB), params={"limit": 0})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "limit"
    for jid in made:
        idle.post(f"/v1/jobs/{jid}/cancel", headers=H(BOB))


def test_idempotency_key(idle: TestClient) -> None:
    spec = small_job("natural", seed=99)
    first = idle.post("/v1/jobs", headers=H(**{"Idempotency-Key": "k-1"}), json=spec)
    again = idle.post("/v1/jobs", headers=H(**{"Idempotency-Key": "k-1"}), json=spec)
    assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
    other = idle.post("/v1/jobs", headers=H(**{"Idempotency-Key": "k-1"}), json={**spec, "seed": 100})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    # keys belong to a tenant: bob's "k-1" is another key
    bobs = idle.post("/v1/jobs", headers=H(BOB, **{"Idempotency-Key": "k-1"}), json=spec)
    assert bobs.status_code == 202 and bobs.json()["id"] != first.json()["id"]
    for key, jid in ((ALICE, first.json()["id"]), (BOB, bobs.json()["id"])):
        idle.post(f"/v1/jobs/{jid}/cancel", headers=H(key))


def test_tenant_isolation_matrix_over_every_endpoint(
    api: TestClient, idle: TestClient, env: ServiceEnv, ready_teacher: str, succeeded_job: str, tmp_path: Path
) -> None:
    """Every operation of the OpenAPI that takes an id, called by bob with alice's ids: 404, never data.
    The operations come from the schema itself, so a new endpoint is in the matrix without editing it."""
    npz = tmp_path / "d.npz"
    make_npz(npz, num_classes=3)
    ds = wait_status(api, "datasets", upload_dataset(api, npz).json()["id"], ("ready", "invalid"), env)
    done = api.get(f"/v1/jobs/{succeeded_job}", headers=H()).json()
    queued = idle.post("/v1/jobs", headers=H(), json=small_job("kd", ready_teacher)).json()
    ids = {"teacher_id": ready_teacher, "dataset_id": ds["id"], "job_id": done["id"], "name": "report.json"}
    before = {
        path: api.get(path, headers=H()).json()
        for path in (f"/v1/teachers/{ready_teacher}", f"/v1/datasets/{ds['id']}", f"/v1/jobs/{done['id']}")
    }

    doc = api.get("/openapi.json").json()
    tried = []
    for template, ops in doc["paths"].items():
        params = re.findall(r"{(\w+)}", template)
        if not params or template.startswith("/v1/models/"):  # (the model catalog is every tenant's)
            continue
        assert set(params) <= set(ids), f"{template}: the matrix does not know how to fill {params}"
        for job_id in (done["id"], queued["id"]) if "job_id" in params else (None,):
            path = template.format(**{**ids, **({"job_id": job_id} if job_id else {})})
            for method in ops:
                r = api.request(method.upper(), path, headers=H(BOB))
                assert r.status_code == 404, (method, path, r.status_code, r.text)
                assert list(r.json()) == ["error"] and r.json()["error"]["code"] == "not_found", (method, path)
                for secret in ("alice", ready_teacher[4:], "tiny_resnet", "sha256"):
                    assert secret not in r.text or secret in path, (method, path, r.text)
                tried.append((method, template))
    assert len({t for _, t in tried}) >= 7 and len(tried) >= 14, tried  # 7 paths today, 2 jobs each on /jobs

    # the listings and the operations that name an object in their body
    for kind, rid in (("teachers", ready_teacher), ("datasets", ds["id"]), ("jobs", done["id"])):
        assert rid not in {o["id"] for o in api.get(f"/v1/{kind}", headers=H(BOB)).json()["data"]}
    for body in (
        small_job("kd", ready_teacher),
        small_job("natural", dataset={"name": "custom", "id": ds["id"]}),
    ):
        r = api.post("/v1/jobs", headers=H(BOB), json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    r = api.post("/v1/teachers", headers=H(BOB), json={"source_job_id": done["id"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    with open(teacher_file(tmp_path), "rb") as f:
        form = {"arch": "tiny_resnet", "num_classes": "10", "dataset": ds["id"]}  # alice's dataset as bob's norm
        r = api.post("/v1/teachers", headers=H(BOB), data=form, files={"file": ("t.pt", f)})
    assert r.status_code == 422 and r.json()["error"]["field"] == "dataset", r.text

    # alice's objects are untouched by all of that (bob's DELETE and cancel did nothing)
    for path, rec in before.items():
        assert api.get(path, headers=H()).json() == rec, path
    assert api.get(f"/v1/jobs/{queued['id']}", headers=H()).json()["status"] == "queued"
    assert api.get(f"/v1/jobs/{done['id']}/artifacts/report.json", headers=H()).status_code == 200
    idle.post(f"/v1/jobs/{queued['id']}/cancel", headers=H())


def unfinished(store: Store, tenant: str) -> int:
    """The size of the tenant's set of unfinished jobs, which the limit on active jobs counts."""
    return store.quotas.unfinished(tenant)


def test_per_tenant_limits_answer_429_with_retry_after(env: ServiceEnv) -> None:
    limited = env.app(queue="nobody-reads-this", tenant_max_active_jobs=2, tenant_jobs_per_minute=4)
    roomy = env.app(queue="nobody-reads-this", tenant_max_active_jobs=100, tenant_jobs_per_minute=100)
    store: Store = env.store

    def submit(client: TestClient = limited, key: str = CAROL, **headers: str) -> Any:
        return client.post("/v1/jobs", headers=H(key, **headers), json=small_job("natural"))

    def listed() -> list[str]:
        return [j["id"] for j in limited.get("/v1/jobs", headers=H(CAROL), params={"limit": 100}).json()["data"]]

    def cancel(jid: str) -> None:
        assert limited.post(f"/v1/jobs/{jid}/cancel", headers=H(CAROL)).json()["status"] == "cancelled"

    a, b = submit().json()["id"], submit().json()["id"]
    r = submit(**{"Idempotency-Key": "carol-1"})
    assert r.status_code == 429 and r.headers["retry-after"] == "30"
    err = r.json()["error"]
    assert err["code"] == "too_many_active_jobs" and "2 unfinished jobs" in err["message"]
    assert sorted(listed()) == sorted([a, b]) and unfinished(store, "carol") == 2  # nothing was created
    other = submit(key=DAVE)  # other tenants are not limited by carol's jobs
    assert other.status_code == 202
    limited.post(f"/v1/jobs/{other.json()['id']}/cancel", headers=H(DAVE))
    cancel(a)  # a finished job frees its place
    c = submit(**{"Idempotency-Key": "carol-1"})  # the refused request did not burn its key
    assert c.status_code == 202 and unfinished(store, "carol") == 2
    cancel(b)
    d = submit()  # the 4th job counted in this minute (the refused one is not counted)
    assert d.status_code == 202
    cancel(d.json()["id"])
    r = submit()
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    wait = int(r.headers["retry-after"])
    assert 1 <= wait <= 60 and f"retry in {wait} s" in r.json()["error"]["message"]
    assert len(listed()) == 4 and unfinished(store, "carol") == 1
    # a replayed Idempotency-Key is an answer, not a new submission: never rate-limited
    again = submit(**{"Idempotency-Key": "carol-1"})
    assert again.status_code == 202 and again.json()["id"] == c.json()["id"]
    assert submit(roomy).status_code == 202  # the limits are settings
    for jid in listed():
        limited.post(f"/v1/jobs/{jid}/cancel", headers=H(CAROL))
    assert unfinished(store, "carol") == 0


def test_a_job_the_queue_cannot_take_is_not_created(env: ServiceEnv) -> None:
    class BrokerAway(Queue):
        def enqueue_job(self, job_id: str) -> None:
            raise ConnectionError("the broker is away")

    settings = Settings(**{**env.settings, "queue": "nobody-reads-this"})
    broken = TestClient(create_app(settings, queue=BrokerAway(settings)))
    store: Store = env.store
    before = (unfinished(store, "dave"), store.health.status_counts()["queued"])
    r = broken.post("/v1/jobs", headers=H(DAVE, **{"Idempotency-Key": "dave-1"}), json=small_job("natural"))
    assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
    assert r.json()["error"]["code"] == "queue_unavailable"
    assert broken.get("/v1/jobs", headers=H(DAVE), params={"status": "queued"}).json()["data"] == []
    assert (unfinished(store, "dave"), store.health.status_counts()["queued"]) == before
    ok = env.app(queue="nobody-reads-this")  # the key was released: the retry creates the job
    r = ok.post("/v1/jobs", headers=H(DAVE, **{"Idempotency-Key": "dave-1"}), json=small_job("natural"))
    assert r.status_code == 202
    ok.post(f"/v1/jobs/{r.json()['id']}/cancel", headers=H(DAVE))


def test_a_job_on_a_dataset_the_workers_lack_is_refused_before_anything_is_queued(env: ServiceEnv) -> None:
    idle = "nobody-reads-this"
    client = env.app(queue=idle)
    listed_datasets = client.get("/v1/datasets", headers=H(DAVE)).json()["data"]
    assert next(d for d in listed_datasets if d["id"] == "stl10")["status"] == "missing"
    store: Store = env.store

    def seen() -> tuple[int, int, int]:  # unfinished jobs, queued jobs, messages in the queue
        return unfinished(store, "dave"), store.health.status_counts()["queued"], store.fleet.queue_depth(idle)

    before = seen()
    listed = client.get("/v1/jobs", headers=H(DAVE)).json()["data"]
    for dataset in ({"name": "stl10"}, {"name": "cifar100", "train_subset": 10}):
        r = client.post("/v1/jobs", headers=H(DAVE), json=small_job("natural", dataset=dataset))
        assert r.status_code == 409, r.text
        err = r.json()["error"]
        assert err["code"] == "dataset_unavailable" and err["field"] == "dataset.name", err
        assert dataset["name"] in err["message"] and "GET /v1/datasets" in err["message"], err
    after = seen()
    assert after == before and client.get("/v1/jobs", headers=H(DAVE)).json()["data"] == listed
    r = client.post("/v1/jobs", headers=H(DAVE), json=small_job("natural"))  # cifar10 is there: queued
    assert r.status_code == 202 and store.fleet.queue_depth(idle) == before[2] + 1, r.text
    client.post(f"/v1/jobs/{r.json()['id']}/cancel", headers=H(DAVE))


def test_ids_and_artifact_names_cannot_leave_the_store(api: TestClient, env: ServiceEnv, succeeded_job: str) -> None:
    root = Path(env.settings["artifact_root"])
    assert list(root.rglob("checkpoint.pt"))  # a file in the store that is nobody's artifact
    probes = [
        "/v1/jobs/..%2F..%2F..%2Fetc%2Fpasswd",
        "/v1/jobs/job_..%2F..%2Fbob",
        "/v1/teachers/..%2Falice%2Fteachers",
        "/v1/datasets/ds_%2E%2E%2F%2E%2E",
        f"/v1/jobs/{succeeded_job}/artifacts/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        f"/v1/jobs/{succeeded_job}/artifacts/%2Fetc%2Fpasswd",
        f"/v1/jobs/{succeeded_job}/artifacts/..%2Fcheckpoints%2Fcheckpoint.pt",
        f"/v1/jobs/{succeeded_job}/artifacts/checkpoint.pt",
        f"/v1/jobs/{succeeded_job}/artifacts/student.safetensors%00.txt",
    ]
    for path in probes:
        r = api.get(path, headers=H())
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.status_code, r.text[:200])
    assert api.get(f"/v1/jobs/{succeeded_job}/artifacts/report.json", headers=H()).status_code == 200


def test_cors_is_off_unless_origins_are_named(env: ServiceEnv) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"}  # fmt: skip
    default = env.app()
    for r in (
        default.options("/v1/jobs", headers=preflight),
        default.get("/v1/jobs", headers=H(Origin="https://evil.example")),
    ):
        assert "access-control-allow-origin" not in r.headers, r.headers
    named = env.app(cors_origins="https://app.example")
    ok = named.options("/v1/jobs", headers={**preflight, "Origin": "https://app.example"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in named.options("/v1/jobs", headers=preflight).headers
    with pytest.raises(ValueError, match="wildcard origin is refused in production"):
        Settings(**{**env.settings, "env": "production", "cors_origins": "*"})


def test_a_teacher_in_use_cannot_be_deleted(idle: TestClient, ready_teacher: str) -> None:
    job = idle.post("/v1/jobs", headers=H(), json=small_job("kd", ready_teacher)).json()
    r = idle.delete(f"/v1/teachers/{ready_teacher}", headers=H())
    assert r.status_code == 409 and job["id"] in r.json()["error"]["message"]
    idle.post(f"/v1/jobs/{job['id']}/cancel", headers=H())


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------
def test_job_specs_are_validated_with_the_field_named(api: TestClient, ready_teacher: str) -> None:
    cases = [
        ({"method": "magic"}, "method", "unknown method 'magic'; valid: natural, at, trades, kd"),
        (small_job("at", hyperparameters={"epochs": 0}), "hyperparameters.epochs", "greater than or equal to 1"),
        ({**small_job("at"), "colour": "red"}, "colour", "unknown field"),
        (small_job("gacd"), "teacher", "distils from a teacher"),
        ({**small_job("kd"), "teacher": {"weights": "/etc/passwd"}}, "teacher.weights", "teacher.id"),
        ({**small_job("at"), "dataset": {"name": "cifar10", "root": "/"}}, "dataset.root", "dataset.id"),
        ({**small_job("at"), "student": {"arch": "resnet19"}}, "student.arch", "unknown model 'resnet19'"),
        (  # issue 25: library and zoo names, each refusal naming the valid choices
            {**small_job("at"), "student": {"arch": "timm:resnet19"}},
            "student.arch",
            "timm models allowed here are resnet18, resnet34",
        ),
        (
            {**small_job("kd"), "teacher": {"id": "tch_" + "0" * 24, "arch": "robustbench:cifar10/Linf/Wang2023"}},
            "teacher.arch",
            "did you mean: robustbench:cifar10/Linf/Wang2023Better_WRN-28-10",
        ),
        ({**small_job("at"), "dataset": {"name": "imagenet77"}}, "dataset.name", "unknown dataset 'imagenet77'"),
        (small_job("at", hyperparameters={"epochz": 3}), "hyperparameters.epochz", "unknown field; valid fields"),
        (small_job("at", hyperparameters={"lr": -1}), "hyperparameters.lr", "greater than 0 (got -1)"),
        (small_job("at", hyperparameters={"batch_size": 10**9}), "hyperparameters.batch_size", "less than or equal"),
        (small_job("at", seed="zero"), "seed", "integer"),
    ]
    for body, field, text in cases:
        r = api.post("/v1/jobs", headers=H(), json=body)
        assert r.status_code == 422, (body, r.text)
        err = r.json()["error"]
        assert err["field"] == field and text in err["message"], err
    r = api.post("/v1/jobs", headers=H(), json=small_job("kd", "tch_" + "0" * 24))
    assert r.status_code == 404
    r = api.post("/v1/jobs", headers={**H(), "Content-Type": "application/json"}, content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = api.post("/v1/jobs", headers={**H(), "Content-Type": "application/json"}, content=b"[1, 2]")
    assert r.status_code == 422
    big = {"method": "at", "metadata": {"x": "y" * 1000}, "pad": ["z" * 1000] * 2000}
    r = api.post("/v1/jobs", headers=H(), json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_upload_errors_leave_nothing_behind(env: ServiceEnv, tmp_path: Path) -> None:
    small = env.app(max_upload_bytes=50_000)
    root = Path(env.settings["artifact_root"]) / "alice" / "teachers"
    before = set(files_under(root))
    weights = teacher_file(tmp_path)  # ~80 kB: over the 50 kB limit
    r = upload_teacher(small, weights)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    r = small.post("/v1/teachers", headers=H(), data={"arch": "tiny_resnet"}, files={"file": ("w.onnx", b"xx")})
    assert r.status_code == 422 and r.json()["error"]["field"] == "file"
    r = small.post("/v1/teachers", headers=H(), files={"file": ("w.pt", b"xx")}, data={"arch": "tiny_resnet"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "dataset"  # num_classes is read from the file
    for form, field, text in [
        (
            {"arch": "vgg99", "num_classes": "10", "dataset": "cifar10"},
            "arch",
            "unknown model 'vgg99'",
        ),
        ({"arch": "vgg99", "dataset": "cifar10"}, "arch", "valid: resnet18, preact_resnet18"),
        ({"arch": "torchvision:vgg16", "dataset": "cifar10"}, "arch", "torchvision models allowed here are resnet18"),
        (
            {"arch": "robustbench:cifar10/Linf/Wang2023Better", "dataset": "cifar10"},
            "arch",
            "did you mean: robustbench:cifar10/Linf/Wang2023Better_WRN-28-10",
        ),
        ({"arch": "tiny_resnet", "num_classes": "ten", "dataset": "cifar10"}, "num_classes", "an integer"),
        ({"arch": "tiny_resnet", "num_classes": "1", "dataset": "cifar10"}, "num_classes", "between 2 and 100000"),
        ({"arch": "tiny_resnet", "num_classes": "10", "dataset": "imagenet77"}, "dataset", "unknown dataset"),
        ({"arch": "tiny_resnet", "num_classes": "10", "dataset": "cifar10", "colour": "red"}, "colour", "unknown"),
        ({"arch": "tiny_resnet", "dataset": "cifar10", "normalization": "zca"}, "normalization", "unknown normal"),
        ({"arch": "tiny_resnet", "dataset": "cifar10", "mean": "[0.5, 0.5, 0.5]"}, "std", "both mean and std"),
        (
            {
                "arch": "tiny_resnet",
                "dataset": "cifar10",
                "normalization": "none",
                "mean": "0.5,0.5,0.5",
                "std": "0.2,0.2,0.2",
            },
            "normalization",
            "contradict",
        ),
        ({"arch": "tiny_resnet", "dataset": "cifar10", "allow_weak": "maybe"}, "allow_weak", "true or false"),
    ]:
        r = small.post("/v1/teachers", headers=H(), files={"file": ("w.pt", b"xx")}, data=form)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == ("unknown_name" if field in ("arch", "dataset") else "invalid_request"), err
        assert err["field"] == field and text in err["message"], err
    r = small.post("/v1/teachers", headers={**H(), "Content-Type": "text/plain"}, content=b"hello")
    assert r.status_code == 415
    truncated = b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.pt"\r\n\r\nabc'
    multipart = {**H(), "Content-Type": "multipart/form-data; boundary=XYZ"}
    r = small.post("/v1/teachers", headers=multipart, content=truncated)
    assert r.status_code == 422 and r.json()["error"]["field"] == "file", r.text  # the file never ended
    garbage = b"--XYZ\r\nno headers here\r\n\r\n--XYZ--\r\n"
    r = small.post("/v1/teachers", headers=multipart, content=garbage)
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_multipart", r.text
    assert set(files_under(root)) == before
    assert not list(Path(env.settings["artifact_root"]).rglob("*.partial"))


def test_bad_weights_are_refused_by_validation(api: TestClient, env: ServiceEnv, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": RunsCode(marker)}, evil)
    wrong_arch = teacher_file(tmp_path, "tiny_mobilenetv2")
    sd = create_model("tiny_resnet", 10).state_dict()
    sd[next(k for k in sd if k.endswith("weight"))].fill_(float("nan"))
    nan = tmp_path / "nan.pt"
    torch.save(sd, nan)
    sd = create_model("tiny_resnet", 10).state_dict()
    sd[next(k for k in sd if k.endswith("bias"))].fill_(float("-inf"))
    inf = tmp_path / "inf.pt"
    torch.save(sd, inf)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(teacher_file(tmp_path, fmt="safetensors").read_bytes()[:300])
    cases = [
        (evil, {}, "never executed"),
        (wrong_arch, {}, "does not fit tiny_resnet with 10 classes: 66 missing keys (layer1.0.conv1.weight"),
        (wrong_arch, {}, "shape mismatches (linear.weight: file (10, 160) vs tiny_resnet (10, 32))"),
        (nan, {}, "NaN or infinite"),
        (inf, {}, "NaN or infinite"),
        (corrupt, {}, "not a readable .safetensors"),
        (teacher_file(tmp_path), {"num_classes": "100"}, "shape mismatches"),
    ]
    ids = []
    for path, fields, _ in cases:
        r = upload_teacher(api, path, **fields)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    for tid, (_, _, text) in zip(ids, cases, strict=True):
        rec = wait_status(api, "teachers", tid, ("ready", "invalid"), env)
        assert rec["status"] == "invalid" and text in rec["error"], rec
    assert not marker.exists()  # the pickle's payload never ran
    r = api.post("/v1/jobs", headers=H(), json=small_job("kd", ids[0]))
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_teacher"


def test_bad_datasets_are_refused_by_validation(api: TestClient, env: ServiceEnv, tmp_path: Path) -> None:
    objects = tmp_path / "objects.npz"
    np.savez(objects, x_train=np.array([{"a": 1}], dtype=object), y_train=np.array([0]),
             x_test=np.zeros((1, 8, 8, 3), np.uint8), y_test=np.array([0]))  # fmt: skip
    shapes = tmp_path / "shapes.npz"
    make_npz(shapes, x_train=np.zeros((24, 5, 5, 7), np.uint8))
    labels = tmp_path / "labels.npz"
    make_npz(labels, y_train=np.full(24, -3))

    def zipped(name: str, members: dict[str, bytes], link: str | None = None) -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as z:
            for arc, data in members.items():
                z.writestr(arc, data)
            if link:
                info = zipfile.ZipInfo("train/cat/link.png")
                info.external_attr = 0o120777 << 16
                z.writestr(info, link)
        return path

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("train/a/x.png", b"\0" * (80 << 20))
    cases = [
        (objects, "object"),
        (shapes, "channels"),
        (labels, ">= 0"),
        (zipped("escape.zip", {"../evil.png": b"x"}), "'..'"),
        (zipped("abs.zip", {"/etc/evil.png": b"x"}), "absolute path"),
        (zipped("link.zip", {"train/cat/a.png": b"x"}, link="/etc/passwd"), "link"),
        (bomb, "zip bomb"),
    ]
    ids = [upload_dataset(api, path).json()["id"] for path, _ in cases]
    for did, (path, text) in zip(ids, cases, strict=True):
        rec = wait_status(api, "datasets", did, ("ready", "invalid"), env)
        assert rec["status"] == "invalid" and text in rec["error"], (path.name, rec)
    assert not (Path(env.settings["artifact_root"]).parent / "evil.png").exists()
    assert not any(p.name == "x.png" for p in files_under(Path(env.settings["artifact_root"])))


# --------------------------------------------------------------------------------------------------
# gacd serve
# --------------------------------------------------------------------------------------------------
def test_gacd_serve_starts_everything_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_cifar10(data, n_train=20, n_test=10)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gacd_core.cli", "serve", "--var", str(tmp_path / "var"), "--port", "0",
         "--data-root", str(data), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        url = key = None
        deadline = time.monotonic() + 120
        while (url is None or key is None) and time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                break
            if line.startswith("GACD service at "):
                url = line.split()[3]
            if line.startswith("API key: "):
                key = line.split()[2]
        assert url and key, proc.stderr.read() if proc.stderr else ""
        import httpx

        # the job worker; the validation worker takes no jobs, so readyz does not count it
        assert httpx.get(url + "/readyz").json()["checks"]["workers"] == 1
        assert (tmp_path / "var" / "gacd.env").read_text().count("GACD_REDIS_URL=redis://127.0.0.1:") == 1

        def pinged() -> bool:  # Celery's own CLI reaches both workers, with no broker URL given to it
            out = subprocess.run([sys.executable, "-m", "gacd_core.cli", "celery", "inspect", "ping", "--timeout",
                                  "2"], cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
            return out.returncode == 0 and "jobs@" in out.stdout and "validate@" in out.stdout

        wait_until(pinged, "gacd celery inspect ping to reach both workers", timeout=60)
        listed = httpx.get(url + "/v1/datasets", headers=H(key)).json()["data"]
        assert next(d for d in listed if d["id"] == "cifar10")["status"] == "available"
        info = json.loads((tmp_path / "var" / "serve.json").read_text())
        assert info["url"] == url and info["api_key"] == key
        out = subprocess.run([sys.executable, "-m", "gacd_core.cli", "status"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        # An impatient second signal while the children stop (a double Ctrl-C, or SIGTERM from a
        # supervisor) must not kill `gacd serve` before it has reaped them.
        time.sleep(0.5)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert not (tmp_path / "var" / "serve.json").exists()
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "var")], capture_output=True, text=True).stdout.split()
    assert left == [], "processes left running after gacd serve stopped"
    assert (tmp_path / "var" / "redis" / "appendonly.aof").exists() or any(
        (tmp_path / "var" / "redis").glob("appendonly*")
    )


def test_the_worker_log_has_no_api_keys(env: ServiceEnv) -> None:
    log = env.log(WORKER).read_text()
    assert ALICE not in log and BOB not in log


def test_delete_removes_the_record_and_the_files(api: TestClient, env: ServiceEnv, tmp_path: Path) -> None:
    r = upload_teacher(api, teacher_file(tmp_path, fmt="safetensors"))
    tid = r.json()["id"]
    wait_status(api, "teachers", tid, ("ready", "invalid"), env)
    folder = Path(env.settings["artifact_root"]) / "alice" / "teachers" / tid
    assert (folder / "weights.safetensors").is_file()
    assert api.delete(f"/v1/teachers/{tid}", headers=H()).status_code == 204
    assert api.get(f"/v1/teachers/{tid}", headers=H()).status_code == 404
    assert not folder.exists()
    assert api.delete(f"/v1/teachers/{tid}", headers=H()).status_code == 404
    r = api.delete("/v1/datasets/cifar10", headers=H())
    assert r.status_code == 409 and "built in" in r.json()["error"]["message"]


def test_metrics_count_requests_by_route(api: TestClient) -> None:
    api.get("/v1/jobs", headers=H())
    text = api.get("/metrics").text
    line = next(
        ln for ln in text.splitlines() if ln.startswith('gacd_http_requests_total{method="GET",route="/v1/jobs"')
    )
    assert float(line.split()[-1]) >= 1
    assert 'gacd_http_request_seconds_bucket{le="0.05",method="GET",route="/v1/jobs"}' in text
    assert "gacd_queue_depth" in text


def test_store_unavailable_is_a_503(tmp_path: Path) -> None:
    from service.launch.embedded import free_port

    art = tmp_path / "artifacts"
    dead = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", artifact_root=art, api_keys=f"{ALICE}=alice")
    client = TestClient(create_app(dead))
    r = client.get("/v1/jobs", headers=H())
    assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
    assert r.headers["retry-after"] == "5"
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("unavailable")
    assert "gacd_store_up 0.0" in client.get("/metrics").text


def test_every_endpoint_documents_an_example(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ok = next((op["responses"][c] for c in ("200", "201", "202") if c in op["responses"]), None)
            content = (ok or {}).get("content", {}).get("application/json")
            if content is None or path == "/metrics":
                continue
            ref = content.get("schema", {}).get("$ref", "")
            example = content.get("example") or schemas.get(ref.rsplit("/", 1)[-1], {}).get("example")
            assert example, (method, path)
