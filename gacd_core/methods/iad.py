"""``iad``: Introspective Adversarial Distillation, IAD-I (Zhu, Yao, Han, Zhang, Liu, Niu, Zhou, Xu &
Yang, "Reliable Adversarial Distillation with Unreliable Teachers", ICLR 2022, Section 4).

The teacher's soft labels become less reliable on the student's adversarial examples as training goes
on, so the student trusts them only as far as the teacher is confident there, and otherwise its own
clean prediction (introspection). With x' = PGD on the student's CE (ARD's attack), the teacher's
confidence on it, taken as a constant,

    w_i = P_T(y_i | x'_i)^beta                              (softmax of T(x'_i) at the true class)

and KL(p || q) summed over classes, IAD-I is (the paper's IAD objective on ARD's base)

    L = alpha * (1/B) sum_i [ w_i * tau^2 * KL(T(x_i)/tau || S(x'_i)/tau)
                              + (1 - w_i) * KL(S(x_i) || S(x'_i)) ]
        + (1 - alpha) * CE(S(x), y)

During a warm-up (the first ``warmup_fraction`` of the epochs; the authors' ``--begin 60`` of 200) the
loss is ARD's, ``alpha * tau^2 * KL(T(x)/tau || S(x')/tau) + (1 - alpha) * CE(S(x), y)``.

What follows the authors' code (github.com/ZFancy/IAD, ``IAD-I.py``): the confidence from the frozen
teacher's softmax at temperature 1 on x', raised to beta and detached (``.item()``); the KL terms summed
over classes and averaged over the batch (``(1/B) * sum(KLDivLoss(reduce=False).sum(1))``: ``batchmean``);
the introspection target S(x) computed in train mode and *not* detached, without temperature; beta = 0.1,
tau = 1, alpha = 1, the warm-up, and ``SGD(lr=0.1, momentum=0.9, weight_decay=2e-4)`` (this method's
default weight decay).

Our choices: the teacher term is weighted by w_i (``weight_teacher_term: confidence``, the paper's
description of IAD: the student trusts the teacher by its confidence); the authors' IAD-I script leaves
it unweighted (weight 1) and only the introspection term gets 1 - w_i, which ``weight_teacher_term:
one`` reproduces. The warm-up counts training images (a buffer, so that a resumed run continues it),
and a job whose epoch count is unknown starts with the introspection on. As for ARD, the inner PGD runs
with the student in eval mode (the authors' in train mode) and with the job's shared attack
configuration.
"""

from __future__ import annotations

import torch
from torch import nn

from gacd_core import distributed
from gacd_core.attacks import ce_loss, kl_div
from gacd_core.method_params import IADParams
from gacd_core.methods.base import Method, StepOutput, register_method


def iad_loss(
    t_clean: torch.Tensor,
    t_adv: torch.Tensor,
    s_clean: torch.Tensor,
    s_adv: torch.Tensor,
    y: torch.Tensor,
    p: IADParams,
    introspect: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """IAD-I's loss (the module docstring's equation) from the teacher's logits on x and x' and the
    student's on x and x'; with ``introspect`` false, the warm-up's ARD loss. Returns the loss and its
    parts (detached): ``kd_adv`` (tau^2 KL to the teacher, batch mean, unweighted), ``introspection``
    (KL(S(x) || S(x')), batch mean, unweighted), ``trust`` (mean w), ``ce`` when alpha < 1."""
    tau = p.temperature
    kd = tau**2 * kl_div(t_clean, s_adv, tau, reduction="none")
    parts: dict[str, torch.Tensor] = {"kd_adv": kd.mean().detach()}
    if introspect:
        with torch.no_grad():
            w = torch.softmax(t_adv.float(), 1).gather(1, y[:, None]).squeeze(1).pow(p.beta)
        intro = kl_div(s_clean, s_adv, reduction="none")
        w_teacher = w if p.weight_teacher_term == "confidence" else torch.ones_like(w)
        distil = (w_teacher * kd + (1 - w) * intro).mean()
        parts["introspection"] = intro.mean().detach()
        parts["trust"] = w.mean()
    else:
        distil = kd.mean()
    loss = p.alpha * distil
    if p.alpha < 1:
        ce = ce_loss(s_clean, y).mean()
        loss = loss + (1 - p.alpha) * ce
        parts["ce"] = ce.detach()
    return loss, parts


class _ImagesSeen(nn.Module):
    """The training images seen so far, a buffer (in checkpoints): where the warm-up stands."""

    def __init__(self) -> None:
        super().__init__()
        self.count: torch.Tensor
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def add(self, n: int) -> None:
        self.count += n


@register_method(IADParams)
class IAD(Method[IADParams]):
    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.require_same_labels("teacher")
        self.extras["seen"] = _ImagesSeen()

    @property
    def seen(self) -> _ImagesSeen:
        mod = self.extras["seen"]
        assert isinstance(mod, _ImagesSeen)
        return mod

    @property
    def introspecting(self) -> bool:
        """Past the warm-up: ``warmup_fraction`` of the job's epochs, counted in training images."""
        warm = self.params.warmup_fraction * self.ctx.epochs * self.ctx.train_size
        return int(self.seen.count) >= warm

    def training_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> StepOutput:
        _, t_clean = self.teacher_outputs(x)
        x_adv = self.adversary(self.student, x, y)
        introspect = self.introspecting
        t_adv = self.teacher_outputs(x_adv)[1] if introspect else t_clean
        s_adv = self.student(x_adv)
        s_clean = self.student(x)  # always, as the authors' loss does: the clean batch also moves BN statistics
        loss, parts = iad_loss(t_clean, t_adv, s_clean, s_adv, y, self.params, introspect)
        self.seen.add(distributed.batch_total(len(y)))  # the global batch's images, in several processes
        return StepOutput(loss, parts, s_adv)
