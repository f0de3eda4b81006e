"""Prompt cancellation and honest progress, through a real worker: a cancel lands within seconds during
a long epoch and during a long evaluation, and ``GET /v1/jobs/{id}`` shows progress inside the first
epoch (steps, images per second, an ETA) and during the evaluation (stage ``evaluating``, the model,
the attack, the fraction done, an ETA)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from _fakes import make_cifar10
from _workers import ServiceEnv, wait_until
from fastapi.testclient import TestClient

pytestmark = [pytest.mark.api, pytest.mark.worker, pytest.mark.e2e]

log = logging.getLogger("test.cancel")  # the measured seconds (pytest -o log_cli=true shows them)
KEY = "cancel-key-" + "k" * 24
WORKER = "cw"
CANCEL_DEADLINE = 10.0  # seconds from the cancel request to status cancelled


@pytest.fixture(scope="module")
def env(start_service: Callable[..., ServiceEnv], tmp_path_factory: pytest.TempPathFactory) -> ServiceEnv:
    data = tmp_path_factory.mktemp("data")
    make_cifar10(data, n_train=3000, n_test=3000)
    return start_service("cancel", workers=[WORKER], data_root=data, api_keys=f"{KEY}=t", queue="cancelq")


@pytest.fixture(scope="module")
def api(env: ServiceEnv) -> TestClient:
    return env.app()


def H() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def job(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "method": "at",
        "student": {"arch": "tiny_wrn"},
        "dataset": {"name": "cifar10"},
        "hyperparameters": {"epochs": 2, "batch_size": 32, "attack": {"steps": 2}},
        "evaluation": {"eps_sweep": [0], "throughput": False},
        "seed": 0,
    }
    return {**doc, **over}


def cancel_and_time(api: TestClient, env: ServiceEnv, job_id: str) -> tuple[float, dict[str, Any]]:
    """Seconds from the cancel request to status ``cancelled``, and the final record."""
    t0 = time.monotonic()
    r = api.post(f"/v1/jobs/{job_id}/cancel", headers=H())
    assert r.status_code == 200, r.text

    def finished() -> dict[str, Any] | None:
        rec = api.get(f"/v1/jobs/{job_id}", headers=H()).json()
        return rec if rec["status"] in ("cancelled", "succeeded", "failed") else None

    final = wait_until(finished, f"job {job_id} to finish after its cancel", timeout=60, log=env.log(WORKER))
    return time.monotonic() - t0, final


def test_a_cancel_inside_a_long_first_epoch_lands_within_seconds_and_progress_moves_before(
    api: TestClient, env: ServiceEnv
) -> None:
    # 3000 images in batches of 32 with a 40-step inner attack: an epoch of 93 slow steps, longer than
    # the cancel deadline on a CPU (about a minute here; the epoch's length is measured below).
    spec = job(hyperparameters={"epochs": 2, "batch_size": 32, "attack": {"steps": 40}})
    jid = api.post("/v1/jobs", headers=H(), json=spec).json()["id"]

    def stepping() -> dict[str, Any] | None:
        p = api.get(f"/v1/jobs/{jid}", headers=H()).json()["progress"]
        return p if p["stage"] == "training" and (p["step"] or 0) >= 2 and p["eta_seconds"] else None

    p = wait_until(stepping, "progress inside the first epoch", timeout=120, log=env.log(WORKER))
    assert p["epoch"] == 0 and p["steps_per_epoch"] == 3000 // 32 and 0 < p["fraction"] < 0.5
    assert p["metrics"]["images_per_second"] > 0 and p["eta_seconds"] > 0
    # the ETA is the remaining steps at the measured rate: the epoch is far longer than the deadline
    epoch_seconds = p["steps_per_epoch"] * 32 / p["metrics"]["images_per_second"]
    log.info("epoch_seconds %.1f", epoch_seconds)
    assert epoch_seconds > CANCEL_DEADLINE, f"an epoch takes {epoch_seconds:.0f} s: not a long epoch"
    seconds, final = cancel_and_time(api, env, jid)
    log.info("cancel_seconds %.2f", seconds)
    assert final["status"] == "cancelled", final
    assert seconds < CANCEL_DEADLINE, f"the cancel took {seconds:.1f} s"
    assert final["progress"]["epoch"] == 0  # stopped inside the first epoch, not at its end


def test_a_cancel_during_evaluation_lands_within_seconds_and_progress_names_the_attack(
    api: TestClient, env: ServiceEnv
) -> None:
    # one short epoch, then the protocol on 3000 test images in batches of 100 (PGD-20, CW-30 ...)
    spec = job(
        dataset={"name": "cifar10", "train_subset": 64},
        hyperparameters={"epochs": 1, "batch_size": 32, "attack": {"steps": 1}},
        evaluation={"eps_sweep": [0], "throughput": False, "batch_size": 100},
    )
    jid = api.post("/v1/jobs", headers=H(), json=spec).json()["id"]

    def evaluating() -> dict[str, Any] | None:
        p = api.get(f"/v1/jobs/{jid}", headers=H()).json()["progress"]
        return p if p["stage"] == "evaluating" and p["fraction"] > 0 and p["eta_seconds"] else None

    p = wait_until(evaluating, "progress during the evaluation", timeout=120, log=env.log(WORKER))
    assert p["model"] == "student" and p["attack"] in ("clean", "fgsm", "pgd20", "cw")
    assert 0 < p["fraction"] < 0.5 and p["eta_seconds"] > 2 * CANCEL_DEADLINE
    log.info("evaluation_eta_seconds %.1f", p["eta_seconds"])
    seconds, final = cancel_and_time(api, env, jid)
    log.info("cancel_seconds %.2f", seconds)
    assert final["status"] == "cancelled", final
    assert seconds < CANCEL_DEADLINE, f"the cancel took {seconds:.1f} s"
    assert final["artifacts"] == []
    events = api.get(f"/v1/jobs/{jid}/events", headers=H()).json()["data"]
    stages = [e["message"] for e in events if e["type"] == "stage"]
    assert "evaluating student" in stages
