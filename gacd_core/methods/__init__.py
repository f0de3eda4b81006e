"""Training methods, one file each, in a registry: ``natural``, ``at``, ``trades``, ``kd``, ``ard``,
``rslad``, ``iad``, ``crd``, ``gacd`` (GACD.md defines the original seven; docs/method.md all of them).

Every module of this package is imported here, so that each method file registers its implementation
(``@register_method``) without a list to keep: a new method is its file, and its parameters class in
:mod:`gacd_core.method_params`.
"""

import importlib
import pkgutil

from gacd_core.methods.base import METHODS, Method, MethodContext, StepOutput, register_method
from gacd_core.methods.contrastive import ContrastiveObjective, reliability_weights

__all__ = [
    "METHODS",
    "ContrastiveObjective",
    "Method",
    "MethodContext",
    "StepOutput",
    "register_method",
    "reliability_weights",
]

# Every method file registers its implementation when imported (in name order: registration order is
# not what lists methods, the parameters classes are).
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
