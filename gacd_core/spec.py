"""The job specification: one pydantic model shared by the CLI, the worker and the HTTP API.

This module must stay importable without torch (the service imports it), so names are checked
against :mod:`gacd_core.catalog`, not against the torch registries.

A job is a ``JobSpec``: what to train (``method``), from what (``teacher``), into what (``student``),
on what (``dataset``), how (``hyperparameters``), how it is judged (``evaluation``), and where it runs
(``device``, ``precision``, ``seed``). Each method has its variant of ``JobSpec`` (:data:`JOB_SPECS`),
made from its parameters class (:mod:`gacd_core.method_params`): ``method`` is its name, a teacher is
required or refused as the method says, ``hyperparameters.method_params`` are its parameters and
``hyperparameters.weight_decay`` defaults to its own. :data:`AnyJobSpec` is their union, discriminated
by ``method`` (``gacd`` when absent).

Every closed set is a ``Literal`` of the catalog and every bound a constraint of its field, so that the
JSON Schema pydantic writes states them; a field's validator that runs *before* its type words the
refusal and names the field (``unknown model 'vgg99'; valid: ...``). ``parse_spec`` turns user input
(a dict, JSON or YAML) into a validated ``JobSpec`` or a :class:`~gacd_core.errors.SpecError` whose
messages name each bad field; ``strict=True`` refuses what a lax reading would convert (``"5"`` for 5),
as the HTTP API does.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import InitErrorDetails

from gacd_core import catalog
from gacd_core.errors import SpecError
from gacd_core.method_params import (  # the parameters classes are also named from the specification
    METHOD_PARAMS,
    ARDParams,  # noqa: F401
    ATParams,  # noqa: F401
    CRDParams,  # noqa: F401
    GACDParams,  # noqa: F401
    KDParams,  # noqa: F401
    MethodParamsBase,
    NaturalParams,  # noqa: F401
    RSLADParams,  # noqa: F401
    method_names,  # noqa: F401
)
from gacd_core.normalization import NormalizationError, NormalizationName
from gacd_core.normalization import resolve as resolve_normalization
from gacd_core.spec_types import Int, int_in, triple, unique_list

EPS_8 = 8 / 255


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _check_name(value: Any, valid: Collection[str], kind: str) -> Any:
    """``value`` if it is one of ``valid``; run before the field's ``Literal`` so that the refusal lists
    the choices. A value that is not a string is left to the type (it says what it expected)."""
    if isinstance(value, str) and value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")
    return value


def _positive(value: Any, what: str) -> Any:
    """Refuse a sequence of numbers with one at or below 0 (run before the type: the field is named)."""
    if isinstance(value, list | tuple) and any(_number(v) and v <= 0 for v in value):
        raise ValueError(f"every {what} must be > 0")
    return value


def _check_arch(value: Any) -> Any:
    """``value`` if it names an architecture (ours, ``timm:``, ``torchvision:`` or a covered
    ``robustbench:`` entry); the refusal names the valid choices (:func:`catalog.arch_refusal`)."""
    if isinstance(value, str):
        why = catalog.arch_refusal(value)
        if why is not None:
            raise ValueError(why)
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


RGB = tuple[float, float, float]
MAX_EPS_SWEEP = 32  # values in evaluation.eps_sweep
MAX_PROCESSES = 256  # resources.gpus, resources.processes
METADATA_KEYS, METADATA_KEY_LENGTH, METADATA_TEXT_LENGTH = 64, 64, 1024
# The closed sets (Literals of the catalog's names) and the value types that a plain annotation cannot
# state (spec_types says why), built at run time; the type checker reads the plain types they hold.
if TYPE_CHECKING:
    ModelName: TypeAlias = str
    DatasetName: TypeAlias = str
    AttackName: TypeAlias = str
    Triple: TypeAlias = RGB
    PositiveTriple: TypeAlias = RGB
    Count: TypeAlias = int
    ClassCount: TypeAlias = int
    ImageSide: TypeAlias = int
    ClassIndices: TypeAlias = list[int]
    Milestones: TypeAlias = list[float]
    EpsSweep: TypeAlias = list[float]
    Attacks: TypeAlias = list[str]
    ScalePair: TypeAlias = tuple[float, float]
    RatioPair: TypeAlias = tuple[float, float]
    LoaderWorkers: TypeAlias = int
    Processes: TypeAlias = int
else:
    ModelName = Literal[tuple(catalog.ARCHITECTURES)]
    DatasetName = Literal[tuple(catalog.DATASETS)]
    AttackName = Literal[tuple(catalog.EVAL_ATTACKS)]
    Triple = triple(float)
    PositiveTriple = triple(Annotated[float, Field(gt=0)])
    Count = int_in(ge=1)
    ClassCount = int_in(ge=2, le=100_000)
    ImageSide = int_in(ge=8, le=1024)
    ClassIndices = unique_list(int_in(ge=0))
    Milestones = unique_list(Annotated[float, Field(gt=0, lt=1)])
    EpsSweep = Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(max_length=MAX_EPS_SWEEP)]
    Attacks = unique_list(AttackName)
    LoaderWorkers = int_in(ge=0, le=64)
    Processes = int_in(ge=1, le=MAX_PROCESSES)
    _pair = BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)  # a JSON list is a pair
    ScalePair = Annotated[tuple[Annotated[float, Field(gt=0, le=1)], Annotated[float, Field(gt=0, le=1)]], _pair]
    RatioPair = Annotated[tuple[Annotated[float, Field(gt=0, le=10)], Annotated[float, Field(gt=0, le=10)]], _pair]


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
    arch: ModelName | None = None
    num_classes: ClassCount | None = None
    normalization: NormalizationName | None = Field(
        None,
        description="input normalisation preset: none (default for files without gacd metadata), cifar10, "
        "cifar100, imagenet",
    )
    mean: Triple | None = None
    std: PositiveTriple | None = None
    allow_weak: bool = Field(False, description="use the teacher even if its accuracy check finds it near chance")

    @field_validator("arch", mode="before")
    @classmethod
    def _arch(cls, v: Any) -> Any:
        return _check_arch(v)

    @field_validator("std", mode="before")
    @classmethod
    def _std(cls, v: Any) -> Any:
        return _positive(v, "std")

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

    arch: ModelName = "mobilenetv2"
    mean: Triple | None = Field(None, description="input normalisation; default: the dataset's statistics")
    std: PositiveTriple | None = None

    @field_validator("arch", mode="before")
    @classmethod
    def _arch(cls, v: Any) -> Any:
        return _check_arch(v)

    @field_validator("std", mode="before")
    @classmethod
    def _std(cls, v: Any) -> Any:
        return _positive(v, "std")


# --------------------------------------------------------------------------------------------------
# What: the dataset
# --------------------------------------------------------------------------------------------------
# RobustBench's preprocessing presets (robustbench/data.py PREPROCESSINGS): shorter side to 256, centre
# crop 224, bilinear or bicubic; training draws an Inception-style random resized crop at 224.
PREPROCESSING_PRESETS: dict[str, dict[str, Any]] = {
    "Res256Crop224": {
        "train": "random_resized_crop", "size": 224, "resize": 256, "center_crop": 224, "interpolation": "bilinear"
    },
    "BicubicRes256Crop224": {
        "train": "random_resized_crop", "size": 224, "resize": 256, "center_crop": 224, "interpolation": "bicubic"
    },
}


class Preprocessing(_Strict):
    """How images become the model's input, declared and recorded in the report.

    Training draws ``train`` at ``size``: ``random_crop`` (the image made ``size`` x ``size`` as the
    evaluation makes it, zero-padded by ``padding`` and cropped back at a random offset: the CIFAR
    augmentation) or ``random_resized_crop`` (a crop of ``scale`` of the area and aspect ratio in
    ``ratio``, resized to ``size``: Szegedy et al., 2015, "Going deeper with convolutions", sec. 6),
    each followed by a horizontal flip with p = 0.5 when ``flip``; ``none``: the evaluation's transform.
    Evaluation resizes the shorter side to ``resize`` and takes the centre ``center_crop`` (both default
    to ``size``). ``preset`` fills what is not given: RobustBench's ``Res256Crop224`` and
    ``BicubicRes256Crop224``. Streamed datasets apply all of it per image; in-memory ones (built-in,
    ``custom``) take the training transform on their stored images.
    """

    preset: Literal["Res256Crop224", "BicubicRes256Crop224"] | None = Field(
        None, description="RobustBench's preprocessing preset; given fields override it"
    )
    train: Literal["random_crop", "random_resized_crop", "none"] = "random_crop"
    size: ImageSide | None = Field(
        None, description="the side of the training crop; default: center_crop, else the images'"
    )
    padding: Int = Field(4, ge=0, le=128, description="random_crop: zero padding on each side")
    scale: ScalePair = Field((0.08, 1.0), description="random_resized_crop: (low, high) fraction of the area")
    ratio: RatioPair = Field((3 / 4, 4 / 3), description="random_resized_crop: (low, high) aspect ratio")
    flip: bool = Field(True, description="horizontal flip with p = 0.5 while training")
    resize: ImageSide | None = Field(None, description="evaluation: resize the shorter side to this")
    center_crop: ImageSide | None = Field(None, description="evaluation: the centre crop's side")
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("preset"), str) and data["preset"] in PREPROCESSING_PRESETS:
            return {**PREPROCESSING_PRESETS[data["preset"]], **data}
        return data

    @model_validator(mode="after")
    def _sizes(self) -> Preprocessing:
        if self.scale[0] > self.scale[1] or self.ratio[0] > self.ratio[1]:
            raise ValueError("scale: scale and ratio are (low, high) with low <= high")
        if self.size is not None and self.center_crop is not None and self.size != self.center_crop:
            raise ValueError(
                "size: the training crop and the evaluation's center_crop must be one side (one pixel space)"
            )
        if self.resize is not None and self.center_crop is not None and self.center_crop > self.resize:
            raise ValueError("center_crop: must not exceed resize")
        return self

    def side(self) -> int | None:
        """The side of the model's input (training and evaluation alike), when declared."""
        return self.size or self.center_crop


class DatasetSpec(_Strict):
    """Where the images come from and which of them a job uses.

    Subsets are deterministic and class-stratified, drawn with a fixed seed that does not depend on
    the job's seed, so that two jobs naming the same subset see the same images. ``imagefolder`` and
    ``shards`` name a folder under a data root (:mod:`gacd_core.datarefs`) and are streamed.
    """

    name: DatasetName = "cifar10"
    root: str | None = Field(None, description="data root; default $GACD_DATA_ROOT or ./data")
    path: str | None = Field(
        None,
        description="custom: an .npz file or an ImageFolder directory; imagefolder, shards: a folder relative "
        "to a data root (GACD_DATA_ROOTS)",
    )
    id: str | None = Field(None, description="custom datasets: a dataset id of the HTTP service")
    train_subset: Count | None = Field(None, description="use this many training images")
    test_subset: Count | None = Field(None, description="use this many test images")
    val_size: Int = Field(
        0, ge=0, description="hold this many training images out for per-epoch monitoring (never tuned on)"
    )
    classes: ClassIndices | None = Field(
        None, min_length=2, description="keep only these classes, relabelled 0..k-1 in this order"
    )
    image_size: ImageSide | None = Field(None, description="resize images to this side")
    download: bool = Field(False, description="download a built-in dataset when it is missing")
    on_device: bool = Field(False, description="keep the whole dataset on the GPU as uint8")
    augment: bool = Field(True, description="random crop (padding 4) and horizontal flip while training")
    preprocessing: Preprocessing | None = Field(
        None, description="the declared training and evaluation transforms (default: the CIFAR augmentation)"
    )
    workers: LoaderWorkers | None = Field(
        None, description="imagefolder, shards: data-loader processes (default: up to 8, one per core)"
    )

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, v: Any) -> Any:
        return _check_name(v, catalog.DATASETS, "dataset")

    @field_validator("classes", mode="before")
    @classmethod
    def _classes(cls, v: Any) -> Any:
        if isinstance(v, list) and all(_number(c) for c in v):
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
        elif self.name in catalog.STREAMED:
            if self.path is None:
                raise ValueError(f"path: {self.name} names a folder relative to a data root (GACD_DATA_ROOTS)")
            if self.id is not None:
                raise ValueError(f"id: {self.name} is named by its path, not an id")
        elif self.path is not None or self.id is not None:
            raise ValueError(f"path: path and id are for custom datasets; {self.name!r} is read from root")
        return self


# --------------------------------------------------------------------------------------------------
# How: hyperparameters, with per-method parameters
# --------------------------------------------------------------------------------------------------
class TrainAttackSpec(_Strict):
    """The inner adversary of robust methods: L-inf PGD."""

    eps: float = Field(EPS_8, ge=0, le=1)
    steps: Int = Field(10, ge=1, le=1000)
    step_size: float = Field(2 / 255, gt=0, le=1)
    random_start: bool = True


class HyperParameters(_Strict):
    """The optimisation: one trainer serves every method.

    A job's hyperparameters are those of its method's variant (:func:`job_spec_of`): there
    ``method_params`` are the method's parameters (null or omitted: its defaults) and ``weight_decay``
    defaults to the method's own.
    """

    epochs: Int = Field(100, ge=1, le=10_000)
    batch_size: Int = Field(128, ge=1, le=65_536)
    optimizer: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0, le=100)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(MethodParamsBase.weight_decay, ge=0, le=1, description="SGD weight decay")
    schedule: Literal["piecewise", "cosine", "constant"] = "piecewise"
    milestones: Milestones = Field(
        default_factory=lambda: [0.5, 0.75], description="piecewise: fractions of training, x gamma"
    )
    gamma: float = Field(0.1, gt=0, le=1)
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up of the learning rate")
    attack: TrainAttackSpec = Field(default_factory=TrainAttackSpec)
    method_params: MethodParamsBase | None = Field(
        None, description="parameters of the chosen method; omitted ones take the method's defaults"
    )

    @field_validator("milestones", mode="before")
    @classmethod
    def _milestones(cls, v: Any) -> Any:
        if not (isinstance(v, list) and all(_number(m) for m in v)):
            return v
        if any(not 0 < m < 1 for m in v):
            raise ValueError("milestones are fractions of training, each strictly between 0 and 1")
        if sorted(set(v)) != v:
            raise ValueError("milestones must be strictly increasing")
        return v

    @field_validator("method_params", mode="after")
    @classmethod
    def _method_defaults(cls, v: MethodParamsBase | None) -> MethodParamsBase | None:
        factory = cls.model_fields["method_params"].default_factory
        return factory() if v is None and factory is not None else v  # type: ignore[call-arg]

    @model_validator(mode="after")
    def _warmup(self) -> HyperParameters:
        if self.warmup_epochs >= self.epochs:
            raise ValueError("warmup_epochs: must be smaller than epochs")
        return self


# --------------------------------------------------------------------------------------------------
# Judged how: the evaluation protocol
# --------------------------------------------------------------------------------------------------
DEFAULT_EPS_SWEEP = [0.0, 2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255]


# The protocol presets: what each fills in when the evaluation does not say. ``cifar``: GACD.md's CIFAR
# protocol (eps 8/255). ``imagenet``: RobustBench's ImageNet L-inf protocol (eps 4/255, standard AutoAttack
# on 5,000 validation images: Croce et al., 2021, "RobustBench", sec. 3); PGD-20 and CW keep the eps/4
# step rule, 1/255 at 4/255, as 2/255 at 8/255.
PROTOCOL_PRESETS: dict[str, dict[str, Any]] = {
    "cifar": {"eps": EPS_8},
    "imagenet": {"eps": 4 / 255, "subset": 5000, "autoattack": True, "autoattack_subset": 5000},
}


class EvaluationSpec(_Strict):
    """The fixed protocol of GACD.md: clean, FGSM, PGD-20, CW-inf and, when asked, AutoAttack.

    Step sizes scale with ``eps`` (eps/4 for PGD-20 and CW, eps for FGSM), which gives exactly the
    protocol's 2/255 at eps = 8/255. Evaluation always runs in fp32. ``preset`` fills the fields it
    names (:data:`PROTOCOL_PRESETS`) where they are not given; the report names the preset, or
    ``custom`` where a given value departs from it.
    """

    preset: Literal["cifar", "imagenet"] = Field(
        "cifar", description="cifar: eps 8/255; imagenet: eps 4/255, AutoAttack on 5000 images (RobustBench)"
    )
    eps: float = Field(EPS_8, gt=0, le=1)
    split: Literal["test", "val"] = Field(
        "test",
        description="test: the test split (reports); val: the images held out of training by dataset.val_size, "
        "for choosing hyperparameters without looking at the test split",
    )
    attacks: Attacks = Field(default_factory=lambda: list(catalog.EVAL_ATTACKS))
    subset: Count | None = Field(None, description="evaluate on this many test images")
    autoattack: bool = False
    autoattack_subset: Count | None = Field(1000, description="AutoAttack on this many test images")
    eps_sweep: EpsSweep = Field(default_factory=lambda: list(DEFAULT_EPS_SWEEP))
    batch_size: Int = Field(256, ge=1, le=65_536)
    teacher: bool = Field(True, description="also evaluate the teacher under the same protocol")
    throughput: bool = Field(True, description="measure inference throughput of teacher and student")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("preset"), str) and data["preset"] in PROTOCOL_PRESETS:
            return {**PROTOCOL_PRESETS[data["preset"]], **data}
        return data

    def preset_name(self) -> str:
        """The preset, or ``custom`` where a value of the evaluation departs from it."""
        given = PROTOCOL_PRESETS[self.preset]
        return self.preset if all(getattr(self, k) == v for k, v in given.items()) else "custom"

    @field_validator("attacks", mode="before")
    @classmethod
    def _attacks(cls, v: Any) -> Any:
        if isinstance(v, list) and all(isinstance(name, str) for name in v):
            for name in v:
                _check_name(name, catalog.EVAL_ATTACKS, "evaluation attack")
            if len(set(v)) != len(v):
                raise ValueError("attacks must not repeat")
        return v

    @field_validator("eps_sweep", mode="before")
    @classmethod
    def _sweep_bounds(cls, v: Any) -> Any:
        if isinstance(v, list) and all(_number(e) for e in v):
            if len(v) > MAX_EPS_SWEEP:
                raise ValueError(f"at most {MAX_EPS_SWEEP} eps values")
            if any(not 0 <= e <= 1 for e in v):
                raise ValueError("each eps must be in [0, 1]")
        return v

    @field_validator("eps_sweep", mode="after")
    @classmethod
    def _sweep(cls, v: list[float]) -> list[float]:
        return sorted(set(v))


# --------------------------------------------------------------------------------------------------
# Where: the processes of one job
# --------------------------------------------------------------------------------------------------
class ResourcesSpec(_Strict):
    """How many processes train one job: one (the default), or several started by torchrun
    (``gacd train --gpus N`` / ``--processes N``), one per CUDA device (``gpus``, NCCL) or on the CPU
    (``processes``, gloo: for tests, and for servers with several CPU sockets).

    The global batch is ``hyperparameters.batch_size`` whatever the count (it must divide by it); each
    process trains on its slice, and the result is that of one process on the whole batch but for
    batch norm, which normalises each process's slice on its own unless ``sync_batchnorm`` (CUDA
    only). A job resumes exactly at the world size it was trained at; at another it resumes, not bit
    for bit. docs/deployment.md says what runs where.
    """

    gpus: Processes | None = Field(None, description="CUDA devices, one process each (NCCL); default 1")
    processes: Processes | None = Field(None, description="CPU processes (gloo), instead of gpus")
    sync_batchnorm: bool = Field(
        False, description="SyncBatchNorm across the GPUs' processes (CUDA only); default: batch norm per process"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ResourcesSpec:
        if self.gpus is not None and self.processes is not None:
            raise ValueError("processes: give gpus (CUDA, NCCL) or processes (CPU, gloo), not both")
        return self

    @property
    def world_size(self) -> int:
        """The number of processes that train the job."""
        return self.gpus or self.processes or 1

    def errors_with(self, device: str, batch_size: int) -> list[tuple[str, str]]:
        """What the job's ``device`` and ``hyperparameters.batch_size`` rule out of these resources."""
        n, errors = self.world_size, []
        if batch_size % n:
            errors.append(
                (
                    "hyperparameters.batch_size",
                    f"the global batch of {batch_size} does not split evenly over {n} processes "
                    f"(resources); give a multiple of {n}",
                )
            )
        if self.processes is not None and device not in ("auto", "cpu"):
            errors.append(("resources.processes", f"CPU processes run on the CPU, not {device}: use resources.gpus"))
        if (self.gpus or 1) > 1 and device not in ("auto", "cuda"):
            why = f"each process runs on cuda:LOCAL_RANK; device must be auto or cuda, not {device}"
            errors.append(("resources.gpus", why))
        if self.sync_batchnorm and (self.processes is not None or device == "cpu"):
            why = "SyncBatchNorm needs CUDA processes (NCCL); on the CPU batch norm runs per process"
            errors.append(("resources.sync_batchnorm", why))
        return errors


# --------------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------------
# The devices a job may name: one of DEVICES, or ``cuda:N`` for the N-th CUDA device (ASCII digits).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
INDEXED_DEVICE = re.compile(r"cuda:[0-9]+")
MetadataValue = str | int | float | bool | None
DEFAULT_METHOD = "gacd"  # a job that names no method
if TYPE_CHECKING:
    Device: TypeAlias = str
    Metadata: TypeAlias = dict[str, MetadataValue]
else:
    Device = Literal[DEVICES] | Annotated[str, Field(pattern=f"^{INDEXED_DEVICE.pattern}$")]
    # a metadata value is a plain str to pydantic (its errors name the union's members as str, int, ...);
    # its length is the field validator's, stated here for the schema
    _MetadataText = Annotated[str, WithJsonSchema({"type": "string", "maxLength": METADATA_TEXT_LENGTH})]
    Metadata = Annotated[
        dict[
            Annotated[str, StringConstraints(max_length=METADATA_KEY_LENGTH)],
            _MetadataText | int | float | bool | None,
        ],
        Field(max_length=METADATA_KEYS),
    ]


class JobSpec(_Strict):
    """One training job: the same object for the CLI, the worker and the HTTP API.

    What every job has. A job is always one of the method variants of :data:`JOB_SPECS` (their
    ``params_class`` says which); :func:`parse_spec` and :data:`AnyJobSpec` choose it by ``method``.
    """

    params_class: ClassVar[type[MethodParamsBase] | None] = None  # set on each method's variant

    method: str = DEFAULT_METHOD
    teacher: TeacherSpec | None = None
    student: StudentSpec = Field(default_factory=StudentSpec)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    hyperparameters: HyperParameters = Field(default_factory=HyperParameters)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    seed: Int = Field(0, ge=0, le=2**31 - 1)
    device: Device = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
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
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="the processes that train the job: one, or one per GPU"
    )
    metadata: Metadata = Field(default_factory=dict, description="free-form labels")

    @model_validator(mode="before")
    @classmethod
    def _teacher_as_the_method_needs(cls, data: Any) -> Any:
        # the variant's type of `teacher` states the rule (required, or null); this says it in words
        method = cls.params_class
        if method is None or not isinstance(data, dict):
            return data
        given = data.get("teacher") is not None
        if method.needs_teacher and not given:
            raise ValueError(
                f"teacher: method {method.name!r} distils from a teacher: give teacher.weights or teacher.id"
            )
        if not method.needs_teacher and given:
            raise ValueError(f"teacher: method {method.name!r} trains without a teacher: remove 'teacher'")
        return data

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, v: Any) -> Any:
        if isinstance(v, str) and v not in DEVICES and not INDEXED_DEVICE.fullmatch(v):
            raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")
        return v

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        if len(v) > METADATA_KEYS:
            raise ValueError(f"at most {METADATA_KEYS} metadata keys")
        for key, val in v.items():
            if (isinstance(key, str) and len(key) > METADATA_KEY_LENGTH) or (
                isinstance(val, str) and len(val) > METADATA_TEXT_LENGTH
            ):
                raise ValueError(
                    f"metadata keys are at most {METADATA_KEY_LENGTH} characters, values at most {METADATA_TEXT_LENGTH}"
                )
            if isinstance(val, float) and not math.isfinite(val):
                raise ValueError("metadata numbers must be finite")
        return v

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _hyperparameters_given_whole(cls, v: Any) -> Any:
        # HyperParameters built elsewhere (another method's, or the base class): what was set in it,
        # read again as this method's, so that what was not set takes this method's defaults
        if isinstance(v, HyperParameters) and type(v) is not cls.model_fields["hyperparameters"].annotation:
            return v.model_dump(exclude_unset=True)
        return v

    @model_validator(mode="after")
    def _consistency(self) -> JobSpec:
        ds = self.dataset
        if ds.val_size and ds.train_subset and ds.val_size >= ds.train_subset:
            raise ValueError("dataset.val_size: must be smaller than dataset.train_subset")
        if self.evaluation.split == "val" and not ds.val_size:
            raise ValueError("evaluation.split: 'val' evaluates on held-out training images: set dataset.val_size")
        for field, message in self.resources.errors_with(self.device, self.hyperparameters.batch_size):
            raise ValueError(f"{field}: {message}")
        return self

    @property
    def params(self) -> MethodParamsBase:
        """The method's parameters, with defaults filled in."""
        p = self.hyperparameters.method_params
        assert p is not None  # a method's variant always fills them in
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
            dataset_path: a custom dataset's ``.npz`` file or ImageFolder directory; the real folder an
                ``imagefolder`` or ``shards`` reference names under the data roots.
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
        if dataset_path is not None and dataset.name != "custom" and dataset.name not in catalog.STREAMED:
            errors.append(("dataset.path", f"{dataset.name!r} is read from root, not from a path"))
        if dataset.name == "custom" and dataset.path is None:
            errors.append(("dataset.path", "a custom dataset id must be resolved to its data before the job runs"))
        if errors:
            raise SpecError(errors)
        update: dict[str, Any] = {"teacher": teacher, "dataset": dataset}
        if device is not None and self.device == "auto":
            update["device"] = device
        return self.model_copy(update=update)


# --------------------------------------------------------------------------------------------------
# One variant of the job per method, and their union
# --------------------------------------------------------------------------------------------------
def _stem(params: type[MethodParamsBase]) -> str:
    return params.__name__.removesuffix("Params")


def hyperparameters_of(params: type[MethodParamsBase]) -> type[HyperParameters]:
    """The hyperparameters of a job of ``params``' method: its parameters, its weight decay."""
    return create_model(
        f"{_stem(params)}HyperParameters",
        __base__=HyperParameters,
        __module__=__name__,
        __doc__=f"The optimisation of a {params.name} job, with the method's parameters.",
        weight_decay=(
            float,
            Field(params.weight_decay, ge=0, le=1, description=f"SGD weight decay; {params.name}'s default"),
        ),
        method_params=(  # type: ignore[arg-type]  # the union of a variable
            Union[params, None],  # noqa: UP007
            Field(
                default_factory=params,
                description=f"the parameters of {params.name} ({params.__name__}); omitted ones take its "
                "defaults, and so does null",
            ),
        ),
    )


def job_spec_of(params: type[MethodParamsBase]) -> type[JobSpec]:
    """The variant of :class:`JobSpec` for ``params``' method: ``method`` is its name (the union's tag),
    ``teacher`` required or refused as it says, ``hyperparameters`` its own."""
    hyper = hyperparameters_of(params)
    description = f"the training method: {params.name} ({params.description})"
    method = (
        Field(params.name, description=description) if params.name == DEFAULT_METHOD else Field(description=description)
    )
    teacher: tuple[Any, Any] = (
        (TeacherSpec, Field(description=f"the teacher {params.name} distils from"))
        if params.needs_teacher
        else (None, Field(None, description=f"{params.name} trains without a teacher"))
    )
    model = create_model(
        f"{_stem(params)}Job",
        __base__=JobSpec,
        __module__=__name__,
        __doc__=f"A {params.name} job: {params.description}.",
        method=(Literal[params.name], method),  # type: ignore[arg-type]  # a one-name Literal of a variable
        teacher=teacher,
        hyperparameters=(hyper, Field(default_factory=hyper)),
    )
    model.params_class = params
    return model


def _default_method(data: Any) -> Any:
    if isinstance(data, dict) and "method" not in data:
        return {**data, "method": DEFAULT_METHOD}
    return data


def _fields_of_the_job(tags: Collection[str]) -> WrapValidator:
    """Errors located at the job's fields (``hyperparameters.epochs``), as users write them, not under
    the union's tag (``kd.hyperparameters.epochs``): the variant is the method they named."""

    def untagged(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            errors: list[InitErrorDetails] = []
            for err in exc.errors():
                loc = err["loc"][1:] if err["loc"] and err["loc"][0] in tags else err["loc"]
                detail = InitErrorDetails(type=err["type"], loc=loc, input=err["input"])
                if "ctx" in err:
                    detail["ctx"] = err["ctx"]
                errors.append(detail)
            raise ValidationError.from_exception_data(exc.title, errors) from None

    return WrapValidator(untagged)


class JobParser:
    """Validation of user input into one of ``variants``, a union discriminated by ``method``, with
    errors that name each bad field. Built for :data:`JOB_SPECS` here and for the HTTP API's variants
    (:mod:`service.api.contract`).

    Attributes:
        variants: the job variant of each method, by name.
        type: their union, ``gacd`` when the input names no method: a field type (``JobRecord.spec``).
        adapter: the union's validator; ``adapter.json_schema()`` is its JSON Schema.
    """

    def __init__(self, variants: dict[str, type[JobSpec]], **field: Any) -> None:
        self.variants = variants
        self.type: Any = Annotated[
            Union[tuple(variants.values())],  # noqa: UP007  (built from a tuple)
            Field(discriminator="method", **field),
            _fields_of_the_job(variants),
            BeforeValidator(_default_method),
        ]
        self.adapter: TypeAdapter[Any] = TypeAdapter(self.type)  # type: ignore[arg-type]  # built at run time

    def parse(self, data: Any, *, strict: bool = False) -> JobSpec:
        """Validate ``data``; ``strict``: refuse what a lax reading converts (``"5"``, ``1`` for true).

        Raises:
            SpecError: one entry per bad field, each naming the field and saying what is wrong.
        """
        if not isinstance(data, dict):
            raise SpecError([("", "a job specification is a JSON object")])
        try:
            spec: JobSpec = self.adapter.validate_python(data, strict=strict)
        except ValidationError as exc:
            method = data.get("method", DEFAULT_METHOD)
            variant = self.variants.get(method, JobSpec) if isinstance(method, str) else JobSpec
            raise SpecError(_format_errors(exc, variant, list(self.variants))) from None
        return spec


JOB_SPECS: dict[str, type[JobSpec]] = {name: job_spec_of(params) for name, params in METHOD_PARAMS.items()}
JOBS = JobParser(JOB_SPECS)
if TYPE_CHECKING:
    AnyJobSpec: TypeAlias = JobSpec
else:  # the type of a field that holds a job of any method (the service's job record)
    AnyJobSpec = JOBS.type


# --------------------------------------------------------------------------------------------------
# Parsing user input into a JobSpec with readable errors
# --------------------------------------------------------------------------------------------------
def _shown_fields(model: type[BaseModel]) -> list[str]:
    """The fields a user may give (those left out of the JSON Schema are not offered)."""
    hidden = hidden_fields(model)
    return [n for n in model.model_fields if n not in hidden]


def hidden_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``model`` left out of its JSON Schema (typed ``SkipJsonSchema[...]``): a client
    never sees them (the HTTP API's teacher ``weights``, say)."""
    return tuple(
        name
        for name, f in model.model_fields.items()
        if any(isinstance(m, SkipJsonSchema) for m in f.metadata)  # type: ignore[misc]
    )


def _model_fields_at(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The field names of the model that holds ``loc`` under ``root`` (for 'unknown field' messages)."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
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
        model = nxt if nxt is not None else model
    if isinstance(model, type) and issubclass(model, BaseModel):
        return _shown_fields(model)
    return None


_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_.]*): (.*)$", re.S)


def _format_errors(exc: ValidationError, root: type[BaseModel], methods: list[str]) -> list[tuple[str, str]]:
    """``(field, message)`` for each error of a job of the variant ``root`` (of the ``methods``)."""
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "union_tag_invalid":
            given = err["input"].get("method") if isinstance(err["input"], dict) else None
            out.append(("method", f"unknown method {given!r}; valid: {', '.join(methods)}"))
            continue
        shown = ".".join(str(p) for p in loc)
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
            fields = _model_fields_at(root, loc)
            msg = "unknown field" + (f"; valid fields: {', '.join(fields)}" if fields else "")
        elif "input" in err and err["type"] not in ("missing", "model_type", "dict_type", "value_error"):
            given = err["input"]
            if isinstance(given, str | int | float | bool) or given is None:
                msg = f"{msg} (got {json.dumps(given)})"
        out.append((shown, msg))
    return out or [("", str(exc))]


def parse_spec(data: dict[str, Any] | JobSpec, *, strict: bool = False) -> JobSpec:
    """Validate user input into the :class:`JobSpec` variant of its method.

    Args:
        data: the specification (a dict, as JSON or YAML give it), or a job already validated.
        strict: refuse what a lax reading converts (``"5"`` for 5, ``1`` for true); the CLI reads
            YAML and ``--set`` text laxly.

    Raises:
        SpecError: one entry per bad field, each naming the field and saying what is wrong.
    """
    if isinstance(data, JobSpec):
        return data
    return JOBS.parse(data, strict=strict)


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
