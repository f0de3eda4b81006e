"""Training methods, one file each, in a registry: ``natural``, ``at``, ``kd``, ``ard``, ``rslad``,
``crd``, ``gacd`` (GACD.md defines each)."""

from gacd_core.methods import ard, at, crd, gacd, kd, natural, rslad  # noqa: F401  (registers them)
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
