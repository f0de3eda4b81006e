"""``rslad``: Robust Soft Label Adversarial Distillation (Zi, Zhao, Ma & Jiang, ICCV 2021, Eq. 7):
5/6 * KL(T(x) || S(x')) + 1/6 * KL(T(x) || S(x)), where x' maximises KL(T(x) || S(x')) by PGD (Eq. 6):
the teacher's soft labels on clean data replace the hard labels everywhere, the attack included."""

from __future__ import annotations

import torch

from gacd_core.attacks import KLAttack, kl_div
from gacd_core.methods.base import Method, StepOutput, register_method


@register_method("rslad")
class RSLAD(Method):
    needs_teacher = True

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.require_same_labels("teacher")
        a = self.ctx.attack
        self.kl_adversary = KLAttack(a.eps, a.steps, a.step_size, a.random_start)

    def training_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> StepOutput:
        p = self.params
        _, t_logits = self.teacher_outputs(x)
        x_adv = self.kl_adversary(self.student, x, t_logits)
        adv_logits = self.student(x_adv)
        clean_logits = self.student(x)
        kl_adv = kl_div(t_logits, adv_logits)
        kl_clean = kl_div(t_logits, clean_logits)
        loss = p.adv_weight * kl_adv + p.clean_weight * kl_clean
        return StepOutput(loss, {"kl_adv": kl_adv.detach(), "kl_clean": kl_clean.detach()}, adv_logits)
