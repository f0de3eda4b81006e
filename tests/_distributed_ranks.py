"""What tests/test_distributed.py checks inside a job of several processes: run by ``torchrun`` once per
test module (``python -m torch.distributed.run --nproc_per_node=2 tests/_distributed_ranks.py OUT``); each
process writes ``OUT/rank<r>.pt`` with what it computed. The test process computes the one-process
references with the same builders (importing this file) and compares.

The checks: one training step of ``at`` and of ``gacd`` (in-batch and memory-bank negatives) on this
process's slice of a fixed global batch, the student's batch norm in eval mode (its statistics are then
not the slice's: the step must equal one process's on the whole batch); two epochs of ``gacd`` with a
memory bank in train mode, straight, paused mid-epoch (asked by rank 1 only) and resumed, and stopped
(asked by rank 1 only); the protocol's evaluation sharded over the processes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from gacd_core import distributed
from gacd_core import evaluation as E
from gacd_core.data import ImageSet
from gacd_core.errors import TrainingPaused, TrainingStopped
from gacd_core.methods import METHODS, MethodContext
from gacd_core.models import create_model
from gacd_core.spec import EvaluationSpec, parse_spec
from gacd_core.trainer import CHECKPOINT_NAME, Trainer

BATCH = 8
STEP_CASES: dict[str, dict[str, Any]] = {
    "at": {},
    "gacd": {"n_negatives": 16},
    "gacd-memory": {"n_negatives": 16, "negatives": "memory"},
    # the feature terms alone: the student's classifier is in no term (no gradient, no weight decay)
    "gacd-features": {"n_negatives": 16, "lambda_kd": 0.0, "lambda_ce": 0.0},
}


def data(n: int = 48, side: int = 16, seed: int = 123) -> ImageSet:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=gen)
    return ImageSet(images, torch.arange(n) % 4)


def trainer(case: str, epochs: int = 1, ckpt: Path | None = None, lr: float = 0.05, **kw: Any) -> Trainer:
    """A trainer of ``case`` (a key of :data:`STEP_CASES`) on :func:`data`, the same on every process."""
    method = case.split("-")[0]
    doc: dict[str, Any] = {
        "method": method,
        "hyperparameters": {
            "epochs": epochs,
            "batch_size": BATCH,
            "lr": lr,
            "attack": {"steps": 2},
            "method_params": dict(STEP_CASES[case]),
        },
        "device": "cpu",
        "precision": "fp32",
    }
    if method != "at":
        doc["teacher"] = {"weights": "unused"}
    spec = parse_spec(doc)
    train = data()
    teacher = None
    if method != "at":
        with torch.random.fork_rng():
            torch.manual_seed(99)
            teacher = create_model("tiny_wrn", num_classes=4)
    torch.manual_seed(0)
    student = create_model("tiny_resnet", num_classes=4)
    ctx = MethodContext(4, train.labels, spec.hyperparameters.attack, epochs)
    m = METHODS.get(spec.method)(student, teacher, spec.params, ctx)
    return Trainer(m, train, spec.hyperparameters, device=torch.device("cpu"), seed=7, checkpoint_dir=ckpt, **kw)


def global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    d = data()
    idx = torch.tensor([3, 17, 40, 8, 25, 31, 0, 46])
    return d.images[idx].float() / 255, d.labels[idx], idx


def one_step(case: str, rows: slice) -> dict[str, torch.Tensor]:
    """After one step on ``rows`` of :func:`global_batch` (BN in eval mode): the trainable state. A large
    learning rate, so that the step moves the weights far more than the tolerance of the comparison."""
    t = trainer(case, lr=2.0)
    t.method.train()
    t.method.student.eval()
    x, y, idx = global_batch()
    torch.manual_seed(5)
    t.train_step(x[rows], y[rows], idx[rows])
    return state(t)


def state(t: Trainer) -> dict[str, torch.Tensor]:
    return {
        **{f"student.{k}": v.clone() for k, v in t.method.student.state_dict().items()},
        **{f"extras.{k}": v.clone() for k, v in t.method.extras.state_dict().items()},
    }


def colour_data(n: int, seed: int) -> ImageSet:
    """Images of one grey-ish colour per class (close together) plus noise: a model learns them in a few
    steps, not robustly, so that attacks change some predictions and not all."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    colours = torch.tensor([[110, 110, 110], [140, 110, 110], [110, 140, 110], [110, 110, 140]])
    noise = torch.randint(-60, 61, (n, 3, 16, 16), generator=gen)
    return ImageSet((colours[labels][:, :, None, None] + noise).clamp(0, 255).to(torch.uint8), labels)


def colour_model() -> dict[str, torch.Tensor]:
    """A tiny student fitted to :func:`colour_data` (15 plain SGD steps): its state."""
    torch.manual_seed(0)
    model = create_model("tiny_resnet", num_classes=4)
    d = colour_data(64, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(d.images.float() / 255), d.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def evaluated(weights: dict[str, torch.Tensor]) -> E.Evaluation:
    """The protocol on the model of ``weights`` over 17 images in batches of 8: the last batch has one
    image, so that one process has no row of it; AutoAttack on 4 of them."""
    model = create_model("tiny_resnet", num_classes=4)
    model.load_state_dict(weights)
    ev = EvaluationSpec(
        attacks=["fgsm", "pgd20"], eps_sweep=[0.0, 4 / 255], batch_size=8, autoattack=True, autoattack_subset=4
    )
    return E.evaluate_model(model, colour_data(17, seed=5), ev, torch.device("cpu"), keep_adv=True)


def _training(out: Path) -> dict[str, Any]:
    """Two epochs straight; paused mid-epoch 2 by rank 1's request and resumed; stopped by rank 1's."""
    results: dict[str, Any] = {}
    straight = trainer("gacd-memory", epochs=2)
    straight.fit()
    results["straight"] = state(straight)
    results["straight_history"] = straight.history
    ckpt = out / "pause"
    steps = {"n": 0}

    def pause() -> bool:
        steps["n"] += 1
        return distributed.rank() == 1 and steps["n"] == 9  # epoch 2 (6 steps an epoch), step 3

    paused = trainer("gacd-memory", epochs=2, ckpt=ckpt, should_pause=pause)
    try:
        paused.fit()
    except TrainingPaused as exc:
        results["paused_at"] = (exc.epoch, exc.step)
    resumed = trainer("gacd-memory", epochs=2, ckpt=ckpt)
    resumed.fit(resume_from=ckpt / CHECKPOINT_NAME)
    results["resumed"] = state(resumed)
    results["resumed_history"] = resumed.history
    asked = {"n": 0}

    def stop() -> bool:
        asked["n"] += 1
        return distributed.rank() == 1 and asked["n"] >= 3

    try:
        trainer("gacd-memory", epochs=2, should_stop=stop, check_every=1).fit()
    except TrainingStopped as exc:
        results["stopped_at"] = (exc.epoch, exc.step)
    return results


def main(out: Path) -> None:
    torch.set_num_threads(1)
    with distributed.job_group(2, gpus=False):
        rows = distributed.rows(BATCH)
        results: dict[str, Any] = {"rows": rows}
        results["steps"] = {case: one_step(case, rows) for case in STEP_CASES}
        results.update(_training(out))
        results["evaluated_model"] = colour_model()
        ev = evaluated(results["evaluated_model"])
        results["evaluation"] = {"metrics": ev.metrics, "bits": ev.extra["per_image"]}
        results["evaluation"].update(logits=ev.clean_logits, feats=ev.clean_feats, adv=ev.adv_inputs)
        torch.save(results, out / f"rank{distributed.rank()}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
