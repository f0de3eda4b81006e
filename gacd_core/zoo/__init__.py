"""The RobustBench model zoo as a committed table: what each L-inf entry is and whether we can build it.

A teacher can be named ``robustbench:<dataset>/<threat>/<entry>``, e.g.
``robustbench:cifar10/Linf/Wang2023Better_WRN-28-10`` (issue 25). This module reads
``robustbench.json``, written by us from RobustBench's public model-zoo code, leaderboard files and
``LICENSE`` at one commit (``source_commit``; see :mod:`gacd_core.zoo.build_robustbench`), and answers
three questions about an entry: how to build it (``family`` and ``arch``), what its input is
(``normalization``, ``input_size``, ``preprocessing``), and what it is (``leaderboard``, ``licence``).

The normalisation matters most. Since RobustBench commit d2d996d the DeepMind models keep ``mean`` and
``std`` as non-persistent buffers, so their checkpoint files carry none: without the entry's record a
loader would fall back to the identity and mis-normalise the teacher without a word. ``applied`` says
where RobustBench applies it: ``model`` (inside the network's forward), ``wrapper`` (a normalisation
layer in front of a torchvision or timm model), ``none`` (pixels in [0, 1] as they are), ``per_image``
(per-sample standardisation, which a fixed mean/std cannot express) or ``unknown``.

``covered`` entries have a family this project builds; every other entry names the concrete reason in
``not_covered_reason`` (an ensemble, an architecture with extra modules, ...). Torch-free: the API and
the CLI list the table without importing the science.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from gacd_core.errors import GACDError

__all__ = [
    "COVERED_FAMILIES",
    "PREFIX",
    "Arch",
    "Leaderboard",
    "Normalization",
    "Preprocessing",
    "Weights",
    "ZooEntry",
    "ZooEntryError",
    "ZooTable",
    "covered",
    "entries",
    "is_zoo_name",
    "lookup",
    "table",
]

TABLE_PATH = Path(__file__).with_name("robustbench.json")
PREFIX = "robustbench:"

Dataset = Literal["cifar10", "cifar100", "imagenet"]
Threat = Literal["Linf"]
Family = Literal[
    "dm_wide_resnet", "dm_preact_resnet", "wide_resnet", "preact_resnet", "resnet", "torchvision", "timm", "other"
]
COVERED_FAMILIES: frozenset[str] = frozenset(
    {"dm_wide_resnet", "dm_preact_resnet", "wide_resnet", "preact_resnet", "resnet", "torchvision", "timm"}
)

Triple = tuple[float, float, float]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class Arch(_Frozen):
    """What a builder needs; which fields are set depends on the family.

    Attributes:
        constructor: RobustBench's callable for the entry (for provenance; never imported).
        depth: total depth (6n + 4 for WideResNets; 18 or 50 for ResNets).
        width: widening factor of a WideResNet (0 for ``DMPreActResNet``, as its constructor takes it).
        activation: ``relu`` or ``swish`` (RobustBench's ``Swish`` and ``nn.SiLU`` are the same function).
        activation_impl: the class RobustBench passes, ``Swish`` or ``nn.SiLU``.
        padding: the DM models' input padding before normalisation (0 for every entry).
        sub_block1: TRADES layout only: the file holds an unused ``sub_block1`` branch (its keys must
            be accepted and ignored).
        bias_last: TRADES layout only: the classifier has a bias.
        block: ``basic`` or ``bottleneck`` for ResNets.
        shortcut_from: pre-activation ResNets: a projection shortcut reads the block's raw ``input`` or its
            ``activated`` input; same keys, different functions.
        final_bn: pre-activation ResNets: a BatchNorm and ReLU (``bn``) before pooling.
        stem: ``cifar`` (one 3x3 convolution, no max-pool) for the CIFAR ResNets.
        library, model_name, model_kwargs: torchvision or timm model and the arguments RobustBench gives it.
    """

    constructor: str
    num_classes: int
    depth: int | None = None
    width: int | None = None
    activation: Literal["relu", "swish"] | None = None
    activation_impl: str | None = None
    padding: int | None = None
    sub_block1: bool | None = None
    bias_last: bool | None = None
    block: Literal["basic", "bottleneck"] | None = None
    shortcut_from: Literal["input", "activated"] | None = None
    final_bn: bool | None = None
    stem: Literal["cifar"] | None = None
    library: Literal["torchvision", "timm"] | None = None
    model_name: str | None = None
    model_kwargs: dict[str, int | float | bool | str] | None = None


class Normalization(_Frozen):
    mean: Triple | None
    std: Triple | None
    applied: Literal["model", "wrapper", "none", "per_image", "unknown"]
    note: str | None = None


class Preprocessing(_Frozen):
    """Evaluation preprocessing before the model. ``preset`` is RobustBench's name where the entry
    declares one (``Res256Crop224``, ``BicubicRes256Crop224``, ``Crop288``, ``Res224``).

    ``resize_mode``: ``shorter_side`` resizes the shorter side to ``resize`` keeping the aspect ratio;
    ``exact`` resizes to ``resize`` x ``resize``. ``crop`` is a centre crop.
    """

    preset: str | None
    declared: bool
    resize: int | None
    resize_mode: Literal["shorter_side", "exact"] | None
    crop: int | None
    interpolation: Literal["bilinear", "bicubic"] | None
    note: str | None = None

    @property
    def output_side(self) -> int | None:
        """The side of the square image it yields, or ``None`` when it leaves the size as it is."""
        if self.crop is not None:
            return self.crop
        return self.resize if self.resize_mode == "exact" else None


class Leaderboard(_Frozen):
    """The entry's ``model_info/<dataset>/<threat>/<entry>.json`` (accuracies in percent)."""

    clean_acc: float
    autoattack_acc: float
    reported_acc: float | None
    external_acc: float | None
    eps: str
    eps_value: float
    architecture: str
    paper: str
    authors: str
    link: str
    venue: str
    additional_data: bool
    number_forward_passes: int
    footnote: str | None
    unreliable: bool | None
    json_dataset: str


class Weights(_Frozen):
    """Where RobustBench gets the weights: Google Drive file ids (several for an ensemble), the url
    of a GitHub release, or torchvision's own pretrained weights."""

    host: Literal["google_drive", "github_release", "torchvision"]
    ids: tuple[str, ...]
    url: str | None = None
    note: str | None = None


class ZooEntry(_Frozen):
    dataset: Dataset
    threat: Threat
    name: str
    family: Family
    arch: Arch
    normalization: Normalization
    input_size: tuple[int, int, int]
    preprocessing: Preprocessing
    leaderboard: Leaderboard
    weights: Weights
    checkpoint_note: str | None
    licence: str | None
    licence_note: str | None
    covered: bool
    not_covered_reason: str | None
    source_commit: str

    @model_validator(mode="after")
    def _coverage_is_stated(self) -> ZooEntry:
        if self.covered and (self.family not in COVERED_FAMILIES or self.not_covered_reason):
            raise ValueError(f"{self.key}: covered, but family {self.family!r} / reason {self.not_covered_reason!r}")
        if not self.covered and not self.not_covered_reason:
            raise ValueError(f"{self.key}: not covered and no reason given")
        if self.licence is None and not self.licence_note:
            raise ValueError(f"{self.key}: no licence and no licence_note saying why")
        return self

    @property
    def key(self) -> str:
        """The name users write: ``robustbench:<dataset>/<threat>/<entry>``."""
        return f"{PREFIX}{self.dataset}/{self.threat}/{self.name}"

    @property
    def non_commercial(self) -> bool:
        """The weights' licence forbids commercial use (Creative Commons NC licences)."""
        return self.licence is not None and "-NC" in self.licence


class ZooTable(_Frozen):
    source: str
    source_commit: str
    threats: tuple[Threat, ...]
    state_dict_note: str
    entries: tuple[ZooEntry, ...]


class ZooEntryError(GACDError, ValueError):
    """A ``robustbench:`` name that is malformed or names no entry of the table."""

    code = "unknown_zoo_entry"

    def __init__(self, message: str, *, suggestions: list[str] | None = None, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.suggestions = suggestions or []


@cache
def table() -> ZooTable:
    """The whole table, read and validated once."""
    data: dict[str, Any] = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    parsed = ZooTable.model_validate(data)
    keys = [e.key for e in parsed.entries]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"{TABLE_PATH.name}: duplicate entries {dup}")
    return parsed


def entries() -> tuple[ZooEntry, ...]:
    """Every entry, in RobustBench's order (CIFAR-10, CIFAR-100, ImageNet)."""
    return table().entries


def covered() -> tuple[ZooEntry, ...]:
    """The entries this project can build."""
    return tuple(e for e in entries() if e.covered)


@cache
def _by_key() -> dict[tuple[str, str, str], ZooEntry]:
    return {(e.dataset, e.threat, e.name): e for e in entries()}


def is_zoo_name(name: str) -> bool:
    """Whether ``name`` is meant as a zoo entry (starts with ``robustbench:``), valid or not."""
    return name.startswith(PREFIX)


def lookup(name: str) -> ZooEntry:
    """The entry ``robustbench:<dataset>/<threat>/<entry>`` (the prefix may be omitted).

    Dataset and threat are matched case-insensitively, the entry name exactly.

    Raises:
        ZooEntryError: (a ``ValueError``) for a malformed name, an unknown dataset or threat, or an
            unknown entry; the message names the closest entries and ``suggestions`` holds their keys.
    """
    path = name[len(PREFIX) :] if is_zoo_name(name) else name
    parts = path.split("/")
    if len(parts) != 3 or not all(parts):
        raise ZooEntryError(
            f"malformed RobustBench name {name!r}; expected {PREFIX}<dataset>/<threat>/<entry>, "
            f"e.g. {PREFIX}cifar10/Linf/Wang2023Better_WRN-28-10"
        )
    dataset_in, threat_in, entry = parts
    datasets = sorted({e.dataset for e in entries()})
    threats = sorted({e.threat for e in entries()})
    dataset = next((d for d in datasets if d == dataset_in.lower()), None)
    threat = next((t for t in threats if t.lower() == threat_in.lower()), None)
    if dataset is None:
        raise ZooEntryError(
            f"unknown RobustBench dataset {dataset_in!r} in {name!r}; the table has {', '.join(datasets)}"
        )
    if threat is None:
        raise ZooEntryError(
            f"unknown RobustBench threat model {threat_in!r} in {name!r}; the table has {', '.join(threats)}"
        )
    found = _by_key().get((dataset, threat, entry))
    if found is not None:
        return found
    raise _unknown_entry(name, dataset, threat, entry)


def _unknown_entry(name: str, dataset: str, threat: str, entry: str) -> ZooEntryError:
    same = [e for e in entries() if e.dataset == dataset and e.threat == threat]
    names = [e.name for e in same]
    folded = {n.lower(): n for n in names}
    # the same name in another case, then the names it begins (a paper key such as "Wang2023Better"
    # names several entries), then the most similar
    close = [folded[entry.lower()]] if entry.lower() in folded else []
    close += [n for n in names if n.lower().startswith(entry.lower()) and n not in close]
    close += [n for n in difflib.get_close_matches(entry, names, n=5, cutoff=0.5) if n not in close]
    close = close[:5]
    suggestions = [f"{PREFIX}{dataset}/{threat}/{n}" for n in close]
    elsewhere = [e.key for e in entries() if e.name == entry and e.dataset != dataset]
    message = f"unknown RobustBench entry {entry!r} for {dataset}/{threat} in {name!r}"
    if elsewhere:
        message += f"; it exists as {', '.join(elsewhere)}"
    if suggestions:
        message += f"; did you mean: {', '.join(suggestions)}"
    else:
        message += f" (the table has {len(names)} {dataset}/{threat} entries)"
    return ZooEntryError(message, suggestions=suggestions)
