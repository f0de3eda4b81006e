"""``natural``: empirical risk minimisation on clean data."""

from __future__ import annotations

import torch

from gacd_core.attacks import ce_loss
from gacd_core.method_params import NaturalParams
from gacd_core.methods.base import Method, StepOutput, register_method


@register_method(NaturalParams)
class Natural(Method[NaturalParams]):
    """CE(S(x), y)."""

    def training_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> StepOutput:
        logits = self.student(x)
        loss = ce_loss(logits, y).mean()
        return StepOutput(loss, {"ce": loss.detach()}, logits)
