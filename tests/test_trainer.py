"""The shared trainer: exact resume, stop requests, progress, schedules, checkpoint safety."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch

from gacd_core.data import ImageSet
from gacd_core.errors import CheckpointError, TrainingStopped
from gacd_core.methods import METHODS, MethodContext
from gacd_core.models import create_model
from gacd_core.progress import EpochCompleted, TrainingProgress, TrainingStarted, TrainingStep
from gacd_core.spec import HyperParameters, parse_spec
from gacd_core.trainer import CHECKPOINT_NAME, Trainer, lr_factor

pytestmark = pytest.mark.unit


def _data(n: int = 96) -> ImageSet:
    gen = torch.Generator().manual_seed(123)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    return ImageSet(images, torch.arange(n) % 10)


# Resumption is tested for GACD's defaults (in-batch negatives) and for its memory bank, whose rows and
# partition constant are state of their own.
RESUMED = [
    pytest.param("at", None, id="at"),
    pytest.param("gacd", None, id="gacd"),
    pytest.param("gacd", {"negatives": "memory"}, id="gacd-memory-bank"),
    pytest.param("rslad", None, id="rslad"),
]


def _trainer(
    method: str, ckpt: Path | None, epochs: int = 2, init_seed: int = 0, params: dict | None = None, **kw
) -> Trainer:
    torch.manual_seed(init_seed)
    doc = {
        "method": method,
        "hyperparameters": {
            "epochs": epochs,
            "batch_size": 32,
            "lr": 0.05,
            "attack": {"steps": 2},
            "method_params": {},
        },
    }
    if method not in ("natural", "at"):
        doc["teacher"] = {"weights": "unused"}
        doc["hyperparameters"]["method_params"] = {"n_negatives": 32} if method in ("crd", "gacd") else {}
    doc["hyperparameters"]["method_params"].update(params or {})
    spec = parse_spec(doc)
    data = _data()
    teacher = create_model("tiny_wrn") if method not in ("natural", "at") else None
    if teacher is not None:  # one fixed teacher, whatever the init seed
        with torch.random.fork_rng():
            torch.manual_seed(99)
            teacher = create_model("tiny_wrn")
    student = create_model("tiny_resnet")
    m = METHODS.get(method)(student, teacher, spec.params, MethodContext(10, data.labels, spec.hyperparameters.attack))
    return Trainer(m, data, spec.hyperparameters, device=torch.device("cpu"), seed=7, checkpoint_dir=ckpt, **kw)


def _state(t: Trainer) -> dict[str, torch.Tensor]:
    return {
        **{f"s.{k}": v for k, v in t.method.student.state_dict().items()},
        **{f"x.{k}": v for k, v in t.method.extras.state_dict().items()},
    }


@pytest.mark.slow
@pytest.mark.parametrize("method, params", RESUMED)
def test_resume_gives_identical_weights(tmp_path, method, params):
    straight = _trainer(method, None, params=params)
    straight.fit()

    stop_at_epoch_2 = _trainer(method, tmp_path, params=params, should_stop=lambda: bool(stopper.history))
    stopper = stop_at_epoch_2
    with pytest.raises(TrainingStopped) as stopped:
        stop_at_epoch_2.fit()
    assert stopped.value.epoch == 2 and stopped.value.step == 1
    assert (tmp_path / CHECKPOINT_NAME).is_file()

    resumed = _trainer(method, tmp_path, init_seed=555, params=params)  # other initial weights: the checkpoint wins
    result = resumed.fit(resume_from=tmp_path / CHECKPOINT_NAME)
    assert result.resumed_from_epoch == 1 and result.epochs == 2 and len(result.history) == 2
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []
    assert straight.history[1]["loss"] == resumed.history[1]["loss"]


def test_checkpoint_is_plain_data_and_refuses_another_job(tmp_path):
    t = _trainer("natural", tmp_path, epochs=1, fingerprint="job-a")
    t.fit()
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["epoch"] == 1 and state["fingerprint"] == "job-a" and "rng" in state
    other = _trainer("natural", tmp_path, epochs=1, fingerprint="job-b")
    with pytest.raises(CheckpointError, match="another job"):
        other.fit(resume_from=tmp_path / CHECKPOINT_NAME)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        _trainer("natural", None, epochs=1).fit(resume_from=tmp_path / "junk.pt")


def test_progress_and_stop_callbacks(tmp_path):
    events: list[TrainingProgress] = []
    t = _trainer("natural", tmp_path, epochs=2, progress=events.append, log_every=1, log_seconds=math.inf)
    t.fit()
    assert isinstance(events[0], TrainingStarted) and events[0].step == 0 and events[0].global_step == 0
    steps = [e for e in events if isinstance(e, TrainingStep)]
    epochs = [e for e in events if isinstance(e, EpochCompleted)]
    assert len(events) == 1 + len(steps) + len(epochs)  # one type per event, nothing else
    assert [e.epoch for e in epochs] == [1, 2] and all(e.record is not None for e in epochs)
    assert len(steps) == 2 * t.steps_per_epoch == 6
    assert [e.global_step for e in steps] == list(range(1, 7))
    assert steps[-1].eta_seconds == pytest.approx(0.0, abs=1e-6) and steps[0].eta_seconds > 0
    assert all(e.images_per_second > 0 and math.isfinite(e.loss) and "ce" in e.parts for e in steps)
    assert epochs[-1].fraction == 1.0
    rec = epochs[0].record
    assert {"epoch", "lr", "loss", "loss_parts", "train_acc", "seconds", "images_per_second"} <= set(rec)

    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) >= 2

    t = _trainer("natural", None, epochs=3, should_stop=stop, check_every=2, check_seconds=math.inf)
    with pytest.raises(TrainingStopped) as err:
        t.fit()
    assert (err.value.epoch, err.value.step) == (1, 3)  # checked at steps 1 and 3


def test_stop_and_progress_are_also_checked_by_time(monkeypatch):
    """A slow step (a large model, a long inner attack) must not delay a cancel by check_every steps."""
    calls, events = [], []
    t = _trainer(
        "natural", None, epochs=2, should_stop=lambda: calls.append(1) and False, progress=events.append,
        check_every=1000, log_every=1000, check_seconds=0.05, log_seconds=0.05,
    )  # fmt: skip
    step = t.train_step

    def slow_step(*a):
        time.sleep(0.06)
        return step(*a)

    monkeypatch.setattr(t, "train_step", slow_step)
    t.fit()
    assert len(calls) == 2 * t.steps_per_epoch  # every step, though check_every is 1000
    assert len([e for e in events if isinstance(e, TrainingStep)]) == 2 * t.steps_per_epoch


@pytest.mark.slow
def test_validation_monitoring_on_held_out_split():
    t = _trainer("natural", None, epochs=1, val=_data(40))
    result = t.fit()
    rec = result.history[0]
    assert 0.0 <= rec["val_clean_acc"] <= 1.0 and 0.0 <= rec["val_pgd_acc"] <= rec["val_clean_acc"] + 1e-9


def test_learning_rate_schedules():
    h = HyperParameters(epochs=10, schedule="piecewise", milestones=[0.5, 0.75], gamma=0.1)
    f = lr_factor(h, steps_per_epoch=10)
    assert [f(0), f(49), f(50), f(74), f(75), f(99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    c = lr_factor(HyperParameters(epochs=10, schedule="cosine"), 10)
    assert c(0) == pytest.approx(1.0) and c(50) == pytest.approx(0.5) and c(100) == pytest.approx(0.0, abs=1e-9)
    w = lr_factor(HyperParameters(epochs=10, schedule="constant", warmup_epochs=1), 10)
    assert [w(0), w(4), w(9), w(10), w(99)] == pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0])


def test_trainer_applies_schedule_to_optimizer():
    t = _trainer("natural", None, epochs=2)
    t.fit()
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.01)
    assert [r["lr"] for r in t.history] == pytest.approx([0.05 * 0.1, 0.05 * 0.01])


def test_a_stop_during_the_epochs_validation_lands_between_its_batches():
    """The per-epoch validation (clean and PGD-10 over the held-out split) can be long: a cancel is
    checked before each of its batches too, before the epoch's checkpoint."""
    calls = []

    def stop() -> bool:  # checked at each of the epoch's 3 steps, then in the validation
        calls.append(1)
        return len(calls) > 3

    t = _trainer("natural", None, epochs=2, val=_data(600), should_stop=stop, check_every=1)
    with pytest.raises(TrainingStopped) as err:
        t.fit()
    assert len(calls) == 4 and (err.value.epoch, err.value.step) == (1, t.steps_per_epoch)
    assert t.epoch == 0 and t.history == []  # the epoch was not recorded
