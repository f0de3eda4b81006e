"""What a training method is (after mdistiller's ``Distiller``).

A method owns the student, the frozen teacher (kept in eval mode whatever ``train()`` is called with)
and any extra trainable modules (projection heads) and buffers (memory banks) in ``extras``. Its
``training_step(x, y, idx)`` runs its inner adversary, if any, and returns the loss with its named
parts. The shared trainer does everything else.

Adding a method (docs/extending.md): its parameters class in :mod:`gacd_core.method_params`, which
declares its name, label, description, whether it needs a teacher and its defaults, named in
``MethodParams``; and one file in this package with a ``Method[ItsParams]`` subclass decorated with
``@register_method(ItsParams)`` (the package imports every module of itself). Every list of methods
derives from those two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

import torch
from torch import nn

from gacd_core import catalog
from gacd_core.attacks import PGD
from gacd_core.errors import SpecError
from gacd_core.method_params import METHOD_PARAMS, MethodParamsBase
from gacd_core.models import ImageClassifier
from gacd_core.registry import Registry
from gacd_core.spec import TrainAttackSpec

P = TypeVar("P", bound=MethodParamsBase)


@dataclass
class MethodContext:
    """Facts about the job a method may need.

    Attributes:
        num_classes: the student's classes.
        train_labels: labels of the training split, indexed like the batches' ``idx``.
        attack: the inner adversary's configuration.
        epochs: the job's training epochs (0: not known; a method that schedules a term by epoch,
            ``iad``'s warm-up, then applies it from the start).
    """

    num_classes: int
    train_labels: torch.Tensor
    attack: TrainAttackSpec = field(default_factory=TrainAttackSpec)
    epochs: int = 0

    @property
    def train_size(self) -> int:
        return len(self.train_labels)


@dataclass
class StepOutput:
    """A training step's loss, its named parts (detached, for logs) and the student's logits on the
    inputs it was trained on (for training accuracy)."""

    loss: torch.Tensor
    parts: dict[str, torch.Tensor]
    logits: torch.Tensor


class Method(nn.Module, Generic[P]):
    """Base class of every training method, ``Method[ItsParams]``; ``name`` and ``params_class`` are set
    by :func:`register_method`.

    Raises:
        TypeError: ``params`` are not the method's parameters class.
        SpecError: the method needs a teacher and has none, or its parameters ask what a teacher of
            another label set cannot give (:meth:`~gacd_core.method_params.MethodParamsBase.cross_task_errors`).
    """

    name: ClassVar[str] = ""
    params_class: ClassVar[type[MethodParamsBase]]

    def __init__(
        self,
        student: ImageClassifier,
        teacher: ImageClassifier | None,
        params: P,
        ctx: MethodContext,
    ) -> None:
        super().__init__()
        if not isinstance(params, self.params_class):
            raise TypeError(f"method {self.name!r} takes {self.params_class.__name__}, not {type(params).__name__}")
        if self.params_class.needs_teacher and teacher is None:
            raise SpecError([("teacher", f"method {self.name!r} needs a teacher")])
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)
        self.params: P = params
        self.ctx = ctx
        self.extras = nn.ModuleDict()
        a = ctx.attack
        self.adversary = PGD(a.eps, a.steps, a.step_size, a.random_start)
        if teacher is not None:
            self._check_label_sets()

    # The teacher is frozen: it stays in eval mode whatever the trainer asks.
    def train(self, mode: bool = True) -> Method:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Student parameters, then those of the extras."""
        yield from self.student.parameters()
        yield from self.extras.parameters()

    def training_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> StepOutput:
        raise NotImplementedError

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled features, logits) of the frozen teacher."""
        assert self.teacher is not None
        return self.teacher.forward_all(x)

    @property
    def cross_task(self) -> bool:
        """Teacher and student label sets differ: said by the job (``method_params.cross_task``), else
        inferred from the class counts. Equal counts do not prove equal label sets, so an explicit
        ``cross_task: true`` wins over them."""
        assert self.teacher is not None
        explicit = getattr(self.params, "cross_task", None)
        return bool(explicit) if explicit is not None else self.teacher.num_classes != self.ctx.num_classes

    def _check_label_sets(self) -> None:
        """Refuse what the parameters ask that a teacher of another label set cannot give, when the job
        says or the class counts show that the label sets differ. The rules are the parameters class's
        (the specification applies them to an explicit ``cross_task: true``)."""
        assert self.teacher is not None
        errors = self.params.cross_task_errors(self.cross_task)
        if errors:
            counts = f"the teacher has {self.teacher.num_classes} classes and the dataset {self.ctx.num_classes}"
            raise SpecError([(f"hyperparameters.method_params.{field}", f"{msg} ({counts})") for field, msg in errors])

    def require_same_labels(self, field_name: str) -> None:
        """Soft-label terms compare teacher and student outputs class by class."""
        assert self.teacher is not None
        if self.cross_task:
            raise SpecError(
                [
                    (
                        field_name,
                        f"the teacher has {self.teacher.num_classes} classes and the dataset {self.ctx.num_classes}"
                        f"{' (declared a different task)' if self.teacher.num_classes == self.ctx.num_classes else ''}"
                        f": method {self.name!r} compares their outputs class by class and needs one label set",
                    )
                ]
            )


METHODS: Registry[type[Method]] = Registry(
    "method", catalog.METHODS, declared_in="gacd_core.method_params: a parameters class named in MethodParams"
)
M = TypeVar("M", bound=Method)


def register_method(params: type[MethodParamsBase]) -> Callable[[type[M]], type[M]]:
    """Register a :class:`Method` subclass as the implementation of the method ``params`` declares.

    Raises:
        ValueError: ``params`` is not a declared parameters class, or the method already has an
            implementation.
    """

    def deco(cls: type[M]) -> type[M]:
        name = getattr(params, "name", None)
        if name is None or METHOD_PARAMS.get(name) is not params:
            raise ValueError(f"{params.__name__} is not declared: name it in gacd_core.method_params.MethodParams")
        cls.name = name
        cls.params_class = params
        METHODS.register(name)(cls)
        return cls

    return deco
