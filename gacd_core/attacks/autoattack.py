"""Standard AutoAttack (Croce & Hein, ICML 2020) through the reference implementation.

The package is ``pyautoattack`` (PyPI), the authors' own code from github.com/fra31/auto-attack, the
one RobustBench depends on. ``version='standard'`` in L-inf runs APGD-CE (100 iterations, 1 restart),
APGD-T (100 iterations, 9 target classes), FAB-T (100 iterations, 9 target classes) and Square (5000
queries), each on the points the previous ones left robust. :func:`standard_config` reads these
settings back from the package's objects, and a test checks them against the reference values, so a
package update that changed them would be caught. (Another popular package, torchattacks 3.5.1, builds
its "standard" AutoAttack with 10 iterations per attack instead of 100; we do not use it.)

The one adjustment: with fewer than 10 classes the reference's 9 target classes do not exist; we use
``num_classes - 1`` targets there, and the report says so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gacd_core.attacks.core import attack_mode

STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")
_AFTER = re.compile(r"robust accuracy after ([A-Z\-]+): ([0-9.]+)%")
_RUNNING = re.compile(r"^running ([a-z\-]+)$")
_BATCH = re.compile(r"^([a-z\-]+) - ([0-9]+)/([0-9]+) - ")


def _package_version() -> str:
    from importlib.metadata import version

    return f"pyautoattack {version('pyautoattack')}"


def build(model: nn.Module, eps: float, num_classes: int, seed: int, device: torch.device) -> Any:
    """A configured ``pyautoattack.AutoAttack`` in its standard version."""
    from pyautoattack import AutoAttack as Reference

    aa = Reference(model, norm="Linf", eps=eps, version="standard", seed=seed, device=device)
    targets = min(9, num_classes - 1)
    aa.apgd_targeted.n_target_classes = targets
    aa.fab.n_target_classes = targets
    return aa


def standard_config(aa: Any) -> dict[str, Any]:
    """The settings an AutoAttack object will run with, read from the object itself."""
    return {
        "attacks": list(aa.attacks_to_run),
        "apgd_ce": {"n_iter": aa.apgd.n_iter, "n_restarts": aa.apgd.n_restarts, "loss": aa.apgd.loss},
        "apgd_t": {
            "n_iter": aa.apgd_targeted.n_iter,
            "n_restarts": aa.apgd_targeted.n_restarts,
            "n_target_classes": aa.apgd_targeted.n_target_classes,
        },
        # fab-t runs with n_restarts forced to 1 by run_standard_evaluation
        "fab_t": {
            "n_iter": aa.fab.n_iter,
            "n_restarts": aa.fab.n_restarts,
            "n_target_classes": aa.fab.n_target_classes,
        },
        "square": {"n_queries": aa.square.n_queries, "n_restarts": aa.square.n_restarts, "p_init": aa.square.p_init},
    }


class _Collect(logging.Handler):
    """Reads the reference implementation's log: the robust accuracy after each attack, and (for
    ``on_progress``) which attack runs and how many of its batches are done. The reference logs a line
    when an attack starts and after each of its batches, so a callback here runs between attacks and
    between batches; an exception it raises (a stop request) ends the run there."""

    def __init__(self, attacks: list[str], on_progress: Callable[[str, float], None] | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.after: dict[str, float] = {}
        self.attacks, self.on_progress = attacks, on_progress

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        m = _AFTER.search(text)
        if m:
            self.after[m.group(1).lower()] = float(m.group(2)) / 100
        if self.on_progress is None:
            return
        if (m := _RUNNING.match(text)) and m.group(1) in self.attacks:
            self.on_progress(m.group(1), self.attacks.index(m.group(1)) / len(self.attacks))
        elif (m := _BATCH.match(text)) and m.group(1) in self.attacks:
            done = self.attacks.index(m.group(1)) + int(m.group(2)) / int(m.group(3))
            self.on_progress(m.group(1), done / len(self.attacks))


@dataclass
class AutoAttackResult:
    robust_acc: float
    x_adv: torch.Tensor
    breakdown: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    correct: torch.Tensor | None = None  # per image: the model is still right on its adversarial example


class AutoAttack:
    """Standard AutoAttack in L-inf.

    Args:
        eps: the L-inf radius.
        num_classes: the model's classes (sets the target count below 10 classes).
        seed: the attacks' seed.
        batch_size: images per attack batch.
    """

    def __init__(self, eps: float, num_classes: int, seed: int = 0, batch_size: int = 500) -> None:
        self.eps, self.num_classes, self.seed, self.batch_size = eps, num_classes, seed, batch_size

    def describe(self) -> dict[str, Any]:
        targets = min(9, self.num_classes - 1)
        return {
            "version": "standard",
            "attacks": list(STANDARD_ATTACKS),
            "package": _package_version(),
            "n_iter": 100,
            "n_target_classes": targets,
            "square_queries": 5000,
        }

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        on_progress: Callable[[str, float], None] | None = None,
    ) -> AutoAttackResult:
        """Attack ``(x, y)``; robust accuracy counts the points every attack failed on.

        Args:
            on_progress: called with (attack, fraction of AutoAttack done) when an attack starts and
                after each of its batches; an exception it raises stops the run there.
        """
        device = x.device
        with attack_mode(model):
            aa = build(model, self.eps, self.num_classes, self.seed, device)
            collect = _Collect(list(aa.attacks_to_run), on_progress)
            logger = logging.getLogger("auto-attack")
            old_level, old_propagate = logger.level, logger.propagate
            logger.addHandler(collect)
            logger.setLevel(logging.DEBUG)
            logger.propagate = False  # its debug lines go to our collector, not to the caller's console
            try:
                x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=self.batch_size)
            finally:
                logger.removeHandler(collect)
                logger.setLevel(old_level)
                logger.propagate = old_propagate
            logging.getLogger("gacd.evaluation").info(
                "AutoAttack: robust after %s",
                ", ".join(f"{k} {100 * v:.1f}%" for k, v in collect.after.items()) or "(no breakdown)",
            )
            with torch.no_grad():
                correct = torch.cat(
                    [
                        (model(x_adv[i : i + self.batch_size]).argmax(1) == y[i : i + self.batch_size])
                        for i in range(0, len(x), self.batch_size)
                    ]
                )
        delta = (x_adv - x).abs().amax()
        if float(delta) > self.eps + 1e-6 or float(x_adv.min()) < 0 or float(x_adv.max()) > 1:
            raise RuntimeError(f"AutoAttack left the threat model (max perturbation {float(delta):.6f})")
        return AutoAttackResult(
            float(correct.float().mean()), x_adv, collect.after, standard_config(aa), correct.cpu()
        )
