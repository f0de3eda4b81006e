"""``logit_matching``: a toy distillation method, the implementation file of a new method as
docs/extending.md says to add it. tests/test_adding_a_method.py copies this file into the
``gacd_core/methods/`` of a copy of the package (as ``logit_matching.py``), beside its parameters class
(tests/_toy_method_params.py), and runs the method through the CLI, the HTTP API and a worker there."""

from __future__ import annotations

import torch

from gacd_core.attacks import ce_loss
from gacd_core.method_params import LogitMatchingParams  # type: ignore[attr-defined]  # in the copy only
from gacd_core.methods.base import Method, StepOutput, register_method


@register_method(LogitMatchingParams)
class LogitMatching(Method[LogitMatchingParams]):
    """Ba & Caruana, "Do Deep Nets Really Need to be Deep?", NeurIPS 2014, Eq. 1: the student regresses
    the teacher's logits, mean over batch x classes of (S(x) - T(x))^2."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.require_same_labels("teacher")

    def training_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> StepOutput:
        _, t_logits = self.teacher_outputs(x)
        logits = self.student(x)
        mse = (logits.float() - t_logits.float()).pow(2).mean()
        ce = ce_loss(logits, y).mean()
        loss = mse + self.params.ce_weight * ce
        return StepOutput(loss, {"logit_mse": mse.detach(), "ce": ce.detach()}, logits)
