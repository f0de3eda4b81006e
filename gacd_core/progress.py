"""What a running job tells its caller, as typed events. Torch-free.

The core reports a job's progress through one callback (:attr:`gacd_core.jobs.Callbacks.progress`)
that receives one of the events below; a caller tells them apart by their type, never by reading a
message:

- :class:`TrainingStarted`, :class:`TrainingStep` and :class:`EpochCompleted` from the trainer, with
  the epoch, the step, the loss and its parts, images per second and an ETA;
- :class:`StageChanged` when the job enters a :class:`Stage` outside training (loading the data,
  checking the teacher, evaluating the student, writing the report, ...);
- :class:`EvalProgress` during the evaluation: the model, the attack running, the fraction done.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias


class Stage(StrEnum):
    """The phases of a job, in the order a job goes through them. The values are the names users see
    (the job's ``stage`` events, the command line's stage lines)."""

    LOADING_DATA = "loading data"
    LOADING_TEACHER = "loading teacher"
    CHECKING_TEACHER = "checking teacher"
    TRAINING = "training"
    EXPORTING = "exporting onnx"
    EVALUATING_STUDENT = "evaluating student"
    EVALUATING_TEACHER = "evaluating teacher"
    STRUCTURE = "structure"
    COMPRESSION = "compression"
    WRITING = "writing report"

    @property
    def evaluates(self) -> str | None:
        """The model this stage evaluates under the protocol (``student``, ``teacher``), else None."""
        return _EVALUATED.get(self)


_EVALUATED = {Stage.EVALUATING_STUDENT: "student", Stage.EVALUATING_TEACHER: "teacher"}


@dataclass(frozen=True)
class TrainingProgress:
    """Where training stands; the trainer sends one of its three subclasses, never this class itself.

    Attributes:
        epoch: the epoch under way (1-based); for :class:`EpochCompleted`, the epoch just completed.
        step: steps done in that epoch (0 for :class:`TrainingStarted`).
        global_step: steps done over the whole run, earlier runs of a resumed job included.
        loss: the epoch's mean loss so far (NaN for :class:`TrainingStarted`); ``parts`` its terms.
        eta_seconds: the steps left at the rate measured in this run (NaN before the first step).
    """

    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    global_step: int
    total_steps: int
    loss: float
    parts: dict[str, float]
    lr: float
    images_per_second: float
    eta_seconds: float

    @property
    def fraction(self) -> float:
        """The share of all training steps done."""
        return self.global_step / max(1, self.total_steps)


@dataclass(frozen=True)
class TrainingStarted(TrainingProgress):
    """Sent once before the first step of a run (a resumed run included); no loss yet."""


@dataclass(frozen=True)
class TrainingStep(TrainingProgress):
    """Sent during an epoch, every few steps or seconds."""


@dataclass(frozen=True)
class EpochCompleted(TrainingProgress):
    """Sent once an epoch, with its monitoring and its checkpoint, is complete.

    Attributes:
        record: the epoch's row of the training history (loss, train accuracy, validation accuracy
            when monitored, seconds, images per second).
    """

    record: dict[str, Any]


@dataclass(frozen=True)
class StageChanged:
    """The job enters ``stage``; ``fraction`` is how far the job's work outside training has got."""

    stage: Stage
    fraction: float = 0.0


@dataclass
class EvalProgress:
    """Progress through one model's evaluation, sent after every attack on every batch.

    ``fraction`` is the share of this model's evaluation done, counted in forward-backward passes: an
    attack of ``s`` steps costs ``s + 1`` per image, the clean pass 1; AutoAttack, when asked, counts as
    400 per image (its four attacks of 100 iterations each) and moves as its own log reports each
    attack's batches. ``eta_seconds`` extrapolates the time taken so far over what is left. A job that
    evaluates the student and then the teacher reports the fraction and ETA of both passes together.
    """

    attack: str  # the attack running now: clean, fgsm, pgd20, cw, pgd20@2/255 (the sweep), autoattack/<its attack>
    fraction: float
    eta_seconds: float | None
    seconds: float  # since this model's evaluation started
    model: str = "model"  # set by the caller: student or teacher


TrainingEvent: TypeAlias = TrainingStarted | TrainingStep | EpochCompleted
"""What the trainer's progress callback receives."""
ProgressEvent: TypeAlias = TrainingEvent | StageChanged | EvalProgress
"""Every event the progress callback of a job receives."""

__all__ = [
    "EpochCompleted",
    "EvalProgress",
    "ProgressEvent",
    "Stage",
    "StageChanged",
    "TrainingEvent",
    "TrainingProgress",
    "TrainingStarted",
    "TrainingStep",
]
