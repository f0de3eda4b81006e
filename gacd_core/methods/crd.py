"""``crd``: contrastive representation distillation on clean data (Tian et al., ICLR 2020), the
non-robust feature baseline: lambda_nce * L_NCE(T(x), S(x)) + lambda_ce * CE(S(x), y)
(+ lambda_kd * tau^2 * KL, off by default, as in CRD's main results with beta = 0.8).

Our ``crd`` uses the same critic, memory bank and loss as ``gacd`` (teacher anchor, teacher negatives;
:mod:`gacd_core.methods.contrastive`) with clean inputs and no reweighting, so that comparing the two
isolates what GACD adds. CRD's code also adds the mirrored term, in which the teacher's embedding is
contrasted against student embeddings (the student's embedding of x_i as positive, the student memory
bank as negatives); we leave it out, as GACD.md defines the objective with the teacher's T_i as the only
anchor and teacher embeddings as the only candidates.
"""

from __future__ import annotations

import torch

from gacd_core.attacks import ce_loss, kl_div
from gacd_core.method_params import CRDParams
from gacd_core.methods.base import Method, StepOutput, register_method
from gacd_core.methods.contrastive import ContrastiveObjective


@register_method(CRDParams)
class CRD(Method[CRDParams]):
    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)  # across tasks, lambda_kd is 0 (CRDParams.cross_task_errors)
        assert self.teacher is not None
        self.extras["contrast"] = ContrastiveObjective(
            self.teacher.num_features, self.student.num_features, self.ctx.train_labels, self.params
        )

    @property
    def contrast(self) -> ContrastiveObjective:
        mod = self.extras["contrast"]
        assert isinstance(mod, ContrastiveObjective)
        return mod

    def training_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> StepOutput:
        p = self.params
        f_t, t_logits = self.teacher_outputs(x)
        batch = self.contrast.teacher_batch(f_t, t_logits, y, idx)  # the whole batch's, in several processes
        f_s, logits = self.student.forward_all(x)
        nce, parts = self.contrast.loss(batch.local, self.contrast.student_embed(f_s), y, idx, candidates=batch)
        ce = ce_loss(logits, y).mean()
        loss = p.lambda_nce * nce + p.lambda_ce * ce
        parts = {**parts, "ce": ce.detach()}
        if p.lambda_kd > 0:
            kd = p.kd_temperature**2 * kl_div(t_logits, logits, p.kd_temperature)
            loss = loss + p.lambda_kd * kd
            parts["kd"] = kd.detach()
        self.contrast.update_memory(batch.emb, batch.idx)
        return StepOutput(loss, parts, logits)
