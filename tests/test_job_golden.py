"""``POST /v1/jobs`` answers a fixed corpus of job bodies as recorded: status, error ``code`` and ``field``.

The corpus (``tests/golden/job_bodies.json``) holds valid and invalid bodies: every refusal the other
tests know, the values a lax parser would convert (``"5"`` for 5, ``1`` for true), bounds, enums, the
rules between fields, references to teachers and datasets that are missing, not ready or another
tenant's, and what Schemathesis found before (lone surrogates, deep nesting, non-ASCII digits). Each
case's expected answer was recorded from the service as it was before the job specification became
the only validator (commit a0bb553), so this test says that the refactoring changed no answer.

To re-record after a deliberate change of the contract: ``GACD_RECORD_GOLDEN=1 pytest
tests/test_job_golden.py`` rewrites the ``expect`` of every case (review the diff).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _workers import ServiceEnv
from fastapi.testclient import TestClient
from safetensors.numpy import save_file

from gacd_core import catalog
from service.api.app import create_app
from service.state.settings import Settings

pytestmark = [pytest.mark.api]

GOLDEN = Path(__file__).parent / "golden" / "job_bodies.json"
KEY, OTHER = "golden-key-" + "g" * 24, "golden-other-" + "o" * 24
AUTH = {"Authorization": f"Bearer {KEY}"}
RECORD = os.environ.get("GACD_RECORD_GOLDEN") == "1"


@pytest.fixture(scope="module")
def seeded(start_service: Callable[..., ServiceEnv], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The API over a real Redis, with the objects the corpus names: ``{{teacher}}`` (ready),
    ``{{teacher_validating}}``, ``{{teacher_other}}`` (another tenant's), ``{{dataset}}`` (ready),
    ``{{dataset_validating}}``. The data root holds CIFAR-10's files (empty) and nothing else."""
    data_root = tmp_path_factory.mktemp("golden-data")
    entry = catalog.DATASETS["cifar10"]
    (data_root / entry.folder).mkdir()
    for file in entry.files:
        (data_root / entry.folder / file).touch()
    env = start_service(
        "golden",
        data_root=data_root,
        api_keys=f"{KEY}=golden,{OTHER}=other",
        queue="golden-nobody-reads-this",
        tenant_max_active_jobs=100_000,
        tenant_jobs_per_minute=100_000,
    )
    app = create_app(Settings(**env.settings))
    client = TestClient(app)
    store = app.state.store
    weights = env.base / "teacher.safetensors"
    save_file({"w": np.zeros((2, 2), np.float32)}, str(weights))

    def teacher(key: str, ready: bool) -> str:
        with open(weights, "rb") as f:
            form = {"arch": "tiny_resnet", "num_classes": "10", "dataset": "cifar10"}
            r = client.post(
                "/v1/teachers",
                headers={"Authorization": f"Bearer {key}"},
                data=form,
                files={"file": ("t.safetensors", f)},
            )
        assert r.status_code == 201, r.text
        if ready:
            store.teachers.update(r.json()["id"], {"status": "ready"})
        return str(r.json()["id"])

    data = env.base / "parts.npz"
    np.savez(data, x_train=np.zeros((4, 8, 8, 3), np.uint8), y_train=np.arange(4) % 2)

    def dataset(ready: bool) -> str:
        with open(data, "rb") as f:
            r = client.post("/v1/datasets", headers=AUTH, files={"file": ("parts.npz", f)})
        assert r.status_code == 201, r.text
        if ready:
            store.datasets.update(r.json()["id"], {"status": "ready", "path": "x.npz"})
        return str(r.json()["id"])

    ids = {
        "teacher": teacher(KEY, True),
        "teacher_validating": teacher(KEY, False),
        "teacher_other": teacher(OTHER, True),
        "dataset": dataset(True),
        "dataset_validating": dataset(False),
    }
    return {"client": client, "ids": ids}


def _fill(value: Any, ids: dict[str, str]) -> Any:
    """The body with each ``"{{name}}"`` string replaced by the seeded object's id."""
    if isinstance(value, str) and value.startswith("{{") and value.endswith("}}"):
        return ids[value[2:-2]]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def _send(client: TestClient, case: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    if "raw" in case:  # bytes a JSON encoder would not write (NaN, lone surrogates, deep nesting)
        content = case["raw"].encode("utf-8", "surrogatepass")
    else:
        content = json.dumps(_fill(case["body"], ids)).encode()
    r = client.post("/v1/jobs", headers={**AUTH, "Content-Type": "application/json"}, content=content)
    error = r.json().get("error") if r.status_code >= 400 else None
    return {
        "status": r.status_code,
        "code": error["code"] if error else None,
        "field": error.get("field") if error else None,
    }


def _cases() -> list[dict[str, Any]]:
    return list(json.loads(GOLDEN.read_text(encoding="utf-8"))["cases"])


def test_the_corpus_is_large_and_covers_both_answers() -> None:
    cases = _cases()
    assert len(cases) >= 60
    assert len({c["name"] for c in cases}) == len(cases), "case names repeat"
    statuses = {c["expect"]["status"] for c in cases}
    assert {202, 400, 404, 409, 422} <= statuses, statuses


def test_every_body_is_answered_as_recorded(seeded: dict[str, Any]) -> None:
    cases = _cases()
    got = {c["name"]: _send(seeded["client"], c, seeded["ids"]) for c in cases}
    if RECORD:
        doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
        for c in doc["cases"]:
            c["expect"] = got[c["name"]]
        GOLDEN.write_text(json.dumps(doc, indent=1, ensure_ascii=True) + "\n", encoding="utf-8")
        pytest.skip(f"recorded {len(cases)} answers into {GOLDEN}")
    differ = {
        c["name"]: {"recorded": c["expect"], "now": got[c["name"]]} for c in cases if got[c["name"]] != c["expect"]
    }
    assert not differ, json.dumps(differ, indent=1)
