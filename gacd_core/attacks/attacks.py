"""The attacks, each a thin configuration of the one PGD loop in :mod:`gacd_core.attacks.core`, and the
evaluation protocol's attacks: a factory of eps per name of :data:`gacd_core.catalog.EVAL_ATTACKS`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gacd_core import catalog
from gacd_core.attacks.core import LossFn, PGDConfig, pgd
from gacd_core.attacks.losses import ce_loss, cw_margin_loss, kl_div
from gacd_core.registry import Registry


class PGD:
    """L-inf PGD with random start on a per-sample loss of (logits, labels); cross-entropy by default
    (Madry et al. 2018)."""

    def __init__(
        self,
        eps: float,
        steps: int,
        step_size: float,
        random_start: bool = True,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = ce_loss,
    ) -> None:
        self.cfg = PGDConfig(eps, steps, step_size, random_start)
        self.loss = loss

    def perturb(
        self, model: nn.Module, x: torch.Tensor, loss_fn: LossFn, also_freeze: tuple[nn.Module | None, ...] = ()
    ) -> torch.Tensor:
        """Maximise any per-sample ``loss_fn(model, x_adv)``."""
        return pgd(model, x, loss_fn, self.cfg, also_freeze)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.perturb(model, x, lambda m, xa: self.loss(m(xa), y))

    def params(self) -> dict[str, Any]:
        return {"steps": self.cfg.steps, "step_size": self.cfg.step_size, "random_start": self.cfg.random_start}


class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size eps, no random start."""

    def __init__(self, eps: float) -> None:
        super().__init__(eps, steps=1, step_size=eps, random_start=False)


class CW(PGD):
    """CW-inf: PGD on the Carlini-Wagner margin loss with confidence ``kappa``."""

    def __init__(
        self, eps: float, steps: int = 30, step_size: float = 2 / 255, kappa: float = 50.0, random_start: bool = True
    ) -> None:
        super().__init__(eps, steps, step_size, random_start, loss=lambda z, y: cw_margin_loss(z, y, kappa))
        self.kappa = kappa

    def params(self) -> dict[str, Any]:
        return {**super().params(), "kappa": self.kappa}


class KLAttack(PGD):
    """PGD maximising KL(softmax(T(x)) || softmax(S(x'))), RSLAD's inner attack (Zi et al. 2021, Eq. 6)."""

    def __call__(self, model: nn.Module, x: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        t = teacher_logits.detach()
        return self.perturb(model, x, lambda m, xa: kl_div(t, m(xa), reduction="none"))


class GuidedContrastiveAttack(PGD):
    """GACD's guided adversarial examples (GACD.md, item 5).

    PGD maximising the student's contrastive loss against the teacher anchor, ``-log h(T_i, S(x_i + d))``:
    the teacher's features, not labels, guide the attack. ``log_h(anchor, student_embedding)`` is the
    critic's per-sample log-probability of the positive pair; ``embed(student, x)`` is the student's
    projected, normalised embedding.
    """

    def __call__(  # type: ignore[override]
        self,
        student: nn.Module,
        x: torch.Tensor,
        anchor: torch.Tensor,
        embed: Callable[[Any, torch.Tensor], torch.Tensor],
        log_h: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        head: nn.Module | None = None,
    ) -> torch.Tensor:
        a = anchor.detach()
        return self.perturb(student, x, lambda m, xa: -log_h(a, embed(m, xa)), also_freeze=(head,))


ProtocolAttack = Callable[[float], PGD]
PROTOCOL_ATTACKS: Registry[ProtocolAttack] = Registry("evaluation attack", catalog.EVAL_ATTACKS)
register_protocol_attack = PROTOCOL_ATTACKS.register


# The evaluation protocol (GACD.md), with step sizes scaled to eps: at eps = 8/255 the steps are the
# protocol's 2/255.
@register_protocol_attack()
def fgsm(eps: float) -> PGD:
    """One step of eps."""
    return FGSM(eps)


@register_protocol_attack()
def pgd20(eps: float) -> PGD:
    """20 steps of eps/4 with random start."""
    return PGD(eps, steps=20, step_size=eps / 4, random_start=True)


@register_protocol_attack()
def cw(eps: float) -> PGD:
    """30 steps of eps/4 on the margin loss with kappa = 50."""
    return CW(eps, steps=30, step_size=eps / 4, kappa=50.0)


def protocol_attack(name: str, eps: float) -> PGD:
    """The protocol's attack ``name`` (a key of :data:`gacd_core.catalog.EVAL_ATTACKS`) at radius ``eps``.

    Raises:
        UnknownNameError: no protocol attack has that name (a ``KeyError``).
    """
    return PROTOCOL_ATTACKS.get(name)(eps)
