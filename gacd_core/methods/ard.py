"""``ard``: Adversarially Robust Distillation (Goldblum, Fowl, Feizi & Goldstein, AAAI 2020, Eq. 3):
alpha * tau^2 * KL(softmax(T(x)/tau) || softmax(S(x')/tau)) + (1 - alpha) * CE(S(x), y), where x' is PGD
on the student's cross-entropy. With alpha = 1 (our default) it is GACD.md's ``tau^2 * KL(T(x)/tau ||
S(x')/tau)``.

The optimisation follows the authors' code (github.com/goldblum/AdversariallyRobustDistillation,
``main.py``): its loss line ``alpha*temp*temp*KL_loss(log_softmax(outputs/temp), softmax(teacher/temp))``
with ``KL_loss = nn.KLDivLoss()`` averages over batch x classes, hence ``kl_reduction = "mean"`` by
default (1/C of a per-sample KL), tau = 30, alpha = 1, and its optimiser ``SGD(lr=0.1, momentum=0.9,
weight_decay=2e-4)`` gives this method's default weight decay (:class:`gacd_core.spec.ARDParams`).
Deviations kept on purpose: the inner PGD runs with the student in eval mode (ARD's code attacks it in
train mode), the same for every method of the comparison; and the clean forward S(x) runs only when
alpha < 1 (ARD's code runs ``basic_net(inputs)`` in train mode at every step, even at alpha = 1 where its
CE has weight 0, which moves the batch-norm statistics toward clean images) (docs/method.md).
"""

from __future__ import annotations

import torch

from gacd_core.attacks import ce_loss, kl_div
from gacd_core.method_params import ARDParams
from gacd_core.methods.base import Method, StepOutput, register_method


@register_method(ARDParams)
class ARD(Method[ARDParams]):
    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.require_same_labels("teacher")

    def training_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> StepOutput:
        p = self.params
        _, t_logits = self.teacher_outputs(x)
        x_adv = self.adversary(self.student, x, y)
        adv_logits = self.student(x_adv)
        kd = p.temperature**2 * kl_div(t_logits, adv_logits, p.temperature, reduction=p.kl_reduction)
        parts = {"kd_adv": kd.detach()}
        loss = p.alpha * kd
        if p.alpha < 1:
            ce = ce_loss(self.student(x), y).mean()
            loss = loss + (1 - p.alpha) * ce
            parts["ce"] = ce.detach()
        return StepOutput(loss, parts, adv_logits)
