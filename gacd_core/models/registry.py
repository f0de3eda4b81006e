"""The model registry: ``@register_model`` on a small factory whose function name is the public name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gacd_core import catalog
from gacd_core.models.base import ImageClassifier
from gacd_core.normalization import IDENTITY
from gacd_core.registry import Registry

ModelFactory = Callable[..., ImageClassifier]
MODELS: Registry[ModelFactory] = Registry("model", catalog.MODELS)
register_model = MODELS.register


def create_model(
    arch: str,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ImageClassifier:
    """Build a registered architecture with freshly initialised weights.

    Args:
        arch: a registered name (``gacd list`` shows them).
        num_classes: output size.
        mean, std: the input normalisation. Without them the model does not normalise (mean 0,
            std 1) and its ``normalization_source`` is ``default``: nothing is assumed about data.
    """
    factory = MODELS.get(arch)
    model = factory(
        num_classes=num_classes,
        mean=tuple(mean) if mean is not None else IDENTITY[0],
        std=tuple(std) if std is not None else IDENTITY[1],
    )
    model.arch = arch
    model.normalization_source = "user" if mean is not None else "default"
    return model
