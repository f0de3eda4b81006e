"""``at``: PGD adversarial training (Madry et al., "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018, Eq. 2.1): min_theta E max_{|d| <= eps} CE(S(x + d), y), the inner
maximum approximated by PGD with random start."""

from __future__ import annotations

import torch

from gacd_core.attacks import ce_loss
from gacd_core.method_params import ATParams
from gacd_core.methods.base import Method, StepOutput, register_method


@register_method(ATParams)
class AdversarialTraining(Method[ATParams]):
    """CE(S(x'), y) with x' = PGD on the student's cross-entropy."""

    def training_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> StepOutput:
        x_adv = self.adversary(self.student, x, y)
        logits = self.student(x_adv)
        loss = ce_loss(logits, y).mean()
        return StepOutput(loss, {"ce_adv": loss.detach()}, logits)
