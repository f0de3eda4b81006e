"""Per-sample losses that attacks maximise and methods minimise.

Reduction convention: KL divergences are summed over classes and averaged over the batch
(``batchmean``), the mathematically correct KL per sample, everywhere except where a baseline follows its
authors' code. ARD's and RSLAD's official code average over batch x classes (``mean``, that is
``batchmean`` / C); their methods use that reduction by default (``kl_reduction`` in their parameters,
docs/method.md), so that their optimisation matches the published code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per sample."""
    return F.cross_entropy(logits.float(), y, reduction="none")


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float = 50.0) -> torch.Tensor:
    """Carlini & Wagner (2017) margin, per sample, as an attack objective to maximise.

    ``-max(z_y - max_{j != y} z_j + kappa, 0)``: it rises while the true logit leads, and stops
    rising once another class leads by ``kappa`` (the CW-inf evaluation of the robust-distillation
    literature uses kappa = 50, so in practice it keeps pushing the margin down).
    """
    logits = logits.float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return -torch.clamp(true - other + kappa, min=0)


def kl_div(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    temperature: float = 1.0,
    reduction: str = "batchmean",
) -> torch.Tensor:
    """KL(softmax(t / T) || softmax(s / T)), summed over classes.

    Args:
        reduction: ``batchmean`` (sum over classes, mean over the batch), ``mean`` (mean over batch x
            classes: ``batchmean`` / C, what ``nn.KLDivLoss()`` computes by default and what ARD's and
            RSLAD's code use) or ``none`` (per sample, summed over classes).
    """
    t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    s = F.log_softmax(student_logits.float() / temperature, dim=1)
    per_sample = (t.exp() * (t - s)).sum(1)
    if reduction == "none":
        return per_sample
    if reduction == "batchmean":
        return per_sample.mean()
    if reduction == "mean":
        return per_sample.mean() / teacher_logits.shape[1]
    raise ValueError(f"unknown reduction {reduction!r}")
