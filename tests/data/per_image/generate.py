"""Regenerates the two committed per-image files of this folder: two real, tiny training jobs (``natural``
and ``at`` on tiny_resnet, 2 epochs, learnable fake CIFAR-10 of tests/_fakes.py, 200 test images, clean /
FGSM / PGD-20), each writing ``per_image.json`` as every job does. The
test tests/test_paired_stats.py recomputes a McNemar statistic from them.

    .venv/bin/python tests/data/per_image/generate.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE.parent.parent.parent))

from _fakes import make_cifar10  # noqa: E402

from gacd_core.artifacts import PER_IMAGE  # noqa: E402
from gacd_core.jobs import run_job  # noqa: E402
from gacd_core.spec import parse_spec  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_cifar10(data, n_train=200, n_test=200, learnable=True)
        for method in ("natural", "at"):
            spec = parse_spec(
                {
                    "method": method,
                    "student": {"arch": "tiny_resnet"},
                    "dataset": {"name": "cifar10", "root": str(data)},
                    "hyperparameters": {"epochs": 2, "batch_size": 50, "attack": {"steps": 2}},
                    "evaluation": {
                        "attacks": ["fgsm", "pgd20"],
                        "autoattack": False,  # AutoAttack on a learnable model is minutes here; its bits: test_compare
                        "eps_sweep": [],
                        "throughput": False,
                    },
                    "device": "cpu",
                    "seed": 0,
                }
            )
            out = Path(tmp) / method
            run_job(spec, out)
            shutil.copy(out / PER_IMAGE, HERE / f"{method}.json")


if __name__ == "__main__":
    main()
