"""Reading the python-pickle batches of CIFAR without executing arbitrary code.

The CIFAR archives store each split as a pickled dict of numpy arrays. ``pickle.load`` would run
whatever a file names; this unpickler resolves only what numpy arrays and byte strings need, so a
planted file raises instead of running code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from gacd_core.errors import DatasetError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_pickle(path: Path) -> Any:
    """Unpickle ``path`` allowing only numpy arrays, dtypes and plain Python containers."""
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DatasetError(f"{path} is not a valid dataset batch: {exc}", field="dataset.root") from None
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}", field="dataset.root") from None
