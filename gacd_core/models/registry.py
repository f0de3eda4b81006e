"""The model registry: ``@register_model`` on a small factory whose function name is the public name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gacd_core import catalog
from gacd_core.architectures import UnknownArchError, is_foreign
from gacd_core.models.base import ImageClassifier
from gacd_core.normalization import IDENTITY
from gacd_core.registry import Registry

ModelFactory = Callable[..., ImageClassifier]
MODELS: Registry[ModelFactory] = Registry("model", catalog.MODELS)
register_model = MODELS.register


def create_model(
    arch: str,
    num_classes: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | None = None,
) -> ImageClassifier:
    """Build an architecture with freshly initialised weights.

    Args:
        arch: a registered name, or ``timm:<name>``, ``torchvision:<name>``,
            ``robustbench:<dataset>/<threat>/<entry>`` (:mod:`gacd_core.models.library`; ``gacd list``
            shows them all).
        num_classes: output size (default: a zoo entry's, else 10).
        mean, std: the input normalisation. Without them the model does not normalise (mean 0,
            std 1) and its ``normalization_source`` is ``default``: nothing is assumed about data.
        input_size: the side a library model is built for (ViTs need it; others record it); our own
            architectures take any side, and a zoo entry's side is its record's.

    Raises:
        UnknownNameError: a name that is none of these, naming the valid choices.
    """
    chosen_mean = tuple(mean) if mean is not None else None
    chosen_std = tuple(std) if std is not None else None
    if is_foreign(arch):
        why = catalog.arch_refusal(arch)
        if why is not None:
            raise UnknownArchError(arch, why, [n for n in catalog.ARCHITECTURES if n.startswith(arch.split(":")[0])])
        from gacd_core.models.library import create_foreign  # imports timm / torchvision when needed

        model = create_foreign(arch, num_classes, chosen_mean, chosen_std, input_size)
    else:
        model = MODELS.get(arch)(
            num_classes=num_classes if num_classes is not None else 10,
            mean=chosen_mean if chosen_mean is not None else IDENTITY[0],
            std=chosen_std if chosen_std is not None else IDENTITY[1],
        )
    model.arch = arch
    model.normalization_source = "user" if mean is not None else "default"
    if mean is None and model.provenance.get("library") == "robustbench":
        model.normalization_source = "entry"  # create_foreign gave it the entry's
    return model
