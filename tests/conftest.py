"""Shared fixtures. Real CIFAR-10 comes from ../shared/data (decoded once into .cache/); tests that
need it skip, saying why, when it is absent. ``start_service`` runs Redis and real worker processes
for the tests of the HTTP service."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED_CIFAR10 = Path(os.environ.get("GACD_SHARED_DATA", ROOT.parent / "shared" / "data")) / "cifar10"
CACHE = ROOT / ".cache" / "cifar10"

torch.set_num_threads(max(1, min(os.cpu_count() or 1, 4)))

if TYPE_CHECKING:
    from _workers import ServiceEnv


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


@pytest.fixture(scope="module")
def start_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServiceEnv]]:
    """``start_service(name, workers=(...), **settings)``: Redis with the service's settings and the named
    worker processes (see ``_workers.ServiceEnv``), all stopped when the test module is done."""
    from _workers import ServiceEnv  # the service's packages only where a module asks for them

    with contextlib.ExitStack() as stack:

        def start(name: str, *, workers: Sequence[str] = (), **settings: Any) -> ServiceEnv:
            base = tmp_path_factory.mktemp(name)
            return stack.enter_context(ServiceEnv.running(base, workers=workers, **settings))

        yield start
