"""One job in several processes (``torch.distributed``, started by ``torchrun``): everything the rest of
the code needs to know about it, in one place.

``torchrun`` (``python -m torch.distributed.run``) starts N copies of a job's process with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous in their environment; :func:`job_group` makes the process
group from them: NCCL on CUDA, each process on ``cuda:LOCAL_RANK``; gloo on the CPU. With one process
nothing here acts: every helper returns its input or runs the code it wraps as it is, so a one-process
job computes exactly what it computed before this module existed.

What several processes keep, and how (the trainer, the methods and the evaluation rely on it):

- **One global batch.** The job's ``batch_size`` is the global batch; each process takes a contiguous
  slice of it, in rank order (:func:`rows`), so that the slices concatenated are the batch of one process.
- **The same random numbers.** Per-sample draws (PGD's random start, the memory bank's negatives) go
  through :func:`draw_rows`: every process draws the numbers of the *whole* batch from the same generator
  and keeps its rows. Each sample gets the number it gets in one process, and every process's random
  streams stay identical, so that rank 0's checkpoint holds the random state of all of them.
- **Batch-level statistics over the global batch.** A method that normalises over the batch or contrasts
  a sample with the others takes the rows of every process with :func:`gather_rows` (values that carry
  no gradient: the frozen teacher's outputs, labels, indices) and computes the statistic on the whole
  batch, as one process does.
- **Gradients averaged** by ``DistributedDataParallel`` (:func:`wrap_step`): each process's loss is the
  mean over its slice, so the average over equal slices is the mean over the global batch.
- **Counts summed, never rates averaged** (:func:`sum_across`), and stop requests agreed by every process
  at the same point (:func:`agree`), so that no process is left waiting in a collective.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from gacd_core.errors import SpecError

# A collective waits this long for the slowest process (an uneven AutoAttack shard, rank 0 writing a
# checkpoint or exporting the student) before it fails the job.
TIMEOUT = dt.timedelta(minutes=int(os.environ.get("GACD_DIST_TIMEOUT_MINUTES", "60")))
PLAIN_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class Group:
    """This process's place in the job: its rank among ``world`` processes, its backend and device."""

    rank: int
    world: int
    backend: str
    device: torch.device


_group: Group | None = None  # while a job of several processes runs
_rows: tuple[int, slice] | None = None  # (size of the batch under way, this process's rows of it)


def world_size() -> int:
    """The processes of the job under way (1 outside a process group)."""
    return 1 if _group is None else _group.world


def rank() -> int:
    return 0 if _group is None else _group.rank


def is_main() -> bool:
    """Whether this process writes the job's files and reports its progress (rank 0)."""
    return rank() == 0


def active() -> bool:
    """Whether this job runs in several processes."""
    return _group is not None


def launched_world() -> int:
    """``WORLD_SIZE`` as torchrun set it (1 when this process was not started by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def job_group(world: int, *, gpus: bool) -> Iterator[torch.device | None]:
    """The process group of a job of ``world`` processes, made from torchrun's environment, for the
    time of the block; yields this process's device (None for a job of one process: nothing is made).

    A group already made by the caller (a test, a notebook under torchrun) is used and left up.

    Raises:
        SpecError: (``resources``) the job asks for another number of processes than it runs in, or for
            GPUs that this machine does not have.
    """
    global _group
    launched = launched_world()
    if world == 1 and launched == 1:
        yield None
        return
    if launched != world:
        how = f"gacd train/distill --{'gpus' if gpus else 'processes'} {world}"
        asked = f"{world} process{'es' if world > 1 else ''}"
        raise SpecError([("resources", f"the job asks for {asked} but runs in {launched}: start it with {how}")])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(local, gpus)
    made = not dist.is_initialized()
    if made:
        kind = "nccl" if gpus else "gloo"
        dist.init_process_group(kind, timeout=TIMEOUT, device_id=device if gpus else None)
    _group = Group(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()), device)
    try:
        yield device
    finally:
        _group = None
        if made:
            gc.collect()  # a DistributedDataParallel left in a reference cycle goes before its group
            dist.destroy_process_group()


def _device(local_rank: int, gpus: bool) -> torch.device:
    if not gpus:
        return torch.device("cpu")
    if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise SpecError([("resources.gpus", f"process {local_rank} needs a CUDA device; this machine has {have}")])
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


# --------------------------------------------------------------------------------------------------
# Rows of a batch
# --------------------------------------------------------------------------------------------------
def split(total: int, world: int) -> list[int]:
    """How many of ``total`` rows each of ``world`` processes takes: equal parts, the first ones one more
    when ``total`` does not divide (only the evaluation's last batch; training batches divide)."""
    base, extra = divmod(total, world)
    return [base + (r < extra) for r in range(world)]


def rows(total: int, of_rank: int | None = None, world: int | None = None) -> slice:
    """The rows of a batch of ``total`` that process ``of_rank`` (default: this one) takes."""
    r, w = (rank() if of_rank is None else of_rank), (world_size() if world is None else world)
    sizes = split(total, w)
    start = sum(sizes[:r])
    return slice(start, start + sizes[r])


@contextlib.contextmanager
def batch_rows(total: int) -> Iterator[slice]:
    """Compute on this process's rows of a batch of ``total`` that every process takes part in; yields
    the rows. Inside, :func:`draw_rows` draws for the whole batch and :func:`gather_rows` knows the
    slices. With one process: all rows, and nothing changes."""
    global _rows
    sl = rows(total)
    if _group is None:
        yield sl
        return
    previous, _rows = _rows, (total, sl)
    try:
        yield sl
    finally:
        _rows = previous


def local_rows() -> slice:
    """This process's rows of the batch under way (all of them with one process)."""
    return slice(None) if _rows is None else _rows[1]


def batch_total(n: int) -> int:
    """The size of the whole batch whose ``n`` rows this process computes (``n`` with one process)."""
    return n if _rows is None else _rows[0]


def draw_rows(n: int, draw: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """``draw(n)``: per-sample random numbers for ``n`` rows. Inside :func:`batch_rows`, when the ``n``
    rows are this process's slice, the numbers of the whole batch are drawn and the slice is kept: the
    numbers one process draws for these samples, and the same random streams on every process."""
    if _rows is not None:
        total, sl = _rows
        if n == sl.stop - sl.start and n != total:
            return draw(total)[sl]
    return draw(n)


def gather_rows(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor's rows from every process, in rank order: the whole batch (inside
    :func:`batch_rows`). For values that carry no gradient (teacher outputs, labels, indices): the
    result is detached. With one process: the tensors themselves."""
    if _group is None:
        return tensors
    if _rows is None:
        raise RuntimeError("gather_rows needs the batch's rows: call it inside distributed.batch_rows")
    sizes = split(_rows[0], _group.world)
    widths = [math.prod(t.shape[1:]) for t in tensors]
    flat = torch.cat([t.detach().reshape(len(t), -1).to(torch.float64) for t in tensors], 1)
    padded = flat.new_zeros(max(sizes), flat.shape[1])
    padded[: len(flat)] = flat
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    whole = torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])
    out, col = [], 0
    for t, width in zip(tensors, widths, strict=True):
        out.append(whole[:, col : col + width].reshape(len(whole), *t.shape[1:]).to(t.dtype))
        col += width
    return tuple(out)


# --------------------------------------------------------------------------------------------------
# Collectives the job's code calls at points every process reaches
# --------------------------------------------------------------------------------------------------
def sum_across(*tensors: torch.Tensor) -> None:
    """Sum each tensor over the processes, in place (counts; rows that one process filled and the others
    left at zero). Nothing with one process."""
    if _group is None:
        return
    for t in tensors:
        buf = t.to(_group.device, dtype=torch.float64 if t.dtype == torch.bool else t.dtype)
        dist.all_reduce(buf)
        t.copy_(buf.to(t.dtype) if t.dtype != torch.bool else buf > 0)


def agree(*flags: bool) -> tuple[bool, ...]:
    """Each flag true on any process, as every process sees it (one ``all_reduce(MAX)``): the way processes
    decide together to stop or pause at the same step."""
    if _group is None:
        return tuple(flags)
    t = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=_group.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in t.tolist())


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (a choice only rank 0 may make, as the fast-path probe's)."""
    if _group is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every process gets here (after rank 0 wrote a file that the others may read next)."""
    if _group is not None:
        dist.barrier(device_ids=[_group.device.index] if _group.device.type == "cuda" else None)


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` with one process)."""
    if _group is None:
        return [obj]
    out: list[Any] = [None] * _group.world
    dist.all_gather_object(out, obj)
    return out


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------
class _Step(nn.Module):
    """The training step as one module call, for ``DistributedDataParallel``: its forward is the method's
    ``training_step``. It holds the student and the extras (projection heads, memory bank), whose
    gradients DDP averages; the method, and with it the frozen teacher, is held outside the module tree,
    so the teacher is never wrapped, never broadcast, never reduced."""

    def __init__(self, method: Any) -> None:
        super().__init__()
        self.student = method.student
        self.extras = method.extras
        self._method = [method]  # a list: not a submodule

    def forward(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[Any, ...]:
        out = self._method[0].training_step(x, y, idx)
        return out.loss, out.logits, out.parts


def wrap_step(method: Any) -> nn.Module:
    """``DistributedDataParallel`` over the method's training step (:class:`_Step`).

    The inner attack runs inside that one forward, on the plain student, with its parameters frozen
    (:func:`gacd_core.attacks.attack_mode`): its passes take gradients with respect to the input only,
    no parameter gradient hook fires, and nothing is all-reduced until the loss's backward, which
    averages the gradients of the student and the extras once per step. ``no_sync`` is therefore not
    needed, and wrapping the student alone would not do: DDP reduces only what goes through its own
    forward, and the attack must not. Buffers are synchronised from rank 0 when DDP is made, not at
    each forward (``forward_sync_buffers`` off): every process keeps its batch-norm statistics, averaged
    after each step (:func:`average_batchnorm_stats`), so that the inner attack of the next step, which
    reads them, sees the same statistics on every process. ``find_unused_parameters`` is on: some parameter
    choices leave a parameter out of the loss (a classifier no term reads), and those keep no gradient,
    as in one process.
    """
    assert _group is not None
    from torch.nn.parallel import DistributedDataParallel

    ids = [_group.device.index] if _group.device.type == "cuda" else None
    return DistributedDataParallel(
        _Step(method), device_ids=ids, forward_sync_buffers=False, find_unused_parameters=True
    )


def _batchnorm_stats(module: nn.Module) -> list[torch.Tensor]:
    return [
        buf
        for m in module.modules()
        if isinstance(m, _BatchNorm) and not isinstance(m, nn.SyncBatchNorm)
        for buf in (m.running_mean, m.running_var)
        if buf is not None
    ]


@torch.no_grad()
def average_batchnorm_stats(module: nn.Module) -> None:
    """Average the running batch-norm statistics over the processes (after every step). Each process
    normalises its slice with the slice's own statistics (batch norm per process, as DDP does); the
    running means averaged over equal slices are the global batch's, the running variances the mean of
    the slices' (the spread between slices left out). Every process then holds the same statistics,
    which the checkpoint of rank 0 saves for all. Nothing with one process, or with SyncBatchNorm."""
    stats = _batchnorm_stats(module)
    if _group is None or not stats:
        return
    flat = torch.cat([s.reshape(-1).double() for s in stats])
    dist.all_reduce(flat)
    flat /= _group.world
    at = 0
    for s in stats:
        s.copy_(flat[at : at + s.numel()].view_as(s))
        at += s.numel()


@contextlib.contextmanager
def sync_batchnorm(module: nn.Module, enabled: bool) -> Iterator[bool]:
    """With ``enabled`` and several CUDA processes: the plain BatchNorm layers of ``module`` swapped for
    ``SyncBatchNorm`` (statistics of the global batch in training mode) that share their parameters and
    running statistics, and put back on exit. Yields whether the swap happened.

    Raises:
        SpecError: (``resources.sync_batchnorm``) on the CPU (SyncBatchNorm runs on NCCL only), or the
            model has batch-norm layers of another kind (a library's fused norm-and-activation).
    """
    if not enabled or _group is None:
        yield False
        return
    field = "resources.sync_batchnorm"
    if _group.device.type != "cuda":
        raise SpecError([(field, "SyncBatchNorm needs CUDA processes (NCCL); on the CPU batch norm runs per process")])
    swaps = []
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, _BatchNorm) and type(child) in PLAIN_BATCHNORM:
                swaps.append((parent, name, child, _synced(child)))
            elif isinstance(child, _BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
                raise SpecError([(field, f"the student's {type(child).__name__} layers are not plain BatchNorm")])
    for parent, name, _, sync in swaps:
        setattr(parent, name, sync)
    try:
        yield True
    finally:
        for parent, name, child, _ in swaps:
            setattr(parent, name, child)


def _synced(bn: _BatchNorm) -> nn.SyncBatchNorm:
    """A SyncBatchNorm holding ``bn``'s own parameters and statistics (the same tensors)."""
    sync = nn.SyncBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    sync.weight, sync.bias = bn.weight, bn.bias
    sync.running_mean, sync.running_var = bn.running_mean, bn.running_var
    sync.num_batches_tracked = bn.num_batches_tracked
    sync.train(bn.training)
    return sync


__all__ = [
    "Group",
    "active",
    "agree",
    "average_batchnorm_stats",
    "barrier",
    "batch_rows",
    "batch_total",
    "broadcast",
    "draw_rows",
    "gather_objects",
    "gather_rows",
    "is_main",
    "job_group",
    "launched_world",
    "local_rows",
    "rank",
    "rows",
    "split",
    "sum_across",
    "sync_batchnorm",
    "world_size",
]
