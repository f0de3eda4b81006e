"""Shared fixtures. Real CIFAR-10 comes from ../shared/data (decoded once into .cache/); tests that
need it skip, saying why, when it is absent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED_CIFAR10 = Path(os.environ.get("GACD_SHARED_DATA", ROOT.parent / "shared" / "data")) / "cifar10"
CACHE = ROOT / ".cache" / "cifar10"

torch.set_num_threads(max(1, min(os.cpu_count() or 1, 4)))


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """A data root holding the real CIFAR-10 (JPEG rebuild) in the standard python-batches layout."""
    if not (SHARED_CIFAR10 / "train.npz").is_file():
        pytest.skip(f"real CIFAR-10 is not at {SHARED_CIFAR10} (../shared/data/cifar10 beside the checkout)")
    done = CACHE / "cifar-10-batches-py" / "test_batch"
    if not done.is_file():
        tmp = CACHE.with_name("cifar10.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(
            [sys.executable, str(SHARED_CIFAR10 / "make_batches.py"), str(tmp)], check=True, capture_output=True
        )
        shutil.rmtree(CACHE, ignore_errors=True)
        tmp.rename(CACHE)
    return CACHE
