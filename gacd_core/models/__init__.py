"""Model architectures, the model registry, weights I/O and cost counters.

Add an architecture: write its file here with a factory decorated by ``@register_model()``, import
the file below, and add its name to :data:`gacd_core.catalog.MODELS`.
"""

from gacd_core.models import mobilenetv2, resnet, wideresnet  # noqa: F401  (registers the models)
from gacd_core.models.base import CIFAR10_MEAN, CIFAR10_STD, ImageClassifier, Normalize
from gacd_core.models.complexity import count_macs, count_params, measure_throughput
from gacd_core.models.io import (
    check_model,
    load_model_file,
    load_state,
    load_weights,
    read_info,
    read_metadata,
    save_weights,
)
from gacd_core.models.registry import MODELS, create_model, register_model

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "MODELS",
    "ImageClassifier",
    "Normalize",
    "check_model",
    "count_macs",
    "count_params",
    "create_model",
    "load_model_file",
    "load_state",
    "load_weights",
    "measure_throughput",
    "read_info",
    "read_metadata",
    "register_model",
    "save_weights",
]
