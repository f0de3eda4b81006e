"""The names users can choose, with one line each. Torch-free.

The HTTP service validates job specifications against these names without importing torch; the
registries in :mod:`gacd_core.models`, :mod:`gacd_core.methods`, :mod:`gacd_core.attacks` and
:mod:`gacd_core.data` refuse to register a name that is missing here, and a test checks that every
name here is registered. Adding a model, an evaluation attack or a dataset therefore takes its file (or
factory), its registry decorator and one entry below (docs/extending.md).

Methods are the exception: a method is declared by its parameters class in
:mod:`gacd_core.method_params`, and :data:`METHODS` is derived from those classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from gacd_core.architectures import architectures, refusal
from gacd_core.method_params import METHOD_PARAMS

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
# Every architecture a teacher or a student may name: ours, then the library and RobustBench names of
# gacd_core.architectures (timm:<name>, torchvision:<name>, robustbench:<dataset>/<threat>/<entry>).
ARCHITECTURES: dict[str, str] = {**MODELS, **architectures()}


def arch_refusal(name: str) -> str | None:
    """Why ``name`` is no architecture, naming the valid choices (None when it is one)."""
    return refusal(name, list(MODELS))


@dataclass(frozen=True)
class MethodEntry:
    """What the catalog says about a training method, taken from its parameters class
    (:mod:`gacd_core.method_params`).

    Attributes:
        label: how reports name the method ("GACD", "natural training").
        description: one line for ``gacd list``.
        needs_teacher: whether a job of this method distils from a teacher (and must name one).
    """

    label: str
    description: str
    needs_teacher: bool


# In the order the parameters classes are declared.
METHODS: dict[str, MethodEntry] = {
    name: MethodEntry(cls.label, cls.description, cls.needs_teacher) for name, cls in METHOD_PARAMS.items()
}

# The attacks' building blocks, for `gacd list`: the protocol's attacks are configurations of these
# (the names an evaluation accepts are those of EVAL_ATTACKS), the rest are training-time adversaries.
ATTACKS: dict[str, str] = {
    "fgsm": "FGSM: one signed-gradient step of size eps on the cross-entropy",
    "pgd": "PGD in L-inf with random start on any loss (cross-entropy by default)",
    "cw": "CW-inf: PGD on the Carlini-Wagner margin loss with confidence kappa",
    "guided": "GACD's guided contrastive attack: PGD pushing the student's embedding off the teacher anchor",
    "kl": "PGD maximising KL(teacher(x) || student(x')) (RSLAD's inner attack)",
    "autoattack": "standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square) from the reference package",
}


@dataclass(frozen=True)
class Accuracy:
    """One accuracy the evaluation protocol reports: on clean inputs, under an attack, or under AutoAttack.

    Attributes:
        name: the name in ``evaluation.attacks`` and in the report's per-attack tables.
        key: the metric in ``report.json`` and in a job's progress (``pgd20_acc``).
        label: how reports and charts name it ("PGD-20").
        selectable: an evaluation may list it in ``evaluation.attacks`` (clean accuracy is always
            measured; AutoAttack has its own switch, ``evaluation.autoattack``). Each selectable attack
            has a factory in :mod:`gacd_core.attacks` registered under its name.
        reference: the protocol's reference attack (exactly one): its adversarial examples feed the
            structure metrics, its per-class accuracy is reported, its factory at other radii is the
            eps sweep's attack, and it is the headline robust accuracy.
    """

    name: str
    key: str
    label: str
    selectable: bool = True
    reference: bool = False


# In the order reports show them.
ACCURACIES: dict[str, Accuracy] = {
    a.name: a
    for a in (
        Accuracy("clean", "clean_acc", "Clean", selectable=False),
        Accuracy("fgsm", "fgsm_acc", "FGSM"),
        Accuracy("pgd20", "pgd20_acc", "PGD-20", reference=True),
        Accuracy("cw", "cw_acc", "CW"),
        Accuracy("autoattack", "autoattack_acc", "AutoAttack", selectable=False),
    )
}
# The protocol attacks an evaluation may list (its default: all of them).
EVAL_ATTACKS: dict[str, Accuracy] = {name: a for name, a in ACCURACIES.items() if a.selectable}
ACCURACY_KEYS: tuple[str, ...] = tuple(a.key for a in ACCURACIES.values())
(REFERENCE_ATTACK,) = (a for a in ACCURACIES.values() if a.reference)


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset users can name, and for a built-in one the facts the service states without reading it.

    Attributes:
        description: one line for ``gacd list``.
        folder: where its files sit under a data root (built-in datasets only).
        files: the files its reader needs, relative to ``folder``: what makes it available on a data root.
        num_classes: how many classes it has.
        train_size: images in its training split.
        test_size: images in its test split.
        image_size: the side of its (square) images.
    """

    description: str
    folder: str = ""
    files: tuple[str, ...] = ()
    num_classes: int | None = None
    train_size: int | None = None
    test_size: int | None = None
    image_size: int | None = None

    @property
    def builtin(self) -> bool:
        """Read from a data root by name (as opposed to ``custom``: a file or an upload)."""
        return bool(self.files)


DATASETS: dict[str, DatasetEntry] = {
    "cifar10": DatasetEntry(
        "CIFAR-10, python-batches layout under <root>/cifar-10-batches-py",
        "cifar-10-batches-py",
        (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"),
        num_classes=10,
        train_size=50_000,
        test_size=10_000,
        image_size=32,
    ),
    "cifar100": DatasetEntry(
        "CIFAR-100 (fine labels), python layout under <root>/cifar-100-python",
        "cifar-100-python",
        ("train", "test"),
        num_classes=100,
        train_size=50_000,
        test_size=10_000,
        image_size=32,
    ),
    "stl10": DatasetEntry(
        "STL-10 labelled split, binary layout under <root>/stl10_binary (96x96, optional resize)",
        "stl10_binary",
        tuple(f"{split}_{part}.bin" for split in ("train", "test") for part in ("X", "y")),
        num_classes=10,
        train_size=5_000,
        test_size=8_000,
        image_size=96,
    ),
    "custom": DatasetEntry("your own data: an .npz of uint8 images and int labels, or an ImageFolder directory"),
    "imagefolder": DatasetEntry(
        "an image folder under a data root (GACD_DATA_ROOTS), <path>/{train,test|val}/<class>/<image>, streamed"
    ),
    "shards": DatasetEntry(
        "WebDataset tar shards under a data root (GACD_DATA_ROOTS), <path>/{train,test|val}/*.tar, streamed"
    ),
}
# The datasets read by reference from a data root and streamed (gacd_core.datarefs, gacd_core.data.stream).
STREAMED: tuple[str, ...] = ("imagefolder", "shards")
