"""The HTTP API on data by reference: a tenant's folders under ``GACD_DATA_ROOTS`` listed with their image
counts; bad references refused with their codes before anything is queued; where the API does not see
the roots, the worker refuses them instead and the job fails with the same code."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _fakes import make_image_folder
from _workers import ServiceEnv

pytestmark = [pytest.mark.api]

ALICE, BOB = "alice-key-" + "a" * 24, "bob-key-" + "b" * 24
IDLE = "roots-nobody-reads-this"


def H(key: str = ALICE) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def env(start_service: Callable[..., ServiceEnv], tmp_path_factory: pytest.TempPathFactory) -> ServiceEnv:
    root = tmp_path_factory.mktemp("roots")
    make_image_folder(root / "alice" / "pets", n_train=3, n_test=2, size=(16, 16))
    make_image_folder(root / "alice" / "one-class", classes=("cat",), n_train=2, n_test=1)
    make_image_folder(root / "bob" / "secret", n_train=1, n_test=1)
    (root / "alice" / "peek").symlink_to(root / "bob" / "secret")
    return start_service(
        "roots",
        data_roots=str(root),
        api_keys=f"{ALICE}=alice,{BOB}=bob",
        queue=IDLE,
        tenant_max_active_jobs=1000,
        tenant_jobs_per_minute=1000,
    )


def job(path: str, name: str = "imagefolder") -> dict[str, Any]:
    return {
        "method": "natural",
        "student": {"arch": "tiny_resnet"},
        "dataset": {"name": name, "path": path, "workers": 0},
        "hyperparameters": {"epochs": 1, "batch_size": 4},
        "evaluation": {"attacks": ["pgd20"], "eps_sweep": [0.0], "throughput": False, "teacher": False},
        "device": "cpu",
    }


def test_get_datasets_lists_the_tenants_folders_with_their_counts(env: ServiceEnv) -> None:
    api = env.app()
    folders = {f["path"]: f for f in api.get("/v1/datasets", headers=H()).json()["folders"]}
    assert set(folders) == {"pets", "one-class"}  # "peek", a link to bob's folder, is not alice's
    pets = folders["pets"]
    assert (pets["name"], pets["status"], pets["num_classes"], pets["train_size"], pets["test_size"]) == (
        "imagefolder",
        "available",
        3,
        9,
        6,
    )
    assert folders["one-class"]["status"] == "invalid" and "one class" in folders["one-class"]["error"]
    assert [f["path"] for f in api.get("/v1/datasets", headers=H(BOB)).json()["folders"]] == ["secret"]


@pytest.mark.parametrize(
    ("path", "name", "status", "code"),
    [
        ("/etc", "imagefolder", 422, "dataset_path_forbidden"),
        ("../bob/secret", "imagefolder", 422, "dataset_path_forbidden"),
        ("pets/../../bob/secret", "imagefolder", 422, "dataset_path_forbidden"),
        ("peek", "imagefolder", 422, "dataset_path_forbidden"),
        ("secret", "imagefolder", 404, "dataset_not_found"),
        ("nothing-here", "shards", 404, "dataset_not_found"),
        ("one-class", "imagefolder", 422, "dataset_invalid"),
        ("pets", "shards", 422, "dataset_invalid"),
    ],
)
def test_bad_references_are_refused_before_anything_is_queued(
    env: ServiceEnv, path: str, name: str, status: int, code: str
) -> None:
    api, store = env.app(), env.store
    before = (store.health.status_counts()["queued"], store.fleet.queue_depth(IDLE))
    r = api.post("/v1/jobs", headers=H(), json=job(path, name))
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert (err["code"], err["field"]) == (code, "dataset.path") and "nothing was queued" in err["message"]
    assert (store.health.status_counts()["queued"], store.fleet.queue_depth(IDLE)) == before


def test_a_good_reference_is_queued_and_root_or_an_id_is_refused(env: ServiceEnv) -> None:
    api = env.app()
    r = api.post("/v1/jobs", headers=H(), json=job("pets"))
    assert r.status_code == 202, r.text
    assert r.json()["spec"]["dataset"]["path"] == "pets"
    api.post(f"/v1/jobs/{r.json()['id']}/cancel", headers=H())
    for extra, field in (({"root": "/"}, "dataset.root"), ({"id": "ds_" + "0" * 24}, "dataset.id")):
        body = job("pets")
        body["dataset"].update(extra)
        r = api.post("/v1/jobs", headers=H(), json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


def test_where_the_api_does_not_see_the_roots_only_the_path_is_checked(env: ServiceEnv, tmp_path: Path) -> None:
    blind = env.app(data_roots=str(tmp_path / "not-mounted-here"))
    assert blind.get("/v1/datasets", headers=H()).json()["folders"] == []
    assert blind.post("/v1/jobs", headers=H(), json=job("../x")).json()["error"]["code"] == "dataset_path_forbidden"
    r = blind.post("/v1/jobs", headers=H(), json=job("nothing-here"))
    assert r.status_code == 202, r.text
    blind.post(f"/v1/jobs/{r.json()['id']}/cancel", headers=H())


@pytest.mark.worker
@pytest.mark.slow
def test_the_worker_refuses_what_the_api_could_not_see_with_the_same_code(env: ServiceEnv, tmp_path: Path) -> None:
    queue = "roots-worker"
    blind = env.app(data_roots=str(tmp_path / "not-mounted-here"), queue=queue)
    env.start_worker("roots-w", queue=queue)
    ids = {p: blind.post("/v1/jobs", headers=H(), json=job(p)).json()["id"] for p in ("nothing-here", "peek", "pets")}
    deadline = time.monotonic() + 240
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(ids) and time.monotonic() < deadline:
        for p, jid in ids.items():
            j = blind.get(f"/v1/jobs/{jid}", headers=H()).json()
            if j["status"] in ("succeeded", "failed", "cancelled"):
                done[p] = j
        time.sleep(0.5)
    assert done["nothing-here"]["status"] == "failed" and done["nothing-here"]["error"]["code"] == "dataset_not_found"
    assert (
        done["peek"]["error"]["code"] == "dataset_path_forbidden"
        and "another tenant" in done["peek"]["error"]["message"]
    )
    assert done["pets"]["status"] == "succeeded", done["pets"]
