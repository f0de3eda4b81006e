"""Schemathesis against the service's own OpenAPI document: every operation, authenticated.

The app is built in this process over a real Redis server (started here) and its schema is loaded from
the app itself (``schemathesis.openapi.from_asgi``), so what is tested is exactly what the service
serves at ``/openapi.json``. Jobs and upload validations go to a queue no worker reads: nothing trains.
The store is seeded with real objects for generated requests to find: jobs that are queued, running,
cancelled and succeeded (its four artifacts on disk), another tenant's job, a ready teacher, a dataset
being validated, and a worker's heartbeat (so ``/readyz`` is ready).

Schemathesis' own engine runs as its command line does with ``--checks all``: the examples, coverage,
fuzzing and stateful phases over every operation (all of ``/v1`` and ``/healthz``, ``/readyz``,
``/metrics``), valid and invalid requests, with every built-in check:

- ``not_a_server_error`` (no 5xx at all: the store is up and a worker reported in), the response checks
  (status code, content type, headers and body as documented), ``unsupported_method`` and
  ``allow_header_conformance`` (405 with the path's every method in ``Allow``), ``missing_required_header``,
  ``ignored_auth``, ``use_after_free``, ``ensure_resource_availability``, ``object_level_authorization``;
- ``negative_data_rejection``: what the schema refuses, the service refuses (for a multipart form, as it
  went over the wire: see :func:`negative_data_rejection_as_sent`);
- ``positive_data_acceptance``: what the schema accepts, the service accepts, except 422s that name a
  rule between fields no schema states (:data:`STATED_RULES`, listed in ``JobCreate``'s description);

and another tenant's object is never found. The stateful phase follows the document's links (a job
created, then got, its events read, cancelled, its artifacts listed; an upload got and deleted) and the
links Schemathesis infers; a test checks that it reached those operations with 2xx answers. Where a path
names an object, some generated requests name seeded ones. The seed is fixed (``SEED``) and there is no
example database (nothing lands in ``.hypothesis/``): every run sends the same requests.

With ``FUZZ_EXAMPLES`` = 200 per operation and phase and ``STATEFUL_EXAMPLES`` = 150 scenarios of at
most ``STATEFUL_MAX_STEPS`` = 10 steps, about 4,900 requests; measured with Schemathesis 4.32.5 on the
2-core development machine, ``pytest tests/test_fuzz.py`` took 143 s while other test runs shared it (the
engine itself 131 s). With 80 scenarios one run of three followed no link from a created job to a 2xx.
The Python API drives it, not the pytest plugin (whose ``from_fixture`` does not work with pytest 9.2's
node ids); the test prints the seed, the counts, the requests per check and the links followed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import jsonschema_rs
import numpy as np
import pytest
import schemathesis
from _workers import ServiceEnv
from fastapi import FastAPI
from fastapi.testclient import TestClient
from safetensors.numpy import save_file
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.engine import events
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gacd_core import catalog, zoo
from service.api.app import create_app
from service.state.artifacts import ArtifactStore
from service.state.records import WorkerBeat, now_iso
from service.state.settings import Settings
from service.state.store import Store

pytestmark = [pytest.mark.api]

KEY = "fuzz-key-" + "f" * 24
OTHER = "other-key-" + "o" * 24
AUTH = {"Authorization": f"Bearer {KEY}"}
TENANT = "fuzz"
QUEUE = "fuzz-nobody-reads-this"


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
    data_root = tmp_path_factory.mktemp("data")
    for name in ("cifar10",):  # the files the service looks for (empty: no job runs); stl10 is missing
        entry = catalog.DATASETS[name]
        (data_root / entry.folder).mkdir()
        for file in entry.files:
            (data_root / entry.folder / file).touch()
    env = start_service(
        "fuzz",
        data_root=data_root,
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
    store.fleet.heartbeat("fuzz-worker", WorkerBeat(queues=[QUEUE], device="cpu"))
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
    store.jobs.transition(running, ["queued"], "running", {"started_at": now_iso()})
    store.jobs.transition(succeeded, ["queued"], "running", {"started_at": now_iso()})
    artifacts = _outputs(ArtifactStore(app.state.settings.artifact_root).job_out(TENANT, succeeded))
    store.jobs.transition(succeeded, ["running"], "succeeded", {"finished_at": now_iso(), "artifacts": artifacts})

    weights = base / "teacher.safetensors"
    save_file({"w": np.zeros((2, 2), np.float32)}, str(weights))
    with open(weights, "rb") as f:
        form = {"arch": "tiny_resnet", "num_classes": "10", "dataset": "cifar10"}
        r = client.post("/v1/teachers", headers=AUTH, data=form, files={"file": (weights.name, f)})
    assert r.status_code == 201, r.text
    teacher = r.json()["id"]
    store.teachers.update(teacher, {"status": "ready"})  # as a worker's validation would leave it
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
        # the catalog's models: ours, a library's, a RobustBench entry covered and one not
        "model": [
            "resnet18",
            "timm:resnet18",
            "robustbench:cifar10/Linf/Wang2023Better_WRN-28-10",
            next(e.key for e in zoo.entries() if not e.covered),
        ],
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
# The fuzzer: Schemathesis' engine, as its command line runs it with `--checks all`
# --------------------------------------------------------------------------------------------------
# Rules the JSON Schema cannot state: a positive (schema-valid) request may get a 422 naming one of these
# fields, and no other 422 (service/api/contract.py says why each is there).
STATED_RULES: dict[str, tuple[str, ...]] = {
    "POST /v1/jobs": (
        "teacher.normalization",  # a preset, or values that differ from it
        "teacher.id",  # a teacher of yours that is invalid
        "hyperparameters.method_params",  # another method's parameters; the contrastive ones' combinations
        "hyperparameters.warmup_epochs",  # below epochs
        "hyperparameters.milestones",  # increasing
        "dataset.val_size",  # below train_subset
        "dataset.id",  # a dataset of yours that is invalid
        "evaluation.split",  # val needs dataset.val_size
        "dataset.path",  # a folder of yours under the data roots: relative, there, and trainable
        "dataset.preprocessing",  # (low, high) ranges; one side for training and evaluation
    ),
    "POST /v1/teachers": ("file", "mean", "std", "normalization", "dataset"),  # name's suffix; pairs; yours
    "POST /v1/datasets": ("file",),  # the name's suffix, not empty
    "GET /v1/jobs": ("after",),  # a job of yours
    "GET /v1/teachers": ("after",),  # a teacher of yours
}


@schemathesis.check
def positive_data_acceptance_beyond_stated_rules(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis' ``positive_data_acceptance`` (which the run turns off), except that a 422 naming a
    rule of :data:`STATED_RULES` passes: every field the error names must be under one of them."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if response.status_code != 422:
            raise
        error = json.loads(response.content)["error"]
        fields = {error.get("field") or ""} | {d.get("field") or "" for d in error.get("details") or []}
        stated = STATED_RULES.get(case.operation.label, ())
        if fields and all(any(f == r or f.startswith(r + ".") for r in stated) for f in fields):
            return None
        raise


@schemathesis.check
def negative_data_rejection_as_sent(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis' ``negative_data_rejection`` (which the run turns off), except for a multipart body
    that is valid as it went over the wire. A form field generated as an object or a number is sent as
    its text, which the schema allows; Schemathesis checks that too, but keeps the file's generated bytes
    for the file part, which no ``type: string`` accepts, and so calls every such form invalid."""
    try:
        return negative_data_rejection(ctx, response, case)
    except AcceptedNegativeData:
        if not (case.media_type or "").startswith("multipart/form-data") or not _form_valid_as_sent(response, case):
            raise
        return None


def _form_valid_as_sent(response: Any, case: Any) -> bool:
    """Whether the multipart form the request carried (files as strings, text fields as text or as the
    JSON value the text spells) satisfies the body's schema."""
    content_type = response.request.headers.get("Content-Type", "")
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + response.request.body
    )
    sent: dict[str, list[Any]] = defaultdict(list)
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename() is not None:
            sent[name].append([""])  # a file: a string, as `format: binary` is
            continue
        text = part.get_payload(decode=True).decode(errors="replace")
        try:
            sent[name].append([text, json.loads(text)])
        except ValueError:
            # the service reads a form's boolean in any case ("True", as generated Python clients send)
            sent[name].append([text] + ([text.lower() == "true"] if text.lower() in ("true", "false") else []))
    if any(len(values) > 1 for values in sent.values()):
        return False  # (the service refuses a repeated field)
    schema = case.operation.get_body_for_media_type(case.media_type).optimized_schema
    validator = jsonschema_rs.validator_for(schema)
    form: dict[str, Any] = {}
    for name, [readings] in sent.items():
        # the server reads a field as text or parses it: any reading the schema takes will do
        fits = [r for r in readings if not any(e.instance_path[:1] == [name] for e in validator.iter_errors({name: r}))]
        form[name] = (fits or readings)[0]
    return bool(validator.is_valid(form))


@schemathesis.check
def another_tenants_object_is_not_found(ctx: Any, response: Any, case: Any) -> bool | None:
    """Another tenant's object does not exist for this one: 404, or a refusal of the request itself that
    any id would get (never a 2xx, nor a 409 that would tell its state)."""
    SEEN[case.operation.label][response.status_code] += 1
    if FOREIGN & {str(v) for v in (case.path_parameters or {}).values()}:
        status = response.status_code
        assert status in (400, 404, 405, 413, 415, 422), f"another tenant's object answered {status}"
    return None


SEEN: dict[str, Counter[int]] = defaultdict(Counter)  # operation label -> the status codes it received
FOREIGN: set[str] = set()
CHECKED: Counter[str] = Counter()  # check name -> how many responses it judged
SEED = 20261130
# Examples per operation and phase (the coverage phase sends its own, one per boundary and mutation), and
# the stateful phase's scenarios (the module's docstring says how long they take).
FUZZ_EXAMPLES = 200
STATEFUL_EXAMPLES = 150
STATEFUL_MAX_STEPS = 10


@pytest.fixture(scope="module")
def api_schema(fuzz_app: dict[str, Any]) -> Any:
    """The app's own OpenAPI document, loaded by Schemathesis with the configuration of the run: every
    check (positive_data_acceptance through the variant above), every phase, a fixed seed."""
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # Hypothesis' health checks time the generation: on a shared 2-core machine they fail at random
            "suppress-health-check": ["all"],
            "headers": AUTH,
            "workers": 1,
            "checks": {
                "enabled": True,
                "positive_data_acceptance": {"enabled": False},
                "negative_data_rejection": {"enabled": False},
            },
            "generation": {"mode": "all", "database": "none", "max-examples": FUZZ_EXAMPLES},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {
                    "enabled": True,
                    "max-steps": STATEFUL_MAX_STEPS,
                    "generation": {"max-examples": STATEFUL_EXAMPLES},
                },
            },
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app["app"], config=config)
    ids = fuzz_app["ids"]

    @schema.hook
    def before_generate_path_parameters(context: Any, strategy: st.SearchStrategy) -> st.SearchStrategy:
        # Where the path names objects, some requests name seeded ones (the stateful phase follows links).
        real: list[dict[str, str]] = [{}]
        for param in context.operation.path_parameters:
            if param.name in ids:
                real = [{**r, param.name: v} for r in real for v in ids[param.name]]
        return strategy if real == [{}] else st.one_of(strategy, st.sampled_from(real))

    valid_jobs = [job_body()] + [b["body"] for b in fuzz_app["bodies"]["POST /v1/jobs"]]

    @schema.hook
    def before_generate_body(context: Any, strategy: st.SearchStrategy) -> st.SearchStrategy:
        # A job body the schema allows is rarely one the server takes (a teacher must be one of yours and
        # ready, the subsets must fit the dataset): some bodies are valid ones, so that the stateful
        # phase creates jobs and follows their links whatever the generated data happen to be.
        if context.operation.label != "POST /v1/jobs":
            return strategy
        return st.one_of(strategy, st.sampled_from(valid_jobs))

    return schema


@pytest.fixture(scope="module")
def fuzz_report(fuzz_app: dict[str, Any], api_schema: Any) -> dict[str, Any]:
    """Run the engine once for the module: the failures it found and what each phase did."""
    FOREIGN.update(fuzz_app["foreign"])
    failures: list[str] = []
    errors: list[str] = []
    scenarios: Counter[str] = Counter()
    links: Counter[tuple[str, str, int | None]] = Counter()  # (from, to, status) of the stateful phase's steps
    t0 = time.monotonic()
    for event in schemathesis.engine.from_schema(api_schema).execute():
        if isinstance(event, events.ScenarioFinished):
            scenarios[str(event.phase)] += 1
            for case_id, node in event.recorder.cases.items():
                parent = event.recorder.cases.get(node.parent_id) if node.parent_id else None
                interaction = event.recorder.interactions.get(case_id)
                if node.transition is not None and parent is not None and interaction is not None:
                    status = interaction.response.status_code if interaction.response is not None else None
                    links[(parent.value.operation.label, node.value.operation.label, status)] += 1
            for case_id, nodes in event.recorder.checks.items():
                for node in nodes:
                    CHECKED[node.name] += 1
                    if node.failure_info is not None:
                        failure = node.failure_info.failure
                        case = event.recorder.cases[case_id].value
                        failures.append(
                            f"{node.name} on {case.operation.label}: {failure.title}\n{failure.message}\n"
                            f"{node.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(str(getattr(event, "value", event)))
    elapsed = time.monotonic() - t0
    print(
        f"schemathesis {schemathesis.__version__}: seed {SEED}, {FUZZ_EXAMPLES} examples per operation and "
        f"phase, stateful {STATEFUL_EXAMPLES} scenarios of at most {STATEFUL_MAX_STEPS} steps; "
        f"{sum(c.total() for c in SEEN.values())} requests in {elapsed:.0f} s; scenarios {dict(scenarios)}"
    )
    print(f"checks (responses judged): {dict(CHECKED)}")
    followed = Counter({f"{a} -> {b}": n for (a, b, status), n in links.items() if status is not None and status < 300})
    print(f"links followed to a 2xx: {dict(followed)}")
    return {"failures": sorted(set(failures)), "errors": errors, "scenarios": scenarios, "links": links}


def test_every_check_passes_in_every_phase(fuzz_report: dict[str, Any]) -> None:
    assert not fuzz_report["errors"], "\n\n".join(fuzz_report["errors"])
    assert not fuzz_report["failures"], "\n\n".join(fuzz_report["failures"])


def test_the_fuzzer_reached_every_operation(
    fuzz_app: dict[str, Any], api_schema: Any, fuzz_report: dict[str, Any]
) -> None:
    """The engine ran every phase against every operation of the OpenAPI document, authenticated, and
    reached both seeded objects and missing ones: it cannot have silently tested nothing."""
    doc = TestClient(fuzz_app["app"]).get("/openapi.json").json()
    dangling = sorted(ref for ref in _refs(doc) if not _resolves(doc, ref))
    assert not dangling, f"references to nothing: {dangling}"
    for result in api_schema.get_all_operations():
        operation = result.ok()
        # Schemathesis leaves out (and then never sends) a parameter or body whose schema it cannot read.
        assert not operation.skipped_parameters, (operation.label, operation.skipped_parameters)
    documented = {f"{method.upper()} {path}" for path, ops in doc["paths"].items() for method in ops}
    assert {"GET /healthz", "GET /readyz", "GET /metrics", "POST /v1/jobs", "GET /v1/jobs/{job_id}"} <= documented
    assert set(SEEN) >= documented, f"never called: {sorted(documented - set(SEEN))}"
    summary = {label: dict(sorted(SEEN[label].items())) for label in sorted(documented)}
    assert {"examples", "coverage", "fuzzing", "stateful"} <= {p.lower() for p in fuzz_report["scenarios"]}, (
        fuzz_report["scenarios"]
    )
    for label in documented:
        if "{" in label:  # an operation on one object: it found seeded ones and missed others
            found = {s for s in SEEN[label] if s < 300 or s == 409}
            assert found and 404 in SEEN[label], f"{label}: {summary}"
    assert 202 in SEEN["POST /v1/jobs"] and 201 in SEEN["POST /v1/teachers"], summary
    assert 201 in SEEN["POST /v1/jobs/{job_id}/teacher"], summary
    # the stateful phase created (or listed) jobs and followed their links to the job, its events, its
    # cancellation and its artifacts, each answering 2xx at least once (which of the two sources a link
    # starts from depends on the generated sequence, which every change of the schema reshuffles)
    reached = {(a, b) for (a, b, status), _ in fuzz_report["links"].items() if status is not None and status < 300}
    for target in ("GET /v1/jobs/{job_id}", "GET /v1/jobs/{job_id}/events", "POST /v1/jobs/{job_id}/cancel",
                   "GET /v1/jobs/{job_id}/artifacts"):  # fmt: skip
        assert {("POST /v1/jobs", target), ("GET /v1/jobs", target)} & reached, (target, sorted(reached))
    assert any(a == "POST /v1/jobs" for a, _ in reached), sorted(reached)


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
RESPONSE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
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
    case.validate_response(response, checks=RESPONSE_CHECKS)
    for listing in ("/v1/jobs", "/v1/teachers"):
        assert client.get(listing, headers=AUTH).status_code == 200


def test_a_405_lists_every_method_of_its_path(fuzz_app: dict[str, Any]) -> None:
    """``Allow`` on a 405 names the methods of every route at that path (Starlette's own named those of
    the first route only: ``OPTIONS /v1/jobs`` answered ``Allow: POST``)."""
    client = TestClient(fuzz_app["app"])
    doc = client.get("/openapi.json").json()
    ids = {name: values[0] for name, values in fuzz_app["ids"].items()}
    for template, ops in doc["paths"].items():
        path = template.format(**ids)
        r = client.request("PATCH", path, headers=AUTH)
        assert r.status_code == 405, (path, r.status_code)
        assert r.json()["error"]["code"] == "method_not_allowed"
        allowed = {m.strip().lower() for m in r.headers["allow"].split(",")}
        assert allowed - {"head"} == set(ops), (template, r.headers["allow"])
