"""Attacks: the PGD steps, the losses, and the named attacks built from them.

Add an evaluation attack: its row in :data:`gacd_core.catalog.ACCURACIES` (name, report key, label),
and its factory of eps in :mod:`gacd_core.attacks.attacks` decorated with ``@register_protocol_attack()``
(usually a configuration of :class:`PGD`); the protocol, the CLI, the job's progress and the reports
follow from the row.
"""

from gacd_core.attacks.attacks import (
    CW,
    FGSM,
    PGD,
    PROTOCOL_ATTACKS,
    GuidedContrastiveAttack,
    KLAttack,
    protocol_attack,
    register_protocol_attack,
)
from gacd_core.attacks.autoattack import AutoAttack, AutoAttackResult
from gacd_core.attacks.core import PGDConfig, attack_mode, pgd, project, random_perturb, step
from gacd_core.attacks.losses import ce_loss, cw_margin_loss, kl_div

__all__ = [
    "CW",
    "FGSM",
    "PGD",
    "PROTOCOL_ATTACKS",
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
    "register_protocol_attack",
    "step",
]
