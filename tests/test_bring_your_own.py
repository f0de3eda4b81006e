"""Issue 25 end to end, as a user runs it: a 10-class 64-px image folder under the service's data root,
a random-init ``timm:resnet18`` teacher uploaded with its normalisation, a GACD job from it to a
registry student, and its report with every attack; then the path-escape refusals, each answered with
its code before anything is queued."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _fakes import make_image_folder, make_npz
from _workers import ServiceEnv

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.api, pytest.mark.worker]

KEY = "byo-key-" + "b" * 24
AUTH = {"Authorization": f"Bearer {KEY}"}
TENANT = "byo"
CLASSES = [f"class{i}" for i in range(10)]
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def _settled(api: Any, path: str, done: tuple[str, ...], timeout: float = 420.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        rec = api.get(path, headers=AUTH).json()
        if rec["status"] in done:
            return dict(rec)
        assert time.monotonic() < deadline, rec
        time.sleep(0.5)


@pytest.fixture(scope="module")
def byo(start_service: Callable[..., ServiceEnv], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    roots = tmp_path_factory.mktemp("roots")
    make_image_folder(roots / TENANT / "pets64", classes=CLASSES, n_train=4, n_test=2, size=(64, 64))
    make_image_folder(roots / "other" / "theirs", classes=CLASSES[:2], n_train=2, n_test=1, size=(64, 64))
    (roots / TENANT / "escape").symlink_to(roots / "other" / "theirs", target_is_directory=True)
    env = start_service(
        "byo",
        workers=("byo-worker",),
        data_roots=str(roots),
        api_keys=f"{KEY}={TENANT}",
        tenant_jobs_per_minute=1000,
        queue="byo",
    )
    return {"api": env.app(), "env": env, "roots": roots, "base": env.base}


def _upload_teacher(byo: dict[str, Any]) -> str:
    """A random-init timm ResNet-18 for 10 classes, as a user's training code would save it."""
    import timm

    api, base = byo["api"], byo["base"]
    data = base / "check.npz"  # the upload's accuracy check: 10 classes at 64 px
    make_npz(data, n_train=20, n_test=20, num_classes=10, size=64)
    with open(data, "rb") as f:
        r = api.post("/v1/datasets", headers=AUTH, files={"file": ("check.npz", f)})
    assert r.status_code == 201, r.text
    dataset = _settled(api, f"/v1/datasets/{r.json()['id']}", ("ready", "invalid"))
    assert dataset["status"] == "ready", dataset
    torch.manual_seed(0)
    bare = timm.create_model("resnet18", pretrained=False, num_classes=10)
    path = base / "resnet18.pth"
    torch.save(bare.state_dict(), path)
    form = {
        "arch": "timm:resnet18",
        "dataset": dataset["id"],
        "mean": ",".join(map(str, IMAGENET[0])),
        "std": ",".join(map(str, IMAGENET[1])),
        "allow_weak": "true",  # random weights: near chance, kept on purpose
    }
    with open(path, "rb") as f:
        r = api.post("/v1/teachers", headers=AUTH, data=form, files={"file": (path.name, f)})
    assert r.status_code == 201, r.text
    teacher = _settled(api, f"/v1/teachers/{r.json()['id']}", ("ready", "invalid"))
    assert teacher["status"] == "ready", teacher
    assert teacher["source"] == "timm:resnet18" and teacher["normalization"]["source"] == "user"
    return str(teacher["id"])


def _job(teacher: str, path: str = "pets64") -> dict[str, Any]:
    return {
        "method": "gacd",
        "teacher": {"id": teacher, "allow_weak": True},
        "student": {"arch": "resnet10_w8"},
        "dataset": {"name": "imagefolder", "path": path, "workers": 0},
        "hyperparameters": {"epochs": 1, "batch_size": 20, "attack": {"steps": 2}},
        "evaluation": {"autoattack": True, "autoattack_subset": 10, "eps_sweep": [], "throughput": False},
    }


def test_a_folder_and_a_timm_teacher_make_a_student_with_every_attack(byo: dict[str, Any]) -> None:
    api = byo["api"]
    listed = api.get("/v1/datasets", headers=AUTH).json()["folders"]
    pets = next(f for f in listed if f["path"] == "pets64")
    assert pets["name"] == "imagefolder" and pets["status"] == "available", pets

    teacher = _upload_teacher(byo)
    r = api.post("/v1/jobs", headers=AUTH, json=_job(teacher))
    assert r.status_code == 202, r.text
    job = _settled(api, f"/v1/jobs/{r.json()['id']}", ("succeeded", "failed", "cancelled"))
    assert job["status"] == "succeeded", job
    report = api.get(f"/v1/jobs/{job['id']}/artifacts/report.json", headers=AUTH).json()
    metrics = report["metrics"]
    for key in ("clean_acc", "fgsm_acc", "pgd20_acc", "cw_acc", "autoattack_acc"):
        assert metrics[key] is not None and 0.0 <= metrics[key] <= 1.0, (key, metrics)
    assert report["teacher"]["source"] == "timm:resnet18"
    assert report["teacher"]["input_size"] == 64
    assert report["dataset"]["name"] == "imagefolder"
    assert report["dataset"]["test_size"] == 20 and report["dataset"]["num_classes"] == 10


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("../other/theirs", 422, "dataset_path_forbidden"),  # another tenant's folder, by ..
        ("/etc", 422, "dataset_path_forbidden"),  # absolute
        ("escape", 422, "dataset_path_forbidden"),  # a symlink that leaves the tenant's folder
        ("nowhere", 404, "dataset_not_found"),
    ],
)
def test_path_escapes_are_refused_and_nothing_is_queued(byo: dict[str, Any], path: str, status: int, code: str) -> None:
    api, env = byo["api"], byo["env"]
    before = api.get("/v1/jobs", headers=AUTH, params={"limit": 100}).json()["data"]
    depth = env.store.fleet.queue_depth(env.settings["queue"])
    body = _job("tch_" + "0" * 24, path)
    body.pop("teacher")  # natural training: no teacher, so only the dataset can be refused
    body["method"] = "natural"
    r = api.post("/v1/jobs", headers=AUTH, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["field"] == "dataset.path", err
    assert "nothing was queued" in err["message"]
    assert api.get("/v1/jobs", headers=AUTH, params={"limit": 100}).json()["data"] == before
    assert env.store.fleet.queue_depth(env.settings["queue"]) == depth


def test_the_listing_shows_only_the_tenants_folders(byo: dict[str, Any]) -> None:
    folders = byo["api"].get("/v1/datasets", headers=AUTH).json()["folders"]
    paths = {f["path"] for f in folders}
    assert "pets64" in paths and "theirs" not in paths and "../other/theirs" not in paths
    assert not any(Path(p).is_absolute() for p in paths)
