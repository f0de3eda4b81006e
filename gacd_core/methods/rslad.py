"""``rslad``: Robust Soft Label Adversarial Distillation (Zi, Zhao, Ma & Jiang, ICCV 2021, Eq. 7):
5/6 * KL(T(x) || S(x')) + 1/6 * KL(T(x) || S(x)), where x' maximises KL(T(x) || S(x')) by PGD (Eq. 6):
the teacher's soft labels on clean data replace the hard labels everywhere, the attack included.

The optimisation follows the authors' code (github.com/zibojia/RSLAD, ``resnet18_rslad_cifar10.py``):
its ``kl_loss(a, b) = -a*b + log(b + 1e-5)*b`` is averaged with ``torch.mean`` over batch x classes,
hence ``kl_reduction = "mean"`` by default (1/C of a per-sample KL; the 1e-5 only shifts the loss by a
constant of the teacher and does not change any gradient by more than it shifts log b), and its
``SGD(lr=0.1, momentum=0.9, weight_decay=2e-4)`` gives this method's default weight decay
(:class:`gacd_core.spec.RSLADParams`). Deviation kept on purpose: the inner maximisation starts from a
uniform point of the eps-ball (``rslad_loss.py`` starts from x + 0.001 * N(0, 1)), with the same attack
configuration as every other method of the comparison (docs/method.md).
"""

from __future__ import annotations

import torch

from gacd_core.attacks import KLAttack, kl_div
from gacd_core.method_params import RSLADParams
from gacd_core.methods.base import Method, StepOutput, register_method


@register_method(RSLADParams)
class RSLAD(Method[RSLADParams]):
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
        kl_adv = kl_div(t_logits, adv_logits, reduction=p.kl_reduction)
        kl_clean = kl_div(t_logits, clean_logits, reduction=p.kl_reduction)
        loss = p.adv_weight * kl_adv + p.clean_weight * kl_clean
        return StepOutput(loss, {"kl_adv": kl_adv.detach(), "kl_clean": kl_clean.detach()}, adv_logits)
