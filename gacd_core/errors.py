"""Typed exceptions raised by the core. Torch-free.

The CLI prints them as one readable line; the service maps them to HTTP problems with a stable
``code``. Each carries the ``field`` of the job specification it is about, when there is one.
"""

from __future__ import annotations


class GACDError(Exception):
    """Base class of every error the core raises on purpose."""

    code = "gacd_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class UnknownNameError(GACDError, KeyError):
    """A model, method, attack or dataset name that no registry holds."""

    code = "unknown_name"

    def __init__(self, kind: str, name: str, valid: list[str], *, field: str | None = None) -> None:
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(valid)}", field=field)
        self.kind = kind
        self.name = name
        self.valid = valid

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return GACDError.__str__(self)


class SpecError(GACDError, ValueError):
    """A job specification that does not validate. ``errors`` holds one entry per bad field."""

    code = "invalid_spec"

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        text = "; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in errors)
        super().__init__(text, field=errors[0][0] if errors else None)

    def __str__(self) -> str:
        return self.message


class WeightsError(GACDError):
    """Model weights that cannot be loaded: bad file, unknown architecture, shape mismatch, NaN."""

    code = "invalid_weights"


class TeacherLoadError(WeightsError):
    """The teacher's weights do not load into the declared architecture."""

    code = "invalid_teacher"


class DatasetError(GACDError):
    """A dataset that is missing, malformed or does not fit the job."""

    code = "invalid_dataset"


class DatasetPathForbidden(DatasetError):
    """A dataset reference that points outside its data root: an absolute path (where only relative ones
    are taken), ``..``, a symbolic link that leaves the root, another tenant's folder."""

    code = "dataset_path_forbidden"


class DatasetNotFound(DatasetError):
    """A dataset reference under the data roots that names nothing there."""

    code = "dataset_not_found"


class DatasetInvalid(DatasetError):
    """A dataset folder (or shard set) that is there but cannot be trained on: no class folders, one class,
    unreadable or non-image files (counted and named), class sets that differ between splits."""

    code = "dataset_invalid"


class CheckpointError(GACDError):
    """A checkpoint that cannot be resumed from."""

    code = "invalid_checkpoint"


class ExportError(GACDError):
    """The model could not be exported to ONNX, or the exported graph disagrees with PyTorch."""

    code = "export_error"


class TrainingStopped(GACDError):
    """Raised by the trainer when its stop callback asks it to stop."""

    code = "stopped"

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"training stopped at epoch {epoch}, step {step}")
        self.epoch = epoch
        self.step = step


class EvaluationStopped(TrainingStopped):
    """Raised by the evaluation when its stop callback asks it to stop (checked between attacks, between
    batches and before every forward pass of an attack). A :class:`TrainingStopped`, so that whoever
    handles a stopped job handles both alike."""

    def __init__(self, where: str) -> None:
        GACDError.__init__(self, f"evaluation stopped during {where}")
        self.epoch = -1
        self.step = -1


class TeacherUnfitError(GACDError):
    """A teacher at or near chance on the job's dataset (see :mod:`gacd_core.teacher_check`).

    ``check`` holds the measured figures (accuracy, subset sizes, normalisation tried).
    """

    code = "teacher_unfit"

    def __init__(self, message: str, *, check: dict[str, object] | None = None, field: str | None = "teacher") -> None:
        super().__init__(message, field=field)
        self.check = dict(check or {})


class TrainingPaused(TrainingStopped):
    """Raised when the pause callback asks a job to stop for now (its worker is shutting down).

    The trainer first writes a checkpoint at the step boundary it stopped at, so the same job, run
    again with the same checkpoint directory, continues from that step and gives the same result.
    """

    code = "paused"
