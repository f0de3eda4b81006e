"""A toy distillation method, added the way docs/extending.md says: its parameters class, then
its implementation, and nothing else. tests/test_adding_a_method.py imports it (in the test process and
in a worker) as if the package held it, and runs it through the CLI and the HTTP API."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from gacd_core.attacks import ce_loss
from gacd_core.methods import Method, StepOutput, register_method
from gacd_core.spec import MethodParamsBase, declare_method


@declare_method
class LogitMatchingParams(MethodParamsBase):
    """Ba & Caruana 2014: mean squared difference of teacher and student logits + ce_weight * CE."""

    method: Literal["logit_matching"] = Field("logit_matching", exclude=True)
    label = "Logit matching"
    description = "regression of the student's logits on the teacher's (Ba & Caruana 2014), on clean data"
    needs_teacher = True
    ce_weight: float = Field(0.0, ge=0, le=10)


@register_method(LogitMatchingParams)
class LogitMatching(Method):
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
