"""``gacd``: Guided Adversarial Contrastive Distillation (Bai, Chen, Zhao, Wen, Jiang & Kot, "Feature
Distillation With Guided Adversarial Contrastive Learning", arXiv 2009.09922), as GACD.md specifies it.

Per batch:

1. the frozen teacher embeds the clean input: anchor T_i = g_T(f_T(x_i)) (item 2), and gives the
   sample weights w_i from its reliability on x_i (item 3, :func:`reliability_weights`);
2. the guided attack finds x'_i in the eps-ball maximising -log h(T_i, S(x_i + d)), the student in eval
   mode (item 5); ``attack: ce`` swaps in PGD on the student's cross-entropy for ablations, and
   ``attack_ce_weight: g > 0`` maximises -log h(T_i, S(x_i + d)) + g CE(S(x_i + d), y_i) instead (a mix
   of the two objectives, our variant; GACD.md's attack is g = 0);
3. the loss (item 6) is

       L = lambda_nce * L_GACD(T, S(x')) + lambda_kd * tau_kd^2 * KL(T(x)/tau_kd || S(x')/tau_kd)
           + lambda_ce * CE(S(x'), y)

   with L_GACD the weighted contrastive loss of item 4 (:class:`ContrastiveObjective`);
4. the memory bank takes the anchors T_i (momentum 0.5, renormalised).

In a job of several processes, the teacher's side of the step is the whole global batch's
(:class:`~gacd_core.methods.contrastive.TeacherBatch`): weights normalised over it, in-batch candidates
and memory-bank updates taken from it, so that the step is that of one process on the global batch.

Across tasks (teacher and student label sets differ) only the feature terms apply: lambda_kd must be 0
and soft weights use the teacher's maximum probability.

With lambda_nce = 0 (an ablation) the heads g_T, g_S still learn the contrastive objective, through a
stop-gradient into the student, so that the guided attack runs through trained heads rather than their
random initialisation; the student then learns from the KD and CE terms only.
"""

from __future__ import annotations

import torch
from torch import nn

from gacd_core import distributed
from gacd_core.attacks import GuidedContrastiveAttack, ce_loss, kl_div
from gacd_core.method_params import GACDParams
from gacd_core.methods.base import Method, StepOutput, register_method
from gacd_core.methods.contrastive import ContrastiveObjective, TeacherBatch, reliability_weights
from gacd_core.models import ImageClassifier


@register_method(GACDParams)
class GACD(Method[GACDParams]):
    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        p = self.params  # across tasks, what it may ask was checked by Method (GACDParams.cross_task_errors)
        assert self.teacher is not None
        self.extras["contrast"] = ContrastiveObjective(
            self.teacher.num_features, self.student.num_features, self.ctx.train_labels, p
        )
        a = self.ctx.attack
        self.guided = GuidedContrastiveAttack(a.eps, a.steps, a.step_size, a.random_start)

    @property
    def contrast(self) -> ContrastiveObjective:
        mod = self.extras["contrast"]
        assert isinstance(mod, ContrastiveObjective)
        return mod

    def _student_embed(self, student: ImageClassifier, x: torch.Tensor) -> torch.Tensor:
        f_s = student.forward_head(student.forward_features(x), pre_logits=True)
        return self.contrast.student_embed(f_s)

    def adversarial_examples(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        t_emb: torch.Tensor,
        batch: TeacherBatch | None = None,
    ) -> torch.Tensor:
        """x' for this batch: the guided attack (default) or PGD on the student's CE. ``t_emb``: the
        anchors of these rows; ``batch``: the whole batch's teacher side (candidates, partition
        constant), default these rows."""
        if self.params.attack == "ce":
            return self.adversary(self.student, x, y)
        if batch is None:
            batch = TeacherBatch(t_emb, t_emb.new_empty(0), y, idx, slice(None))
        self.contrast.maybe_estimate_z(batch.emb.detach(), batch.y, batch.idx)
        # in one process the candidates are the anchors themselves; in several, the whole batch's
        whole = {"candidates": batch.detached()} if distributed.active() else {}

        def log_h(anchor: torch.Tensor, s_emb: torch.Tensor) -> torch.Tensor:
            # with the labels, so that in-batch mode masks the same candidates as the loss does
            return self.contrast.log_h_positive(anchor, s_emb, y, **whole)

        g = self.params.attack_ce_weight
        if g == 0:
            return self.guided(self.student, x, t_emb, self._student_embed, log_h, head=self.contrast)
        anchor = t_emb.detach()

        def mixed(student: nn.Module, xa: torch.Tensor) -> torch.Tensor:
            assert isinstance(student, ImageClassifier)  # perturb hands back the student it was given
            f_s, logits = student.forward_all(xa)  # one pass serves both objectives
            return -log_h(anchor, self.contrast.student_embed(f_s)) + g * ce_loss(logits, y)

        return self.guided.perturb(self.student, x, mixed, also_freeze=(self.contrast,))

    def training_step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> StepOutput:
        p = self.params
        f_t, t_logits = self.teacher_outputs(x)
        batch = self.contrast.teacher_batch(f_t, t_logits, y, idx)
        t_emb = batch.local
        w = reliability_weights(batch.logits, batch.y, p.reweight, p.beta, self.cross_task)[batch.rows]
        x_adv = self.adversarial_examples(x, y, idx, t_emb, batch)
        f_s, logits = self.student.forward_all(x_adv)
        # lambda_nce = 0: the contrastive term no longer teaches the student, but the heads still learn
        # from it through a stop-gradient, so that the guided attack (which runs through the heads)
        # is not an attack through random projections.
        heads_only = p.lambda_nce == 0
        s_emb = self.contrast.student_embed(f_s.detach() if heads_only else f_s)
        nce, parts = self.contrast.loss(t_emb, s_emb, y, idx, w, candidates=batch)
        loss = nce if heads_only else p.lambda_nce * nce
        if p.lambda_kd > 0:
            kd = p.kd_temperature**2 * kl_div(t_logits, logits, p.kd_temperature)
            loss = loss + p.lambda_kd * kd
            parts["kd_adv"] = kd.detach()
        if p.lambda_ce > 0:
            ce = ce_loss(logits, y).mean()
            loss = loss + p.lambda_ce * ce
            parts["ce_adv"] = ce.detach()
        parts["weight_min"] = w.min().detach()
        self.contrast.update_memory(batch.emb, batch.idx)
        return StepOutput(loss, parts, logits)
