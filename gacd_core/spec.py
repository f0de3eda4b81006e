"""The job specification: one pydantic model shared by the CLI, the worker and the HTTP API.

This module must stay importable without torch (the service imports it), so names are checked
against :mod:`gacd_core.catalog`, not against the torch registries.

A job is ``JobSpec``: what to train (``method``), from what (``teacher``), into what (``student``), on
what (``dataset``), how (``hyperparameters``), how it is judged (``evaluation``), and where it runs
(``device``, ``precision``, ``seed``). ``parse_spec`` is the one entry point that turns user input
(a dict, JSON or YAML) into a validated ``JobSpec`` or a :class:`~gacd_core.errors.SpecError` whose
messages name each bad field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from gacd_core import catalog
from gacd_core.errors import SpecError
from gacd_core.normalization import NormalizationError, NormalizationName
from gacd_core.normalization import resolve as resolve_normalization

EPS_8 = 8 / 255


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _check_name(value: str, valid: Collection[str], kind: str) -> str:
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")
    return value


RGB = tuple[float, float, float]


# --------------------------------------------------------------------------------------------------
# Who: teacher and student
# --------------------------------------------------------------------------------------------------
class TeacherSpec(_Strict):
    """The frozen robust teacher.

    ``weights`` is a path readable by the process that runs the job (the worker resolves a service
    ``id`` to one). ``arch``, ``num_classes`` and the normalisation are read from a ``.safetensors``
    file's metadata when absent here. A state_dict from elsewhere (``.pt``, ``.pth``, ``.t7``) needs
    ``arch``; its number of classes is read from the classifier's shape, and it is **not normalised**
    (mean 0, std 1, as the public robust-training code trains) unless it carries ``mu``/``sigma``
    buffers or ``normalization`` (a preset) or ``mean``/``std`` say otherwise.

    Before any training the teacher's clean accuracy is measured on the job's dataset
    (:mod:`gacd_core.teacher_check`); a teacher near chance is refused (``teacher_unfit``) unless
    ``allow_weak``.
    """

    weights: str | None = Field(None, description="path to .safetensors or .pt/.pth/.t7 (state_dict) weights")
    id: str | None = Field(None, description="a teacher id of the HTTP service; resolved by the worker")
    arch: str | None = None
    num_classes: int | None = Field(None, ge=2, le=100_000)
    normalization: NormalizationName | None = Field(
        None,
        description="input normalisation preset: none (default for files without gacd metadata), cifar10, "
        "cifar100, imagenet",
    )
    mean: RGB | None = None
    std: RGB | None = None
    allow_weak: bool = Field(False, description="use the teacher even if its accuracy check finds it near chance")

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str | None) -> str | None:
        return None if v is None else _check_name(v, catalog.MODELS, "model")

    @field_validator("std")
    @classmethod
    def _std(cls, v: RGB | None) -> RGB | None:
        if v is not None and any(s <= 0 for s in v):
            raise ValueError("every std must be > 0")
        return v

    @model_validator(mode="after")
    def _source(self) -> TeacherSpec:
        if self.weights is None and self.id is None:
            raise ValueError("weights: give the teacher's weights (a file path) or its id")
        try:  # the rules of a requested normalisation are stated once, in gacd_core.normalization
            resolve_normalization(self.normalization, self.mean, self.std)
        except NormalizationError as exc:
            raise ValueError(exc.located()) from None
        return self

    def resolved_normalization(self) -> tuple[RGB, RGB] | None:
        """The (mean, std) the user asked for (preset or values), or None to let the file decide."""
        return resolve_normalization(self.normalization, self.mean, self.std)


class StudentSpec(_Strict):
    """The model being trained. For ``natural`` and ``at`` jobs it is the only model."""

    arch: str = "mobilenetv2"
    mean: RGB | None = Field(None, description="input normalisation; default: the dataset's statistics")
    std: RGB | None = None

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str) -> str:
        return _check_name(v, catalog.MODELS, "model")

    @field_validator("std")
    @classmethod
    def _std(cls, v: RGB | None) -> RGB | None:
        if v is not None and any(s <= 0 for s in v):
            raise ValueError("every std must be > 0")
        return v


# --------------------------------------------------------------------------------------------------
# What: the dataset
# --------------------------------------------------------------------------------------------------
class DatasetSpec(_Strict):
    """Where the images come from and which of them a job uses.

    Subsets are deterministic and class-stratified, drawn with a fixed seed that does not depend on
    the job's seed, so that two jobs naming the same subset see the same images.
    """

    name: str = "cifar10"
    root: str | None = Field(None, description="data root; default $GACD_DATA_ROOT or ./data")
    path: str | None = Field(None, description="custom datasets: an .npz file or an ImageFolder directory")
    id: str | None = Field(None, description="custom datasets: a dataset id of the HTTP service")
    train_subset: int | None = Field(None, ge=1, description="use this many training images")
    test_subset: int | None = Field(None, ge=1, description="use this many test images")
    val_size: int = Field(
        0, ge=0, description="hold this many training images out for per-epoch monitoring (never tuned on)"
    )
    classes: list[int] | None = Field(
        None, min_length=2, description="keep only these classes, relabelled 0..k-1 in this order"
    )
    image_size: int | None = Field(None, ge=8, le=1024, description="resize images to this side")
    download: bool = Field(False, description="download a built-in dataset when it is missing")
    on_device: bool = Field(False, description="keep the whole dataset on the GPU as uint8")
    augment: bool = Field(True, description="random crop (padding 4) and horizontal flip while training")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, catalog.DATASETS, "dataset")

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            if len(set(v)) != len(v):
                raise ValueError("classes must not repeat")
            if any(c < 0 for c in v):
                raise ValueError("classes must be >= 0")
        return v

    @model_validator(mode="after")
    def _source(self) -> DatasetSpec:
        if self.name == "custom":
            if self.path is None and self.id is None:
                raise ValueError("path: a custom dataset needs a path (.npz or ImageFolder directory) or an id")
        elif self.path is not None or self.id is not None:
            raise ValueError(f"path: path and id are for custom datasets; {self.name!r} is read from root")
        return self


# --------------------------------------------------------------------------------------------------
# How: hyperparameters, with per-method parameters
# --------------------------------------------------------------------------------------------------
class TrainAttackSpec(_Strict):
    """The inner adversary of robust methods: L-inf PGD."""

    eps: float = Field(EPS_8, ge=0, le=1)
    steps: int = Field(10, ge=1, le=1000)
    step_size: float = Field(2 / 255, gt=0, le=1)
    random_start: bool = True


DEFAULT_WEIGHT_DECAY = 5e-4


class MethodParamsBase(_Strict):
    """The parameters of a training method, and its declaration.

    A method is declared once, by a subclass decorated with :func:`declare_method` that sets ``method``
    to a one-name ``Literal`` (its public name) and these class attributes, from which the catalog, the
    job specification, the CLI and the reports take what they say about it:

    Attributes:
        label: how reports name the method ("GACD", "natural training").
        description: one line for ``gacd list``.
        needs_teacher: whether a job of this method distils from a teacher (and must name one).
        default_weight_decay: the SGD weight decay a job of this method gets when
            ``hyperparameters.weight_decay`` is not given.
    """

    # The discriminator; filled in from JobSpec.method and left out of dumps.
    method: str = Field(exclude=True)
    name: ClassVar[str]  # set by declare_method from ``method``
    label: ClassVar[str]
    description: ClassVar[str]
    needs_teacher: ClassVar[bool]
    default_weight_decay: ClassVar[float] = DEFAULT_WEIGHT_DECAY


# Every declared method's parameters class, by name, in declaration order.
METHOD_PARAMS: dict[str, type[MethodParamsBase]] = {}
P = TypeVar("P", bound=MethodParamsBase)
_MODELS_BUILT = False


def declare_method(cls: type[P]) -> type[P]:
    """Declare a training method by its parameters class (a decorator).

    The name is the default of the class's ``method`` field. The method becomes a choice of
    ``JobSpec.method`` and of ``hyperparameters.method_params``, an entry of
    :data:`gacd_core.catalog.METHODS` (``gacd list``, the reports' names) and the key its torch
    implementation registers under (:func:`gacd_core.methods.register_method`).

    Raises:
        TypeError: the class lacks its name, label, description or ``needs_teacher``.
        ValueError: a method of that name is already declared.
    """
    name = cls.model_fields["method"].default
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__}: set method to a one-name Literal with that name as its default")
    missing = [a for a in ("label", "description", "needs_teacher") if not hasattr(cls, a)]
    if missing:
        raise TypeError(f"{cls.__name__}: a method's declaration sets {', '.join(missing)}")
    if name in METHOD_PARAMS:
        raise ValueError(f"duplicate method name {name!r}")
    cls.name = name
    METHOD_PARAMS[name] = cls
    catalog.METHODS[name] = catalog.MethodEntry(cls.label, cls.description, cls.needs_teacher)
    if _MODELS_BUILT:
        _rebuild_method_union()
    return cls


def withdraw_method(name: str) -> None:
    """Undo :func:`declare_method` (for tests that declare a method for a while)."""
    del METHOD_PARAMS[name]
    del catalog.METHODS[name]
    _rebuild_method_union()


def method_names(*, needs_teacher: bool | None = None) -> list[str]:
    """The declared methods in declaration order; only those that do (or do not) need a teacher when given."""
    return [n for n, c in METHOD_PARAMS.items() if needs_teacher is None or c.needs_teacher == needs_teacher]


def _method_union() -> Any:
    """The tagged union of every declared parameters class, the type of ``hyperparameters.method_params``."""
    return Annotated[Union[tuple(METHOD_PARAMS.values())], Field(discriminator="method")]  # noqa: UP007


@declare_method
class NaturalParams(MethodParamsBase):
    method: Literal["natural"] = Field("natural", exclude=True)
    label = "natural training"
    description = "standard training on clean data (no teacher)"
    needs_teacher = False


@declare_method
class ATParams(MethodParamsBase):
    method: Literal["at"] = Field("at", exclude=True)
    label = "AT"
    description = "PGD adversarial training (Madry et al. 2018): cross-entropy on PGD examples (no teacher)"
    needs_teacher = False


@declare_method
class KDParams(MethodParamsBase):
    """Hinton et al. 2015: alpha * tau^2 * KL(T(x)/tau || S(x)/tau) + (1 - alpha) * CE(S(x), y)."""

    method: Literal["kd"] = Field("kd", exclude=True)
    label = "KD"
    description = "Hinton knowledge distillation on clean data (non-robust baseline)"
    needs_teacher = True
    temperature: float = Field(4.0, gt=0, le=100)
    alpha: float = Field(0.9, ge=0, le=1)


KLReduction = Literal["mean", "batchmean"]
_KL_REDUCTION = (
    "mean: averaged over batch x classes, as the authors' code (nn.KLDivLoss() / torch.mean); "
    "batchmean: summed over classes and averaged over the batch (C times larger)"
)


@declare_method
class ARDParams(MethodParamsBase):
    """Goldblum et al. 2020: alpha * tau^2 * KL(T(x)/tau || S(x')/tau) + (1 - alpha) * CE(S(x), y).

    The defaults are those of the authors' code (github.com/goldblum/AdversariallyRobustDistillation,
    ``main.py``): tau = 30, alpha = 1, ``nn.KLDivLoss()`` (mean over batch x classes) and SGD weight
    decay 2e-4. With alpha = 1 the loss is GACD.md's ``tau^2 * KL(T(x)/tau || S(x')/tau)``.
    """

    method: Literal["ard"] = Field("ard", exclude=True)
    label = "ARD"
    description = "Adversarially Robust Distillation (Goldblum et al. 2020): KL to the teacher on student PGD examples"
    needs_teacher = True
    default_weight_decay: ClassVar[float] = 2e-4
    temperature: float = Field(30.0, gt=0, le=100)
    alpha: float = Field(1.0, ge=0, le=1)
    kl_reduction: KLReduction = Field("mean", description=_KL_REDUCTION)


@declare_method
class RSLADParams(MethodParamsBase):
    """Zi et al. 2021: adv_weight * KL(T(x) || S(x')) + clean_weight * KL(T(x) || S(x)).

    The defaults are those of the authors' code (github.com/zibojia/RSLAD, ``resnet18_rslad_cifar10.py``):
    weights 5/6 and 1/6, no temperature, the KL terms averaged over batch x classes (``torch.mean``)
    and SGD weight decay 2e-4.
    """

    method: Literal["rslad"] = Field("rslad", exclude=True)
    label = "RSLAD"
    description = "Robust Soft Label Adversarial Distillation (Zi et al. 2021)"
    needs_teacher = True
    default_weight_decay: ClassVar[float] = 2e-4
    kl_reduction: KLReduction = Field("mean", description=_KL_REDUCTION)
    adv_weight: float = Field(5 / 6, ge=0, le=10)
    clean_weight: float = Field(1 / 6, ge=0, le=10)


class _ContrastiveParams(MethodParamsBase):
    """Shared by ``crd`` and ``gacd``: projection heads, critic and negatives (docs/method.md)."""

    feat_dim: int = Field(128, ge=2, le=4096, description="projection dimension d")
    nce_temperature: float = Field(0.07, gt=0, le=10, description="critic temperature tau")
    negatives: Literal["memory", "in_batch"] = "memory"
    n_negatives: int = Field(16384, ge=1, le=1_000_000, description="N, capped by the data available")
    memory_momentum: float = Field(0.5, ge=0, lt=1)
    other_class_negatives: bool = True
    critic_normalization: Literal["crd", "none"] = Field(
        "crd", description="crd: divide exp(s/tau) by CRD's partition constant Z; none: Z = 1"
    )
    lambda_nce: float = Field(0.8, ge=0, le=100)
    lambda_kd: float = Field(0.0, ge=0, le=100)
    lambda_ce: float = Field(1.0, ge=0, le=100)
    kd_temperature: float = Field(4.0, gt=0, le=100)
    cross_task: bool | None = Field(
        None, description="teacher and student label sets differ; None: when their class counts differ"
    )

    @model_validator(mode="after")
    def _kd_needs_one_label_set(self) -> _ContrastiveParams:
        if self.cross_task and self.lambda_kd > 0:
            raise ValueError("lambda_kd: must be 0 when teacher and student label sets differ")
        return self


@declare_method
class CRDParams(_ContrastiveParams):
    method: Literal["crd"] = Field("crd", exclude=True)
    label = "CRD"
    description = "Contrastive Representation Distillation on clean data (Tian et al. 2020; non-robust)"
    needs_teacher = True


@declare_method
class GACDParams(_ContrastiveParams):
    method: Literal["gacd"] = Field("gacd", exclude=True)
    label = "GACD"
    description = "Guided Adversarial Contrastive Distillation (Bai et al. 2020): this product's method"
    needs_teacher = True
    # The defaults below were chosen on validation images (never the test split) by the screening of
    # benchmarks/compare.py --split val: docs/method.md, section 6, shows the table that chose them.
    # In-batch negatives and the student's CE added to the guided attack gave the most robust student;
    # the memory bank (GACD.md's) and the guided objective alone stay options of the specification.
    negatives: Literal["memory", "in_batch"] = Field(
        "in_batch", description="in_batch: InfoNCE over the batch; memory: a bank of teacher embeddings (CRD's)"
    )
    reweight: Literal["none", "hard", "soft"] = "soft"
    beta: float = Field(1.0, ge=0, le=10, description="soft reweighting exponent")
    attack: Literal["guided", "ce"] = Field("guided", description="guided contrastive or CE (ablation)")
    attack_ce_weight: float = Field(
        1.0,
        ge=0,
        le=100,
        description="guided attack only: maximise -log h + this x the student's CE (0: the guided objective "
        "alone); 0 when not given with attack 'ce'",
    )
    lambda_nce: float = Field(0.1, ge=0, le=100)
    lambda_kd: float = Field(1.0, ge=0, le=100)
    lambda_ce: float = Field(1.0, ge=0, le=100)
    kd_temperature: float = Field(1.0, gt=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _ce_attack_has_no_mix(cls, data: Any) -> Any:
        """The CE attack has nothing to mix: its weight defaults to 0 there, not to the guided default."""
        if isinstance(data, dict) and data.get("attack") == "ce" and "attack_ce_weight" not in data:
            return {**data, "attack_ce_weight": 0.0}
        return data

    @model_validator(mode="after")
    def _cross_task(self) -> GACDParams:
        if self.cross_task and self.reweight == "hard":
            raise ValueError("reweight: 'hard' needs the teacher's labels; use 'soft' or 'none' across tasks")
        if self.attack == "ce" and self.attack_ce_weight > 0:
            raise ValueError("attack_ce_weight: mixes CE into the guided attack; with attack 'ce' leave it at 0")
        return self


if TYPE_CHECKING:
    _DeclaredParams = MethodParamsBase
else:  # the tagged union of the methods declared above (declare_method rebuilds it for later ones)
    _DeclaredParams = _method_union()


class HyperParameters(_Strict):
    """The optimisation: one trainer serves every method."""

    epochs: int = Field(100, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    optimizer: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0, le=100)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(
        DEFAULT_WEIGHT_DECAY,
        ge=0,
        le=1,
        description="SGD weight decay; when not given, the method's: 2e-4 for ard and rslad (their authors' code), "
        "5e-4 for the others",
    )
    schedule: Literal["piecewise", "cosine", "constant"] = "piecewise"
    milestones: list[float] = Field(
        default_factory=lambda: [0.5, 0.75], description="piecewise: fractions of training, x gamma"
    )
    gamma: float = Field(0.1, gt=0, le=1)
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up of the learning rate")
    attack: TrainAttackSpec = Field(default_factory=TrainAttackSpec)
    method_params: _DeclaredParams | None = Field(
        None, description="parameters of the chosen method; omitted ones take the method's defaults"
    )

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, v: list[float]) -> list[float]:
        if any(not 0 < m < 1 for m in v):
            raise ValueError("milestones are fractions of training, each strictly between 0 and 1")
        if sorted(set(v)) != v:
            raise ValueError("milestones must be strictly increasing")
        return v

    @model_validator(mode="after")
    def _warmup(self) -> HyperParameters:
        if self.warmup_epochs >= self.epochs:
            raise ValueError("warmup_epochs: must be smaller than epochs")
        return self


# --------------------------------------------------------------------------------------------------
# Judged how: the evaluation protocol
# --------------------------------------------------------------------------------------------------
DEFAULT_EPS_SWEEP = [0.0, 2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255]


class EvaluationSpec(_Strict):
    """The fixed protocol of GACD.md: clean, FGSM, PGD-20, CW-inf and, when asked, AutoAttack.

    Step sizes scale with ``eps`` (eps/4 for PGD-20 and CW, eps for FGSM), which gives exactly the
    protocol's 2/255 at eps = 8/255. Evaluation always runs in fp32.
    """

    eps: float = Field(EPS_8, gt=0, le=1)
    split: Literal["test", "val"] = Field(
        "test",
        description="test: the test split (reports); val: the images held out of training by dataset.val_size, "
        "for choosing hyperparameters without looking at the test split",
    )
    attacks: list[str] = Field(default_factory=lambda: list(catalog.EVAL_ATTACKS))
    subset: int | None = Field(None, ge=1, description="evaluate on this many test images")
    autoattack: bool = False
    autoattack_subset: int | None = Field(1000, ge=1, description="AutoAttack on this many test images")
    eps_sweep: list[float] = Field(default_factory=lambda: list(DEFAULT_EPS_SWEEP))
    batch_size: int = Field(256, ge=1, le=65_536)
    teacher: bool = Field(True, description="also evaluate the teacher under the same protocol")
    throughput: bool = Field(True, description="measure inference throughput of teacher and student")

    @field_validator("attacks")
    @classmethod
    def _attacks(cls, v: list[str]) -> list[str]:
        for name in v:
            _check_name(name, catalog.EVAL_ATTACKS, "evaluation attack")
        if len(set(v)) != len(v):
            raise ValueError("attacks must not repeat")
        return v

    @field_validator("eps_sweep")
    @classmethod
    def _sweep(cls, v: list[float]) -> list[float]:
        if len(v) > 32:
            raise ValueError("at most 32 eps values")
        if any(not 0 <= e <= 1 for e in v):
            raise ValueError("each eps must be in [0, 1]")
        return sorted(set(v))


# --------------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------------
# The devices a job may name: one of DEVICES, or ``cuda:N`` for the N-th CUDA device (ASCII digits).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
INDEXED_DEVICE = re.compile(r"cuda:[0-9]+")
MetadataValue = str | int | float | bool | None


class JobSpec(_Strict):
    """One training job: the same object for the CLI, the worker and the HTTP API."""

    method: str = "gacd"
    teacher: TeacherSpec | None = None
    student: StudentSpec = Field(default_factory=StudentSpec)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    hyperparameters: HyperParameters = Field(default_factory=HyperParameters)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description=(
            "training precision: auto measures a few steps of fp32 and (where the device has bf16 arithmetic) "
            "bf16 autocast, each with and without channels-last, and keeps the fastest; fp32 or bf16 force it. "
            "Evaluation always runs in fp32"
        ),
    )
    compile: bool = Field(
        False,
        description=(
            "torch.compile each model's body for training (inductor). Compiling takes minutes at job start; "
            "benchmarks/RESULTS.md says where it pays off. Evaluation always runs the eager model"
        ),
    )
    metadata: dict[str, MetadataValue] = Field(default_factory=dict, description="free-form labels")

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return _check_name(v, catalog.METHODS, "method")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in DEVICES and not INDEXED_DEVICE.fullmatch(v):
            raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
        if len(v) > 64:
            raise ValueError("at most 64 metadata keys")
        for key, val in v.items():
            if len(key) > 64 or (isinstance(val, str) and len(val) > 1024):
                raise ValueError("metadata keys are at most 64 characters, values at most 1024")
            if isinstance(val, float) and not math.isfinite(val):
                raise ValueError("metadata numbers must be finite")
        return v

    @model_validator(mode="before")
    @classmethod
    def _tag_method_params(cls, data: Any) -> Any:
        # The method's parameters are validated by the model of the job's method: copy the method
        # name into them as the union's discriminator (it is excluded again from dumps).
        if not isinstance(data, dict):
            return data
        method = data.get("method", "gacd")
        if not isinstance(method, str) or method not in METHOD_PARAMS:
            return data
        hyper = data.get("hyperparameters")
        if hyper is None:
            hyper = {}
        if isinstance(hyper, HyperParameters):
            hyper = hyper.model_dump()
        if not isinstance(hyper, dict):
            return data
        params = hyper.get("method_params")
        if isinstance(params, BaseModel):
            params = params.model_dump()
        if params is None:
            params = {}
        if isinstance(params, dict):
            params = {**params, "method": method}
        hyper = {**hyper, "method_params": params}
        if hyper.get("weight_decay") is None:
            hyper["weight_decay"] = METHOD_PARAMS[method].default_weight_decay
        return {**data, "hyperparameters": hyper}

    @model_validator(mode="after")
    def _consistency(self) -> JobSpec:
        needs_teacher = METHOD_PARAMS[self.method].needs_teacher
        if needs_teacher and self.teacher is None:
            raise ValueError(
                f"teacher: method {self.method!r} distils from a teacher: give teacher.weights or teacher.id"
            )
        if not needs_teacher and self.teacher is not None:
            raise ValueError(f"teacher: method {self.method!r} trains without a teacher: remove 'teacher'")
        ds = self.dataset
        if ds.val_size and ds.train_subset and ds.val_size >= ds.train_subset:
            raise ValueError("dataset.val_size: must be smaller than dataset.train_subset")
        if self.evaluation.split == "val" and not ds.val_size:
            raise ValueError("evaluation.split: 'val' evaluates on held-out training images: set dataset.val_size")
        return self

    @property
    def params(self) -> MethodParamsBase:
        """The method's parameters, with defaults filled in."""
        p = self.hyperparameters.method_params
        assert p is not None  # always set by _tag_method_params
        return p

    def public_dict(self) -> dict[str, Any]:
        """The resolved specification as JSON-compatible data (every default written out)."""
        return self.model_dump(mode="json")

    def resolved(
        self,
        *,
        teacher_weights: str | Path | None = None,
        dataset_path: str | Path | None = None,
        data_root: str | Path | None = None,
        device: str | None = None,
        download: bool | None = None,
    ) -> JobSpec:
        """This job with its inputs resolved to what the process that runs it reads: a copy, checked.

        The HTTP service keeps a job as submitted, its teacher and a custom dataset named by their ids;
        the worker that runs it passes the files those ids stand for. Each argument given replaces the
        job's own value (references such as ``teacher.id`` are kept, for the report).

        Args:
            teacher_weights: the teacher's weights file.
            dataset_path: a custom dataset's ``.npz`` file or ImageFolder directory.
            data_root: where the built-in datasets are.
            device: the device to run on when the job says ``auto``.
            download: whether a missing built-in dataset may be downloaded.

        Raises:
            SpecError: an input is still only a reference (a teacher or custom dataset without a file),
                or a path was given for an input the job does not have.
        """
        errors: list[tuple[str, str]] = []
        teacher = self.teacher
        if teacher_weights is not None:
            if teacher is None:
                errors.append(("teacher", f"method {self.method!r} trains without a teacher"))
            else:
                teacher = teacher.model_copy(update={"weights": str(teacher_weights)})
        if teacher is not None and teacher.weights is None:
            errors.append(("teacher.weights", "a teacher id must be resolved to a weights file before the job runs"))
        changes: dict[str, Any] = {}
        if dataset_path is not None:
            changes["path"] = str(dataset_path)
        if data_root is not None:
            changes["root"] = str(data_root)
        if download is not None:
            changes["download"] = download
        dataset = self.dataset.model_copy(update=changes)
        if dataset_path is not None and dataset.name != "custom":
            errors.append(("dataset.path", f"{dataset.name!r} is read from root, not from a path"))
        if dataset.name == "custom" and dataset.path is None:
            errors.append(("dataset.path", "a custom dataset id must be resolved to its data before the job runs"))
        if errors:
            raise SpecError(errors)
        update: dict[str, Any] = {"teacher": teacher, "dataset": dataset}
        if device is not None and self.device == "auto":
            update["device"] = device
        return self.model_copy(update=update)


_MODELS_BUILT = True  # from here on, declare_method rebuilds the models that hold the union


def _rebuild_method_union() -> None:
    """Point ``hyperparameters.method_params`` at the union of the methods declared now.

    The union is fixed when pydantic builds a model, so a method declared after this module was
    imported (a test's toy method, say) needs the field replaced and the models that hold it rebuilt.
    """
    field = HyperParameters.model_fields["method_params"]
    HyperParameters.__pydantic_fields__["method_params"] = FieldInfo.from_annotated_attribute(
        _method_union() | None, FieldInfo.merge_field_infos(field)
    )
    HyperParameters.model_rebuild(force=True)
    JobSpec.model_rebuild(force=True)
    for model in _HOLDERS:
        model.model_rebuild(force=True)


_HOLDERS: list[type[BaseModel]] = []
M = TypeVar("M", bound=type[BaseModel])


def holds_job_spec(model: M) -> M:
    """Class decorator for a model elsewhere with a :class:`JobSpec` field (the service's job record):
    it is rebuilt with ``JobSpec`` whenever a method is declared or withdrawn, so that it accepts the
    same methods."""
    _HOLDERS.append(model)
    return model


# --------------------------------------------------------------------------------------------------
# Parsing user input into a JobSpec with readable errors
# --------------------------------------------------------------------------------------------------
def _model_fields_at(loc: tuple[Any, ...]) -> list[str] | None:
    """The field names of the model that holds ``loc`` (for 'unknown field' messages)."""
    model: Any = JobSpec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if part in METHOD_PARAMS:  # the tag of the method_params union
            model = METHOD_PARAMS[part]
            continue
        fields = getattr(model, "model_fields", None)
        field = fields.get(part) if isinstance(fields, dict) else None
        if field is None:
            return None
        ann = field.annotation
        nxt = None
        for cand in getattr(ann, "__args__", (ann,)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                nxt = cand
                break
        if part == "method_params":
            nxt = None  # resolved by the union tag that follows
        model = nxt if nxt is not None else model
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [n for n, f in model.model_fields.items() if not f.exclude]
    return None


_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_.]*): (.*)$", re.S)


def _format_errors(exc: ValidationError) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "union_tag_invalid":
            continue  # an unknown method is reported on 'method' itself
        shown = ".".join(str(p) for p in loc if p not in METHOD_PARAMS or p == loc[0])
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
            # Cross-field checks name their field as "field: message", relative to where they run.
            m = _FIELD_PREFIX.match(msg)
            if m:
                field, msg = m.group(1), m.group(2)
                top = field.split(".")[0]
                nested = bool(loc) or top not in JobSpec.model_fields
                shown = ".".join(p for p in (shown, field) if p) if nested else field
        if err["type"] == "extra_forbidden":
            fields = _model_fields_at(loc)
            msg = "unknown field" + (f"; valid fields: {', '.join(fields)}" if fields else "")
        elif "input" in err and err["type"] not in ("missing", "model_type", "dict_type", "value_error"):
            given = err["input"]
            if isinstance(given, str | int | float | bool) or given is None:
                msg = f"{msg} (got {json.dumps(given)})"
        out.append((shown, msg))
    return out or [("", str(exc))]


def parse_spec(data: dict[str, Any] | JobSpec) -> JobSpec:
    """Validate user input into a :class:`JobSpec`.

    Raises:
        SpecError: one entry per bad field, each naming the field and saying what is wrong.
    """
    if isinstance(data, JobSpec):
        return data
    if not isinstance(data, dict):
        raise SpecError([("", "a job specification is a JSON object")])
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_errors(exc)) from None


def parse_teacher(data: dict[str, Any]) -> TeacherSpec:
    """Validate a teacher on its own (``gacd evaluate``), with errors named as in a job: ``teacher.arch``.

    Raises:
        SpecError: one entry per bad field.
    """
    spec = parse_spec({"method": "kd", "teacher": data})
    assert spec.teacher is not None
    return spec.teacher


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML specification file (YAML through ``yaml.safe_load``, never a full loader)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([("spec", f"cannot read {p}: {exc.strerror or exc}")]) from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise SpecError([("spec", f"{p} is not valid {p.suffix.lstrip('.') or 'YAML'}: {exc}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError([("spec", f"{p} must hold a mapping at the top level")])
    return data


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted == 'a.b'``, creating mappings on the way."""
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
