"""The typed report: what ``report.json`` holds, section by section, as pydantic models. Torch-free.

:class:`Report` is the one definition of a report. A job builds one (:mod:`gacd_core.jobs`), writes
``report.json`` from it and renders ``report.html`` from it (:mod:`gacd_core.report_html`); readers
(the CLI, the benchmarks, the demo) load it with :meth:`Report.load`, which also migrates the layouts
written before the report was typed. Its JSON Schema is :func:`report_json_schema` (committed as
``docs/report.schema.json`` and served at ``GET /v1/schemas/report``).

Accuracies are fractions in [0, 1]. Every section and every value may be null where it was not
measured (no teacher, no training, an attack the protocol did not run). The per-attack accuracies of
:class:`Metrics` are those the catalog declares (:data:`gacd_core.catalog.ACCURACIES`): adding an
accuracy there adds its field here. Sections refuse keys they do not declare, so that a renamed key
fails loudly where it is written or read instead of silently leaving a section empty.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from gacd_core import catalog

SCHEMA = "gacd-report/1"  # the report family's name, in every report since the first
SCHEMA_VERSION = 1  # the typed layout; reports without ``schema_version`` are migrated on loading
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _is_none(value: Any) -> bool:
    return value is None


def optional_key(description: str) -> Any:
    """A field that is left out of the JSON when it is None (a key the report has only sometimes)."""
    return Field(None, exclude_if=_is_none, description=description)


class Section(BaseModel):
    """A part of the report: its keys are declared, anything else is refused."""

    model_config = ConfigDict(extra="forbid")

    def given(self) -> list[tuple[str, Any]]:
        """The fields this section was built or loaded with (name, value), in their declared order."""
        return [(name, getattr(self, name)) for name in type(self).model_fields if name in self.model_fields_set]


class Normalization(Section):
    """A model's input normalisation and where it came from."""

    name: str | None = Field(None, description="preset name (cifar10, imagenet, none) or custom")
    mean: list[float] | None = None
    std: list[float] | None = None
    source: str | None = Field(None, description="file, user, default, dataset or entry (a RobustBench entry's record)")
    origin: str | None = optional_key("where the values in the file came from, when known")


class NormalizationAlternative(Section):
    """The teacher's clean accuracy under another normalisation (the teacher check tries a few)."""

    name: str | None = None
    label: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    clean_acc: float | None = None


class TeacherCheckSection(Section):
    """What the teacher check measured before anything was trained (:mod:`gacd_core.teacher_check`)."""

    dataset: str | None = None
    num_classes: int | None = None
    verdict: Literal["fit", "unfit", "exempt"] | None = None
    normalization: Normalization | None = None
    clean_acc: float | None = None
    clean_subset: int | None = None
    pgd20_acc: float | None = None
    pgd20_subset: int | None = None
    pgd20_skipped: str | None = None
    chance: float | None = None
    threshold: float | None = Field(None, description="the clean accuracy below which a teacher is refused")
    subset: str | None = None
    alternatives: list[NormalizationAlternative] = Field(default_factory=list)
    better_normalization: NormalizationAlternative | None = None
    exempt_reason: str | None = None
    allowed_weak: bool | None = None
    message: str | None = None
    seconds: float | None = None


class ModelSection(Section):
    """What the student and the teacher have in common: architecture, size, classes, normalisation."""

    arch: str | None = None
    params: int | None = None
    macs: int | None = Field(None, description="multiply-accumulates per image")
    num_classes: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    normalization: Normalization | None = None
    source: str | None = optional_key(
        "where the architecture comes from: timm:<name>, torchvision:<name> or robustbench:<dataset>/<threat>/<entry> "
        "(absent: our registry)"
    )
    input_size: int | None = optional_key("the input side the model is built for (absent: any side)")
    resized_from: int | None = optional_key(
        "the side of the job's images, resized inside the model to input_size (bilinear, differentiable); "
        "attacks stay in the images' [0, 1] pixels"
    )
    licence: str | None = optional_key("the licence a RobustBench entry declares for its weights")
    licence_note: str | None = optional_key("where the licence is stated, or why none is known")
    non_commercial: bool | None = optional_key("the weights' licence forbids commercial use")


class StudentSection(ModelSection):
    """The model the job trained (or evaluated) and its weights file."""

    file: str | None = None
    sha256: str | None = None


class TeacherSection(ModelSection):
    """The teacher the student was distilled from (or compared with)."""

    check: TeacherCheckSection | None = None


class PreprocessingSection(Section):
    """The declared preprocessing (gacd_core.spec.Preprocessing, resolved): the training draw and the
    evaluation's resize and centre crop."""

    train: Literal["random_crop", "random_resized_crop", "none"] | None = None
    size: int | None = Field(None, description="the side of the training crop (the model's input)")
    padding: int | None = optional_key("random_crop: zero padding on each side")
    scale: list[float] | None = optional_key("random_resized_crop: (low, high) fraction of the area")
    ratio: list[float] | None = optional_key("random_resized_crop: (low, high) aspect ratio")
    flip: bool | None = None
    resize: int | None = Field(None, description="evaluation: the shorter side resized to this")
    center_crop: int | None = Field(None, description="evaluation: the centre crop's side")
    interpolation: str | None = None
    preset: str | None = Field(None, description="RobustBench's preset it came from (Res256Crop224, ...)")


class DatasetSection(Section):
    """The data: its classes, the sizes of its splits and which split the protocol ran on."""

    name: str | None = None
    num_classes: int | None = None
    class_names: list[str] = Field(default_factory=list)
    train_size: int | None = None
    test_size: int | None = Field(None, description="images the protocol ran on")
    val_size: int | None = None
    image_size: int | None = None
    source: str | None = None
    classes: list[int] | None = Field(None, description="the class subset, when the job chose one")
    evaluated_split: Literal["test", "val"] | None = None
    preprocessing: PreprocessingSection | None = None
    format: Literal["imagefolder", "shards"] | None = optional_key("a dataset read by reference: its layout")
    streamed: bool | None = optional_key("the training split was streamed from disk (imagefolder, shards)")


class AttackParams(Section):
    """One protocol attack's parameters (step sizes in pixel units of [0, 1])."""

    steps: int | None = None
    step_size: float | None = None
    random_start: bool | None = None
    kappa: float | None = optional_key("the CW margin's confidence")


class AutoAttackParams(Section):
    """How AutoAttack was run."""

    version: str | None = None
    attacks: list[str] = Field(default_factory=list)
    package: str | None = None
    n_iter: int | None = None
    n_target_classes: int | None = None
    square_queries: int | None = None


class Protocol(Section):
    """How the numbers were measured: threat model, attacks, images, precision and seed."""

    preset: str | None = Field(
        None, description="the protocol preset (cifar, imagenet), or custom where the evaluation departs from it"
    )
    eps: float | None = None
    eps_255: float | None = None
    norm: str | None = None
    attacks: list[str] = Field(default_factory=list)
    attack_params: dict[str, AttackParams | AutoAttackParams | None] = Field(
        default_factory=dict, description="per attack name; autoattack is null when it did not run"
    )
    split: Literal["test", "val"] | None = None
    test_size: int | None = None
    autoattack_size: int | None = None
    eps_sweep: list[float] | None = None
    precision: str | None = None
    tf32: bool | None = None
    seed: int | None = None

    def autoattack(self) -> AutoAttackParams | None:
        """How AutoAttack ran (None when it did not)."""
        params = self.attack_params.get("autoattack")
        return params if isinstance(params, AutoAttackParams) else None


class EpsPoint(Section):
    """The reference attack's accuracy at one radius."""

    eps: float | None = None
    acc: float | None = None


def _accuracy_fields() -> dict[str, Any]:
    return {
        a.key: (float | None, Field(None, description=f"{a.label} accuracy; null when not measured"))
        for a in catalog.ACCURACIES.values()
    }


# One field per accuracy of the catalog, in its order (clean, the attacks, AutoAttack). The type checker
# sees the base class and reads them through Metrics.accuracy(key).
if TYPE_CHECKING:
    _Accuracies = Section
else:
    _Accuracies = create_model("_Accuracies", __base__=Section, **_accuracy_fields())


class Metrics(_Accuracies):
    """One model's protocol figures: an accuracy per catalog entry, AutoAttack's breakdown, the
    per-class accuracies, the eps sweep and the evaluation's wall time."""

    autoattack_breakdown: dict[str, float | None] | None = Field(
        None, description="robust accuracy after each AutoAttack stage (and clean, on its subset)"
    )
    per_class: dict[str, list[float | None] | None] | None = Field(
        None, description="per accuracy name (clean and the reference attack): one value per class"
    )
    eps_sweep: list[EpsPoint] | None = None
    seconds: float | None = None

    def accuracy(self, key: str) -> float | None:
        """The accuracy a catalog key names (``pgd20_acc``); a key the catalog lacks is a KeyError."""
        if key not in catalog.ACCURACY_KEYS:
            raise KeyError(key)
        value: float | None = getattr(self, key)
        return value

    def accuracies(self) -> dict[str, float | None]:
        """Every accuracy, by its catalog key."""
        return {key: self.accuracy(key) for key in catalog.ACCURACY_KEYS}

    def after_stage(self, stage: str) -> float | None:
        """AutoAttack's robust accuracy after ``stage`` (``apgd-ce``...; ``clean`` on its subset)."""
        return (self.autoattack_breakdown or {}).get(stage)

    def class_accuracies(self, name: str) -> list[float | None]:
        """Per-class accuracy under ``name`` (``clean`` or an attack); empty when not measured."""
        return list((self.per_class or {}).get(name) or [])


class Agreement(Section):
    """How often student and teacher predict the same class."""

    clean: float | None = None
    adv: float | None = Field(None, description="on the student's reference-attack examples")


class Structure(Section):
    """How alike the student's and the teacher's representations are."""

    cka_clean: float | None = None
    cka_adv: float | None = None
    logit_corr_diff: float | None = None
    logit_corr_diff_adv: float | None = None
    adv_inputs: str | None = Field(None, description="which adversarial inputs the *_adv figures used")
    adv_images: int | None = optional_key("images the *_adv figures and the adversarial agreement were computed on")


class Compression(Section):
    """Sizes and measured throughput; ratios are teacher over student, speedup student over teacher."""

    student_params: int | None = None
    student_macs: int | None = None
    teacher_params: int | None = None
    teacher_macs: int | None = None
    params_ratio: float | None = None
    macs_ratio: float | None = None
    student_images_per_second: float | None = None
    teacher_images_per_second: float | None = None
    speedup: float | None = None
    device: str | None = None
    batch_size: int | None = None
    input_size: int | None = None
    precision: str | None = None


class FastPath(Section):
    """The arithmetic and memory format training ran in, and the probe's timings when it measured."""

    precision: str | None = None
    channels_last: bool | None = None
    seconds_per_step: dict[str, float] | None = optional_key("per candidate setting, when probed")
    reason: str | None = optional_key("why the setting was chosen, when probed")
    requested: str | None = None
    compile: bool | None = optional_key("whether the model was compiled")


class Epoch(Section):
    """One epoch of the training history."""

    epoch: int | None = None
    lr: float | None = None
    loss: float | None = None
    loss_parts: dict[str, float | None] = Field(default_factory=dict, description="per named loss term")
    train_acc: float | None = None
    val_clean_acc: float | None = optional_key("on held-out training images, when there are some")
    val_pgd_acc: float | None = optional_key("on held-out training images, when there are some")
    seconds: float | None = None
    images_per_second: float | None = None

    def loss_part(self, name: str) -> float | None:
        """The mean of one named loss term this epoch (None when the method has no such term)."""
        return self.loss_parts.get(name)


class Training(Section):
    """How the training went (training jobs only)."""

    epochs: int | None = None
    seconds: float | None = None
    images_per_second: float | None = None
    resumed_from_epoch: int | None = None
    fast_path: FastPath | None = None
    history: list[Epoch] = Field(default_factory=list)


class OnnxCheck(Section):
    """The ONNX export and its check against PyTorch on the evaluation images."""

    file: str | None = None
    opset: int | None = None
    images: int | None = None
    max_abs_diff: float | None = None
    agreement: float | None = None
    onnxruntime: str | None = None
    provider: str | None = None
    input: str | None = None
    normalization: str | None = None


class Export(Section):
    """What the job exported besides its weights."""

    onnx: OnnxCheck | None = None


class Environment(Section):
    """Where the report was made: versions, device, the commit of the code and the processes that ran it."""

    gacd_version: str | None = None
    git_commit: str | None = None
    torch: str | None = None
    torchvision: str | None = None
    cuda: str | None = None
    python: str | None = None
    platform: str | None = None
    device: str | None = None
    device_name: str | None = None
    world_size: int | None = optional_key("processes that ran the job (torch.distributed: one per GPU or CPU process)")
    sync_batchnorm: bool | None = optional_key(
        "whether the student trained with SyncBatchNorm over its processes (else batch norm per process)"
    )


Kind = Literal["train", "distill", "evaluate"]


class Report(Section):
    """A job's report (``report.json``): what it measured, with how and where it was measured."""

    model_config = ConfigDict(extra="forbid", title="Report", validate_by_name=True, validate_by_alias=True)

    schema_: str = Field(SCHEMA, alias="schema", description="the report family")
    schema_version: int = Field(SCHEMA_VERSION, description="the layout of this document")
    kind: Kind | None = None
    method: str | None = None
    created_at: str | None = Field(None, description="UTC, ISO 8601")
    spec: dict[str, Any] | None = Field(
        None, description="the resolved job specification (the API's JobCreate), every default written out"
    )
    student: StudentSection | None = None
    teacher: TeacherSection | None = None
    dataset: DatasetSection | None = None
    protocol: Protocol | None = None
    metrics: Metrics | None = None
    teacher_metrics: Metrics | None = None
    agreement: Agreement | None = None
    structure: Structure | None = None
    compression: Compression | None = None
    training: Training | None = None
    export: Export | None = None
    environment: Environment | None = None
    run_seconds: float | None = optional_key("wall time of the whole run, added by the benchmark scripts")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """A report from its JSON data, any layout since the first (older ones migrated)."""
        return cls.model_validate(migrate(data))

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """Read a ``report.json``, any layout since the first."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        """The JSON data of ``report.json`` (NaN and infinities as null)."""
        data: dict[str, Any] = _finite(self.model_dump(mode="json", by_alias=True))
        return data

    def to_json(self) -> str:
        """The text of ``report.json``."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older layout up to this one (a copy; the current layout is returned as it is).

    Reports written before ``schema_version`` existed differ only by missing keys, which load as null,
    and by the evaluated split, which they do not name: those evaluations always ran on the test split.
    """
    if "schema_version" in data:
        return data
    out = {**data, "schema_version": SCHEMA_VERSION}
    for section, key in (("protocol", "split"), ("dataset", "evaluated_split")):
        if isinstance(out.get(section), dict) and key not in out[section]:
            out[section] = {**out[section], key: "test"}
    return out


def _finite(obj: Any) -> Any:
    """JSON-safe numbers: NaN and infinities become None."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``report.json`` (draft 2020-12), as published in ``docs/report.schema.json``."""
    schema = Report.model_json_schema(by_alias=True)
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "Agreement",
    "Compression",
    "DatasetSection",
    "Environment",
    "Epoch",
    "Export",
    "FastPath",
    "Metrics",
    "OnnxCheck",
    "PreprocessingSection",
    "Protocol",
    "Report",
    "Structure",
    "StudentSection",
    "TeacherCheckSection",
    "TeacherSection",
    "Training",
    "migrate",
    "report_json_schema",
]
