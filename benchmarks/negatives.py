"""The memory bank's negative scores, two exact ways, timed side by side (forward and backward).

    python benchmarks/negatives.py                       # the cpu comparison's sizes, one thread
    python benchmarks/negatives.py --bank 45000 --negatives 16384 --threads 2

``gather``: memory[neg_idx] as a (B, N, d) tensor, then a batched dot product with the student's
embeddings (how CRD's released code scores its negatives). ``whole bank``: S @ memory^T, a (B, M)
matrix product, then a gather of the B x N scores needed
(:meth:`gacd_core.methods.contrastive.ContrastiveObjective.negative_scores`). The two take turns,
``--rounds`` times each, and the script prints the median seconds per step of each and their ratio,
with the largest difference between their results as a check that they compute the same thing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--negatives", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--bank", type=int, default=20000, help="M, the training-set size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, n, d, m = args.batch, args.negatives, args.dim, args.bank
    memory = F.normalize(torch.randn(m, d), dim=1)
    neg_idx = torch.randint(0, m, (b, n))

    def gather(s: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bnd,bd->bn", memory[neg_idx], s)

    def whole_bank(s: torch.Tensor) -> torch.Tensor:
        return (s @ memory.clone().t()).gather(1, neg_idx)

    def step(fn) -> tuple[float, torch.Tensor, torch.Tensor]:
        s = F.normalize(torch.randn(b, d, generator=torch.Generator().manual_seed(1)), dim=1).requires_grad_()
        t0 = time.perf_counter()
        scores = fn(s)
        F.logsigmoid(-scores).sum(1).mean().backward()
        return time.perf_counter() - t0, scores.detach(), s.grad

    times: dict[str, list[float]] = {"gather": [], "whole bank": []}
    step(gather), step(whole_bank)  # warm-up
    for _ in range(args.rounds):
        for name, fn in (("gather", gather), ("whole bank", whole_bank)):
            times[name].append(step(fn)[0])
    _, sa, ga = step(gather)
    _, sb, gb = step(whole_bank)
    tg, tw = statistics.median(times["gather"]), statistics.median(times["whole bank"])
    print(f"B={b} N={n} d={d} M={m}, {args.threads} thread(s), median of {args.rounds} forward+backward steps")
    print(f"gather: {tg * 1000:.1f} ms; whole bank: {tw * 1000:.1f} ms; gather / whole bank = {tg / tw:.1f}x")
    print(
        f"largest difference: scores {float((sa - sb).abs().max()):.2e}, gradients {float((ga - gb).abs().max()):.2e}"
    )


if __name__ == "__main__":
    main()
