"""``kd``: knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
Network", 2015): alpha * tau^2 * KL(softmax(T(x)/tau) || softmax(S(x)/tau)) + (1 - alpha) * CE(S(x), y),
on clean data only. The tau^2 factor keeps the soft-target gradients on the scale of the hard ones."""

from __future__ import annotations

import torch

from gacd_core.attacks import ce_loss, kl_div
from gacd_core.method_params import KDParams
from gacd_core.methods.base import Method, StepOutput, register_method


@register_method(KDParams)
class KnowledgeDistillation(Method[KDParams]):
    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.require_same_labels("teacher")

    def training_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> StepOutput:
        p = self.params
        _, t_logits = self.teacher_outputs(x)
        logits = self.student(x)
        kd = p.temperature**2 * kl_div(t_logits, logits, p.temperature)
        ce = ce_loss(logits, y).mean()
        loss = p.alpha * kd + (1 - p.alpha) * ce
        return StepOutput(loss, {"kd": kd.detach(), "ce": ce.detach()}, logits)
