"""Pausing a training run inside an epoch (a worker shutting down) and resuming it elsewhere gives the
same weights, bit for bit, as a run that never paused."""

from __future__ import annotations

import pytest
import torch
from test_trainer import RESUMED, _state, _trainer

from gacd_core.errors import TrainingPaused
from gacd_core.trainer import CHECKPOINT_NAME, MID_EPOCH_FORMAT

pytestmark = pytest.mark.unit


def _pause_at(epoch: int, step: int):
    """A pause callback that fires before ``step`` (1-based) of ``epoch``, counting the calls itself."""
    seen = {"calls": 0}
    steps_per_epoch = 3  # 96 images, batches of 32

    def should_pause() -> bool:
        seen["calls"] += 1
        return seen["calls"] == (epoch - 1) * steps_per_epoch + step

    return should_pause


@pytest.mark.slow
@pytest.mark.parametrize("method, params", RESUMED)
def test_pausing_mid_epoch_twice_and_resuming_gives_identical_weights(tmp_path, method, params):
    straight = _trainer(method, None, epochs=3, params=params)
    straight.fit()

    # pause before step 2 of epoch 1 (one step done); resume in a new trainer and pause again at its 4th
    # check (steps 2 and 3 of epoch 1, step 1 of epoch 2: before step 2 of epoch 2); resume to the end
    first = _trainer(method, tmp_path, epochs=3, params=params, should_pause=_pause_at(1, 2))
    with pytest.raises(TrainingPaused) as paused:
        first.fit()
    assert (paused.value.epoch, paused.value.step) == (1, 1)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["format"] == MID_EPOCH_FORMAT and state["epoch"] == 0 and state["mid_epoch"]["step"] == 1

    second = _trainer(method, tmp_path, epochs=3, init_seed=555, params=params, should_pause=_pause_at(2, 1))
    with pytest.raises(TrainingPaused) as paused:
        second.fit(resume_from=tmp_path / CHECKPOINT_NAME)
    assert (paused.value.epoch, paused.value.step) == (2, 1)

    third = _trainer(method, tmp_path, epochs=3, init_seed=777, params=params)
    result = third.fit(resume_from=tmp_path / CHECKPOINT_NAME)
    assert result.epochs == 3 and len(result.history) == 3

    a, b = _state(straight), _state(third)
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    for r_straight, r_resumed in zip(straight.history, third.history, strict=True):
        assert r_straight["loss"] == r_resumed["loss"] and r_straight["train_acc"] == r_resumed["train_acc"]
        assert r_straight["loss_parts"] == r_resumed["loss_parts"]


@pytest.mark.slow
def test_a_pause_at_an_epoch_boundary_is_an_ordinary_resume(tmp_path):
    straight = _trainer("at", None, epochs=2)
    straight.fit()
    first = _trainer("at", tmp_path, epochs=2, should_pause=_pause_at(2, 1))
    with pytest.raises(TrainingPaused) as paused:
        first.fit()
    assert (paused.value.epoch, paused.value.step) == (2, 0)
    resumed = _trainer("at", tmp_path, epochs=2, init_seed=1)
    resumed.fit(resume_from=tmp_path / CHECKPOINT_NAME)
    a, b = _state(straight), _state(resumed)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
