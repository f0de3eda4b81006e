"""The names users can choose, with one line each. Torch-free.

The HTTP service validates job specifications against these names without importing torch; the
registries in :mod:`gacd_core.models`, :mod:`gacd_core.methods`, :mod:`gacd_core.attacks` and
:mod:`gacd_core.data` refuse to register a name that is missing here, and a test checks that every
name here is registered. Adding a model or dataset therefore takes its file, its registry decorator and
one entry below.

Methods are the exception: a method is declared by its parameters class in :mod:`gacd_core.spec`
(:func:`~gacd_core.spec.declare_method`), which writes its entry into :data:`METHODS`. This module
imports :mod:`gacd_core.spec` at its end, so :data:`METHODS` is complete whichever is imported first.
"""

from __future__ import annotations

from dataclasses import dataclass

MODELS: dict[str, str] = {
    "resnet18": "ResNet-18, CIFAR stem (3x3 conv, no max-pool); 11.2M parameters at 10 classes",
    "preact_resnet18": "Pre-activation ResNet-18, CIFAR stem; 11.2M parameters at 10 classes",
    "preact_resnet18_nofinalbn": "Pre-activation ResNet-18 without the BatchNorm before pooling, as in "
    "kuangliu/pytorch-cifar (PreActResNet18)",
    "preact_resnet18_robustbench": "Pre-activation ResNet-18 as RobustBench's PreActResNet18(): no final "
    "BatchNorm, projection shortcuts from the raw block input",
    "wrn_34_10": "WideResNet-34-10 (Zagoruyko & Komodakis 2016); 46.2M parameters",
    "wrn_28_10": "WideResNet-28-10; 36.5M parameters",
    "wrn_16_4": "WideResNet-16-4; 2.7M parameters",
    "mobilenetv2": "MobileNetV2, full width, CIFAR strides (stride-1 stem and first stages); 2.3M parameters",
    "resnet10_w16": "ResNet-10 (one basic block per stage), widths 16-128; 0.3M parameters, for CPU runs",
    "resnet10_w8": "ResNet-10 (one basic block per stage), widths 8-64; 0.08M parameters, for CPU runs",
    "tiny_resnet": "ResNet, widths 4-32, one block per stage: for tests",
    "tiny_preact_resnet": "Pre-activation ResNet, widths 4-32, one block per stage: for tests",
    "tiny_wrn": "WideResNet-10-1 with base width 4: for tests",
    "tiny_mobilenetv2": "MobileNetV2 with width multiplier 0.125 and one block per stage: for tests",
}


@dataclass(frozen=True)
class MethodEntry:
    """What the catalog says about a training method; written by its declaration in :mod:`gacd_core.spec`.

    Attributes:
        label: how reports name the method ("GACD", "natural training").
        description: one line for ``gacd list``.
        needs_teacher: whether a job of this method distils from a teacher (and must name one).
    """

    label: str
    description: str
    needs_teacher: bool


# Filled by gacd_core.spec.declare_method, in the order the parameters classes are declared.
METHODS: dict[str, MethodEntry] = {}

# Attacks that can be named in an evaluation protocol, plus the training-time adversaries.
ATTACKS: dict[str, str] = {
    "fgsm": "FGSM: one signed-gradient step of size eps on the cross-entropy",
    "pgd": "PGD in L-inf with random start on any loss (cross-entropy by default)",
    "cw": "CW-inf: PGD on the Carlini-Wagner margin loss with confidence kappa",
    "guided": "GACD's guided contrastive attack: PGD pushing the student's embedding off the teacher anchor",
    "kl": "PGD maximising KL(teacher(x) || student(x')) (RSLAD's inner attack)",
    "autoattack": "standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square) from the reference package",
}

# The protocol attacks an evaluation may list, with the report key each one fills.
EVAL_ATTACKS: dict[str, str] = {
    "fgsm": "fgsm_acc",
    "pgd20": "pgd20_acc",
    "cw": "cw_acc",
}

DATASETS: dict[str, str] = {
    "cifar10": "CIFAR-10, python-batches layout under <root>/cifar-10-batches-py",
    "cifar100": "CIFAR-100 (fine labels), python layout under <root>/cifar-100-python",
    "stl10": "STL-10 labelled split, binary layout under <root>/stl10_binary (96x96, optional resize)",
    "custom": "your own data: an .npz of uint8 images and int labels, or an ImageFolder directory",
}


# The methods' declarations (see the module docstring): after the tables above, which spec reads.
from gacd_core import spec as _spec  # noqa: E402, F401
