"""Attacks: the PGD steps, the losses, and the named attacks built from them.

Add an attack: a class in :mod:`gacd_core.attacks.attacks` decorated with ``@register_attack(name)``
that configures :func:`pgd` (or wraps a package), and its name in :data:`gacd_core.catalog.ATTACKS`.
"""

from gacd_core.attacks.attacks import (
    ATTACKS,
    CW,
    FGSM,
    PGD,
    GuidedContrastiveAttack,
    KLAttack,
    protocol_attack,
    register_attack,
)
from gacd_core.attacks.autoattack import AutoAttack, AutoAttackResult
from gacd_core.attacks.core import PGDConfig, attack_mode, pgd, project, random_perturb, step
from gacd_core.attacks.losses import ce_loss, cw_margin_loss, kl_div

__all__ = [
    "ATTACKS",
    "CW",
    "FGSM",
    "PGD",
    "AutoAttack",
    "AutoAttackResult",
    "GuidedContrastiveAttack",
    "KLAttack",
    "PGDConfig",
    "attack_mode",
    "ce_loss",
    "cw_margin_loss",
    "kl_div",
    "pgd",
    "project",
    "protocol_attack",
    "random_perturb",
    "register_attack",
    "step",
]
