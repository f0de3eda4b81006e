"""The contrastive objective shared by ``crd`` and ``gacd``: projection heads, critic, negatives.

Notation of GACD.md: f_T, f_S pooled penultimate features; g_T, g_S trainable linear heads to d
dimensions followed by L2 normalisation; tau the temperature; N negatives; M the training-set size.

Critic (Tian, Krishnan & Isola, "Contrastive Representation Distillation", ICLR 2020, Eq. 19)::

    h(t, s) = exp(g_T(t)·g_S(s)/tau) / (exp(g_T(t)·g_S(s)/tau) + N/M)

computed in log space as ``log h = logsigmoid(u)``, ``log(1 - h) = logsigmoid(-u)`` with
``u = g_T(t)·g_S(s)/tau - log Z - log(N/M)``. ``Z`` is a partition constant: with
``critic_normalization = "crd"`` it is estimated once, on the first batch, as M times the mean of
exp(score/tau) over negatives, which is what CRD's released code does; with ``"none"`` it is 1, the
formula read literally. The literal reading puts each of the N negative terms near log(1/(1 + N/M))
at initialisation, so the loss and its gradient grow with N (about 1.4 N at N/M = 0.33): with the
default N = 16384 the contrastive term would swamp every other term. See docs/method.md.

Loss (GACD.md, item 4; CRD's Eq. 20 with the sample weights of GACD)::

    L = -mean_i [ w_i log h(T_i, S'_i) + sum_{j=1..N} log(1 - h(T_j, S'_i)) ]

where T_i = g_T(f_T(x_i)) is the anchor, S'_i = g_S(f_S(x'_i)) the student on the (adversarial or
clean) input, and T_j teacher embeddings of N other samples drawn from a memory bank (momentum update
and renormalisation after every step, as in CRD), by default from classes other than y_i.

In-batch mode (InfoNCE, van den Oord et al. 2018) serves data without stable indices: the candidates
of sample i are the batch's teacher embeddings, ``L = mean_i w_i * -log softmax_j(S'_i·T_j/tau)[i]``,
with same-class candidates other than i masked out when ``other_class_negatives`` is set (in the loss
and in the guided attack alike). Here w_i weights sample i's whole term, not only its positive part as
in memory mode: the InfoNCE term's negative part, log sum_j exp(S'_i·T_j/tau), includes the positive
candidate j = i, so a down-weighted positive with a full-weight negative part would push S'_i away from
its own anchor T_i. Weighting the whole term lowers an unreliable sample's say, which is what the
reweighting is for.

In a job of several processes (:mod:`gacd_core.distributed`) every process trains on its slice of the
global batch, and what involves the whole batch is computed on the whole batch, as one process does:
the teacher's features, logits, labels and indices of every slice are gathered (:class:`TeacherBatch`;
they carry no gradient), so that the in-batch candidates are the global batch's, the weights are
normalised over it, the partition constant is estimated on it, and the memory bank takes every
slice's anchors in the batch's order, the same rows on every process. The loss of each slice is its mean;
DDP averages the gradients of equal slices into those of the global mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gacd_core import distributed
from gacd_core.method_params import CRDParams, GACDParams


@dataclass
class TeacherBatch:
    """The teacher's side of a step for the whole (global) batch, and the rows this process trains on.

    Attributes:
        emb: g_T(f_T(x)) of every sample of the batch (normalised; gradients reach g_T).
        logits: the teacher's logits (no gradient).
        y: the labels.
        idx: the samples' indices in the training set (memory-bank rows).
        rows: this process's rows (all of them in one process).
    """

    emb: torch.Tensor
    logits: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor
    rows: slice

    @property
    def local(self) -> torch.Tensor:
        """The anchors of this process's rows."""
        return self.emb[self.rows]

    @property
    def start(self) -> int:
        """The first row of this process's slice."""
        return self.rows.start or 0

    def detached(self) -> TeacherBatch:
        return TeacherBatch(self.emb.detach(), self.logits, self.y, self.idx, self.rows)


class ContrastiveObjective(nn.Module):
    """Heads, memory bank and critic.

    Args:
        teacher_dim, student_dim: sizes of f_T and f_S.
        train_labels: labels of the training split, indexed like the batches' ``idx``.
        params: the method's contrastive parameters (:class:`gacd_core.spec.CRDParams` or
            :class:`gacd_core.spec.GACDParams`).
    """

    memory: torch.Tensor
    labels: torch.Tensor
    class_order: torch.Tensor
    class_start: torch.Tensor
    class_count: torch.Tensor
    log_z: torch.Tensor

    def __init__(
        self, teacher_dim: int, student_dim: int, train_labels: torch.Tensor, params: CRDParams | GACDParams
    ) -> None:
        super().__init__()
        d = params.feat_dim
        self.tau = float(params.nce_temperature)
        self.mode = params.negatives
        self.other_class = bool(params.other_class_negatives)
        self.momentum = float(params.memory_momentum)
        self.normalization = params.critic_normalization
        self.embed_t = nn.Linear(teacher_dim, d)
        self.embed_s = nn.Linear(student_dim, d)

        labels = train_labels.detach().long().cpu()
        m = len(labels)
        n_classes = int(labels.max()) + 1 if m else 1
        counts = torch.bincount(labels, minlength=n_classes)
        self.train_size = m
        # N is capped by what can be drawn: the smallest other-class pool, or M - 1.
        pool = int((m - counts.max()).item()) if self.other_class else m - 1
        self.n_negatives = max(1, min(int(params.n_negatives), pool))
        self.register_buffer("labels", labels)
        self.register_buffer("class_order", torch.argsort(labels, stable=True))
        self.register_buffer("class_start", torch.cumsum(counts, 0) - counts)
        self.register_buffer("class_count", counts)
        if self.mode == "memory":
            bound = 1.0 / math.sqrt(d / 3)
            memory = torch.empty(m, d).uniform_(-bound, bound)
            self.register_buffer("memory", F.normalize(memory, dim=1))
        else:
            self.register_buffer("memory", torch.empty(0, d))
        # log Z of the critic; NaN until estimated on the first batch ("crd" with the bank), 0 where it
        # plays no part ("none"; in-batch mode, whose softmax needs no Z), so no state holds a NaN for ever.
        unset = self.normalization == "crd" and self.mode == "memory"
        self.register_buffer("log_z", torch.tensor(float("nan") if unset else 0.0))
        self._log_z: float | None = None  # host copy of log_z, so that steps need no device sync

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._log_z = None

    # --- embeddings ---------------------------------------------------------------------------
    def teacher_embed(self, f_t: torch.Tensor) -> torch.Tensor:
        """g_T(f_T(x)), L2-normalised."""
        return F.normalize(self.embed_t(f_t.float()), dim=1)

    def student_embed(self, f_s: torch.Tensor) -> torch.Tensor:
        """g_S(f_S(x)), L2-normalised."""
        return F.normalize(self.embed_s(f_s.float()), dim=1)

    def teacher_batch(
        self, f_t: torch.Tensor, t_logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor
    ) -> TeacherBatch:
        """The teacher's side of the step for the whole batch: this process's features, logits, labels
        and indices with every other process's (:func:`gacd_core.distributed.gather_rows`), embedded."""
        f_all, logits_all, y_all, idx_all = distributed.gather_rows(f_t, t_logits, y, idx)
        return TeacherBatch(self.teacher_embed(f_all), logits_all, y_all, idx_all, distributed.local_rows())

    # --- negatives ----------------------------------------------------------------------------
    def sample_negatives(self, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(B, N) memory indices: uniformly from other classes, or from all samples but i."""
        b, n = len(idx), self.n_negatives
        dev = self.memory.device
        y, idx = y.to(dev), idx.to(dev)
        u = distributed.draw_rows(b, lambda rows: torch.rand(rows, n, device=dev))
        if self.other_class:
            count = self.class_count[y][:, None]
            start = self.class_start[y][:, None]
            r = (u * (self.train_size - count)).long()
            pos = torch.where(r < start, r, r + count)  # skip the block of the sample's own class
            return self.class_order[pos.clamp_max(self.train_size - 1)]
        r = (u * (self.train_size - 1)).long()
        return r + (r >= idx[:, None]).long()  # skip the sample itself

    @torch.no_grad()
    def maybe_estimate_z(self, t_emb: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> None:
        """Estimate CRD's partition constant on the first batch: Z = M * mean exp(score / tau)."""
        if self.mode != "memory" or not math.isnan(self._host_log_z()):
            return
        scores = self.negative_scores(t_emb, self.sample_negatives(y, idx)) / self.tau
        log_mean = torch.logsumexp(scores.flatten(), 0) - math.log(scores.numel())
        self.log_z.fill_(math.log(self.train_size) + float(log_mean))
        self._log_z = None

    def _host_log_z(self) -> float:
        if self._log_z is None:
            self._log_z = float(self.log_z)
        return self._log_z

    def _offset(self) -> float:
        """log Z + log(N / M): subtracted from score/tau inside the sigmoid."""
        log_z = 0.0 if self.normalization == "none" else self._host_log_z()
        if math.isnan(log_z):
            raise RuntimeError("the critic's partition constant is not estimated yet (call maybe_estimate_z)")
        return log_z + math.log(self.n_negatives / self.train_size)

    # --- critic and loss ----------------------------------------------------------------------
    def log_h_positive(
        self,
        t_emb: torch.Tensor,
        s_emb: torch.Tensor,
        y: torch.Tensor | None = None,
        candidates: TeacherBatch | None = None,
    ) -> torch.Tensor:
        """Per-sample log-probability of the positive pairs (t_emb[i], s_emb[i]).

        In memory mode this is ``log h(T_i, S_i)``; in in-batch mode ``log softmax_j(S_i·T_j/tau)[i]``
        over the same candidates as :meth:`loss` (those of ``candidates``, the whole batch, when given;
        same-class candidates masked when ``other_class_negatives`` is set and ``y`` is given). The
        guided attack minimises it.
        """
        if self.mode == "in_batch":
            return -self._in_batch_terms(t_emb, s_emb, y, candidates)
        pos = (t_emb.float() * s_emb.float()).sum(1) / self.tau
        return F.logsigmoid(pos - self._offset())

    def _in_batch_terms(
        self, t_emb: torch.Tensor, s_emb: torch.Tensor, y: torch.Tensor | None, candidates: TeacherBatch | None
    ) -> torch.Tensor:
        """-log softmax_j(S_i·T_j/tau)[i] for this process's rows i over the batch's candidates j."""
        t_all, y_all, start = (t_emb, y, 0) if candidates is None else (candidates.emb, candidates.y, candidates.start)
        logits = s_emb.float() @ t_all.float().t() / self.tau  # (B, B): student i against teacher j
        target = torch.arange(start, start + len(logits), device=logits.device)
        if self.other_class and y is not None and y_all is not None:
            own = target[:, None] == torch.arange(len(t_all), device=logits.device)[None, :]
            same = (y[:, None] == y_all[None, :]) & ~own
            logits = logits.masked_fill(same, float("-inf"))
        return F.cross_entropy(logits, target, reduction="none")

    def loss(
        self,
        t_emb: torch.Tensor,
        s_emb: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        weights: torch.Tensor | None = None,
        candidates: TeacherBatch | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted contrastive loss of these rows and its parts (positive and negative terms);
        ``candidates``: the whole batch's teacher side (in-batch candidates, the first batch's estimate
        of the partition constant), default these rows."""
        w = torch.ones(len(y), device=s_emb.device) if weights is None else weights.float()
        if self.mode == "in_batch":
            per = self._in_batch_terms(t_emb, s_emb, y, candidates)
            loss = (w * per).mean()
            return loss, {"nce": loss.detach()}
        if candidates is None:
            self.maybe_estimate_z(t_emb.detach(), y, idx)
        else:
            self.maybe_estimate_z(candidates.emb.detach(), candidates.y, candidates.idx)
        offset = self._offset()
        pos_u = (t_emb.float() * s_emb.float()).sum(1) / self.tau - offset
        neg_u = self.negative_scores(s_emb, self.sample_negatives(y, idx)) / self.tau - offset
        pos_term = -(w * F.logsigmoid(pos_u)).mean()
        neg_term = -F.logsigmoid(-neg_u).sum(1).mean()
        return pos_term + neg_term, {"nce_pos": pos_term.detach(), "nce_neg": neg_term.detach()}

    def negative_scores(self, s_emb: torch.Tensor, neg_idx: torch.Tensor) -> torch.Tensor:
        """(B, N) dot products S'_i · memory[neg_idx[i, n]].

        Two exact ways, chosen by cost. Gathering the (B, N, d) negatives moves B*N*d floats through
        memory (268 MB per step at B = 128, N = 4096, d = 128) and again in the backward pass. Scoring
        the whole bank, S' @ memory^T, is a (B, d) x (d, M) product that BLAS runs at full speed, after
        which only B*N scalars are gathered: 14x faster per step on one EPYC core at M = 20,000,
        N = 4,096, 25x at M = 45,000, N = 16,384, and even at M = 49 N (benchmarks/negatives.py,
        benchmarks/RESULTS.md). The bank is scored whole while M <= 32 N, else gathered.
        """
        s = s_emb.float()
        if self.train_size <= 32 * self.n_negatives:
            # A snapshot of the bank: the product keeps it for the backward pass, and update_memory
            # changes the bank in place before that pass runs.
            bank = self.memory.clone() if s.requires_grad else self.memory
            return (s @ bank.t()).gather(1, neg_idx.to(bank.device))
        neg = self.memory[neg_idx]  # (B, N, d), a copy: no autograd link
        return torch.einsum("bnd,bd->bn", neg, s)

    @torch.no_grad()
    def update_memory(self, t_emb: torch.Tensor, idx: torch.Tensor) -> None:
        """memory[i] <- normalise(momentum * memory[i] + (1 - momentum) * T_i) (CRD's update)."""
        if self.mode != "memory":
            return
        idx = idx.to(self.memory.device)
        mixed = self.memory[idx] * self.momentum + t_emb.detach().float() * (1 - self.momentum)
        self.memory[idx] = F.normalize(mixed, dim=1)


def reliability_weights(
    t_logits: torch.Tensor, y: torch.Tensor, mode: str, beta: float = 1.0, cross_task: bool = False
) -> torch.Tensor:
    """Sample weights w_i from the teacher's reliability on x_i (GACD.md, item 3), mean 1 over the batch.

    ``none``: 1; ``hard``: 1 when the teacher classifies x_i correctly, else 0; ``soft``:
    p_T(y_i | x_i) ** beta, or the teacher's max probability when its labels are not the student's
    (cross-task). A batch the teacher gets entirely wrong under ``hard`` gets all-zero weights.
    """
    n = len(t_logits)
    if mode == "none":
        return torch.ones(n, device=t_logits.device)
    probs = F.softmax(t_logits.detach().float(), dim=1)
    if mode == "hard":
        if cross_task:
            raise ValueError("hard reweighting needs the teacher's labels")
        w = (probs.argmax(1) == y).float()
    elif mode == "soft":
        p = probs.amax(1) if cross_task else probs.gather(1, y[:, None]).squeeze(1)
        w = p.pow(beta)
    else:
        raise ValueError(f"unknown reweighting {mode!r}")
    mean = w.mean()
    return w / mean if float(mean) > 0 else w
