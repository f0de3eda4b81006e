"""PGD as steps (after MadryLab/robustness): random start, signed step, projection.

One loop with a swappable per-sample loss serves FGSM, PGD on cross-entropy, CW-inf, RSLAD's KL
attack and GACD's guided contrastive attack. While it runs, the attacked modules are in eval mode and
their parameters do not require gradients (so no weight gradients are computed or left behind);
both are restored afterwards, exactly as they were, module by module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from gacd_core import distributed

# loss(model, x_adv) -> per-sample loss to maximise
LossFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@contextmanager
def attack_mode(*modules: nn.Module | None) -> Iterator[None]:
    """Eval mode and frozen parameters inside; every module's mode and flags restored after."""
    mods = [m for m in modules if m is not None]
    training = [(sub, sub.training) for m in mods for sub in m.modules()]
    flags = [(p, p.requires_grad) for m in mods for p in m.parameters()]
    try:
        for m in mods:
            m.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for sub, was in training:
            sub.training = was
        for p, was in flags:
            p.requires_grad_(was)


def random_perturb(x: torch.Tensor, eps: float) -> torch.Tensor:
    """A uniform random point of the L-inf ball around ``x``, clipped to [0, 1]. In a job of several
    processes, ``x`` one process's rows of a batch, the noise is that of the whole batch cut to them
    (:func:`gacd_core.distributed.draw_rows`)."""
    if not distributed.active():
        return (x + torch.empty_like(x).uniform_(-eps, eps)).clamp_(0, 1)
    channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format  # as empty_like(x) makes it

    def draw(n: int) -> torch.Tensor:
        return torch.empty((n, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=fmt).uniform_(-eps, eps)

    return (x + distributed.draw_rows(len(x), draw)).clamp_(0, 1)


def step(x_adv: torch.Tensor, grad: torch.Tensor, step_size: float) -> torch.Tensor:
    """One steepest-ascent step in L-inf: move every pixel by ``step_size`` along the gradient's sign."""
    return x_adv + step_size * grad.sign()


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Back into the L-inf ball of radius ``eps`` around ``x`` and into the image box [0, 1]."""
    return torch.max(torch.min(x_adv, x + eps), x - eps).clamp_(0, 1)


@dataclass(frozen=True)
class PGDConfig:
    """L-inf PGD (Madry et al. 2018)."""

    eps: float
    steps: int
    step_size: float
    random_start: bool = True

    def __post_init__(self) -> None:
        if self.eps < 0 or self.steps < 0 or self.step_size < 0:
            raise ValueError("eps, steps and step_size must be >= 0")


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    loss_fn: LossFn,
    cfg: PGDConfig,
    also_freeze: tuple[nn.Module | None, ...] = (),
) -> torch.Tensor:
    """Maximise ``loss_fn(model, x_adv).sum()`` over the eps-ball around ``x``.

    Per-sample losses are summed so that each sample's gradient is its own loss's gradient (the
    model is in eval mode, so samples do not interact through batch statistics).

    Args:
        also_freeze: other modules the loss runs through (projection heads) to freeze alike.

    Returns:
        The adversarial batch, detached, with ``|x_adv - x|_inf <= eps`` and values in [0, 1].
    """
    x = x.detach()
    if cfg.eps == 0 or cfg.steps == 0:
        return x.clone()
    with attack_mode(model, *also_freeze):
        # The box [max(x - eps, 0), min(x + eps, 1)] once per batch; one buffer updated in place for
        # every step (the same numbers as ``project(step(...))``, without a new tensor per step).
        lo, hi = (x - cfg.eps).clamp_(0, 1), (x + cfg.eps).clamp_(0, 1)
        x_adv = random_perturb(x, cfg.eps) if cfg.random_start else x.clone()
        x_adv.requires_grad_(True)
        for _ in range(cfg.steps):
            loss = loss_fn(model, x_adv).sum()
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                x_adv.add_(grad.sign_(), alpha=cfg.step_size)
                torch.maximum(x_adv, lo, out=x_adv)
                torch.minimum(x_adv, hi, out=x_adv)
    return x_adv.detach()
