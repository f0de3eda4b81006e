"""``trades``: TRADES (Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan, "Theoretically Principled Trade-off
between Robustness and Accuracy", ICML 2019, Eq. 5), no teacher:

    L = CE(S(x), y) + beta * KL(softmax(S(x)) || softmax(S(x'))),
    x' = argmax_{|x' - x|_inf <= eps} KL(softmax(S(x)) || softmax(S(x')))

As the authors' code (github.com/yaodongyu/TRADES, ``trades.py``, ``trades_loss``):

- the KL's first argument (the distribution the expectation runs over) is the clean prediction and the
  second the adversarial one: ``KLDivLoss(log_softmax(model(x_adv)), softmax(model(x_natural)))``;
- the inner maximisation runs the model in eval mode, sums the KL over the batch (each sample's own
  gradient) and takes signed steps projected onto the eps-ball; the model is back in train mode for the
  loss;
- the robust term is summed over classes and averaged over the batch (``(1/B) *
  KLDivLoss(size_average=False)``: ``batchmean``), the natural term is the batch-mean CE; gradients flow
  through both the clean and the adversarial prediction of the robust term (the clean one is not
  detached);
- beta = 6 (its CIFAR-10 setting; 1/lambda of the paper), and its optimiser ``SGD(lr=0.1, momentum=0.9,
  weight_decay=2e-4)`` gives this method's default weight decay (:class:`gacd_core.method_params.TRADESParams`).

Deviation kept on purpose: the attack's steps, radius and start are the job's shared attack configuration
(``hyperparameters.attack``: the authors use 10 steps of 0.007 at eps 0.031 from x + 0.001 * N(0, 1); the
comparison gives every method one attack configuration, starting from a uniform point of the eps-ball).
"""

from __future__ import annotations

import torch

from gacd_core.attacks import KLAttack, attack_mode, ce_loss, kl_div
from gacd_core.method_params import TRADESParams
from gacd_core.methods.base import Method, StepOutput, register_method


def trades_loss(
    clean_logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor, beta: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Zhang et al. 2019, Eq. 5: batch-mean CE(S(x), y) + beta * batchmean KL(S(x) || S(x')); the loss
    and its parts (``ce``, ``kl_adv``, detached)."""
    ce = ce_loss(clean_logits, y).mean()
    kl = kl_div(clean_logits, adv_logits, reduction="batchmean")
    return ce + beta * kl, {"ce": ce.detach(), "kl_adv": kl.detach()}


@register_method(TRADESParams)
class TRADES(Method[TRADESParams]):
    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        a = self.ctx.attack
        self.kl_adversary = KLAttack(a.eps, a.steps, a.step_size, a.random_start)

    def training_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> StepOutput:
        # the attack's target: the student's clean prediction in eval mode, as trades_loss computes it
        with attack_mode(self.student), torch.no_grad():
            target = self.student(x)
        x_adv = self.kl_adversary(self.student, x, target)
        clean_logits = self.student(x)
        adv_logits = self.student(x_adv)
        loss, parts = trades_loss(clean_logits, adv_logits, y, self.params.beta)
        return StepOutput(loss, parts, adv_logits)
