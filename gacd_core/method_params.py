"""The training methods, declared by their parameters: one plain pydantic class per method. Torch-free.

A method's parameters class holds everything the rest of the house says about the method: its public
name (``name``), how reports call it (``label``), its line in ``gacd list`` (``description``), whether a
job of it distils from a teacher (``needs_teacher``), the SGD weight decay its jobs get when
``hyperparameters.weight_decay`` is not given (``weight_decay``), and its parameters with their
defaults, as pydantic fields. :data:`MethodParams` lists the classes: the job specification
(:mod:`gacd_core.spec`) makes one job variant per class, a discriminated union on ``method``, and the
catalog, the CLI, the reports and the registry of implementations (:mod:`gacd_core.methods`) take
every list of names from it.

Adding a method (docs/extending.md): its class here, named in :data:`MethodParams`, and its
implementation file in :mod:`gacd_core.methods`.
"""

from __future__ import annotations

import typing
from typing import Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gacd_core.spec_types import Int

DEFAULT_WEIGHT_DECAY = 5e-4


class MethodParamsBase(BaseModel):
    """The parameters of a training method, and its declaration.

    Attributes:
        name: the method's public name (``method`` in a job), the key of its implementation.
        label: how reports name the method ("GACD", "natural training").
        description: one line for ``gacd list``.
        needs_teacher: whether a job of this method distils from a teacher (and must name one).
        weight_decay: the SGD weight decay a job of this method gets when
            ``hyperparameters.weight_decay`` is not given.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    needs_teacher: ClassVar[bool]
    weight_decay: ClassVar[float] = DEFAULT_WEIGHT_DECAY

    @model_validator(mode="before")
    @classmethod
    def _method_is_the_jobs(cls, data: Any) -> Any:
        # the method is named once, by the job's `method`; its parameters do not repeat it
        if isinstance(data, dict) and "method" in data:
            raise ValueError(f"the method is the job's 'method', not one of its parameters (valid: {_fields(cls)})")
        return data

    def cross_task_errors(self, cross_task: bool) -> list[tuple[str, str]]:
        """What these parameters ask that a teacher of another label set cannot give: ``(field, message)``
        pairs, none when ``cross_task`` is false. The specification checks them when a job says
        ``cross_task: true``, the method's implementation when the class counts differ."""
        del cross_task
        return []


def _fields(cls: type[BaseModel]) -> str:
    return ", ".join(cls.model_fields) or "none"


class NaturalParams(MethodParamsBase):
    name = "natural"
    label = "natural training"
    description = "standard training on clean data (no teacher)"
    needs_teacher = False


class ATParams(MethodParamsBase):
    name = "at"
    label = "AT"
    description = "PGD adversarial training (Madry et al. 2018): cross-entropy on PGD examples (no teacher)"
    needs_teacher = False


class KDParams(MethodParamsBase):
    """Hinton et al. 2015: alpha * tau^2 * KL(T(x)/tau || S(x)/tau) + (1 - alpha) * CE(S(x), y)."""

    name = "kd"
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


class ARDParams(MethodParamsBase):
    """Goldblum et al. 2020: alpha * tau^2 * KL(T(x)/tau || S(x')/tau) + (1 - alpha) * CE(S(x), y).

    The defaults are those of the authors' code (github.com/goldblum/AdversariallyRobustDistillation,
    ``main.py``): tau = 30, alpha = 1, ``nn.KLDivLoss()`` (mean over batch x classes) and SGD weight
    decay 2e-4. With alpha = 1 the loss is GACD.md's ``tau^2 * KL(T(x)/tau || S(x')/tau)``.
    """

    name = "ard"
    label = "ARD"
    description = "Adversarially Robust Distillation (Goldblum et al. 2020): KL to the teacher on student PGD examples"
    needs_teacher = True
    weight_decay = 2e-4
    temperature: float = Field(30.0, gt=0, le=100)
    alpha: float = Field(1.0, ge=0, le=1)
    kl_reduction: KLReduction = Field("mean", description=_KL_REDUCTION)


class RSLADParams(MethodParamsBase):
    """Zi et al. 2021: adv_weight * KL(T(x) || S(x')) + clean_weight * KL(T(x) || S(x)).

    The defaults are those of the authors' code (github.com/zibojia/RSLAD, ``resnet18_rslad_cifar10.py``):
    weights 5/6 and 1/6, no temperature, the KL terms averaged over batch x classes (``torch.mean``)
    and SGD weight decay 2e-4.
    """

    name = "rslad"
    label = "RSLAD"
    description = "Robust Soft Label Adversarial Distillation (Zi et al. 2021)"
    needs_teacher = True
    weight_decay = 2e-4
    kl_reduction: KLReduction = Field("mean", description=_KL_REDUCTION)
    adv_weight: float = Field(5 / 6, ge=0, le=10)
    clean_weight: float = Field(1 / 6, ge=0, le=10)


class TRADESParams(MethodParamsBase):
    """Zhang et al. 2019 (ICML), Eq. 5: CE(S(x), y) + beta * KL(S(x) || S(x')), x' maximising KL(S(x) || S(x')).

    The defaults are those of the authors' code (github.com/yaodongyu/TRADES, ``train_trades_cifar10.py``
    and ``trades.py``): beta = 6, the robust KL summed over classes and averaged over the batch
    (``(1/B) * KLDivLoss(size_average=False)``, that is ``batchmean``), SGD weight decay 2e-4.
    """

    name = "trades"
    label = "TRADES"
    description = "TRADES (Zhang et al. 2019): clean CE + beta x KL(S(x) || S(x')), x' from PGD on that KL (no teacher)"
    needs_teacher = False
    weight_decay = 2e-4
    beta: float = Field(6.0, ge=0, le=100, description="weight of the robust KL term (1/lambda in the paper)")


class IADParams(MethodParamsBase):
    """Zhu et al. 2022 (ICLR), IAD-I: ARD whose teacher term is trusted by the teacher's confidence on the
    student's adversarial example, the rest given to the student's own clean prediction (docs/method.md).

    The defaults are those of the authors' code (github.com/ZFancy/IAD, ``IAD-I.py``): beta = 0.1,
    tau = 1, alpha = 1, the introspection switched on after 60 of 200 epochs (``warmup_fraction`` 0.3),
    SGD weight decay 2e-4.
    """

    name = "iad"
    label = "IAD"
    description = "Introspective Adversarial Distillation, IAD-I (Zhu et al. 2022): ARD that trusts a confident teacher"
    needs_teacher = True
    weight_decay = 2e-4
    beta: float = Field(0.1, ge=0, le=10, description="exponent of the teacher's confidence P_T(y | x')^beta")
    temperature: float = Field(1.0, gt=0, le=100)
    alpha: float = Field(1.0, ge=0, le=1, description="weight of the distillation terms; 1 - alpha on the clean CE")
    warmup_fraction: float = Field(
        0.3, ge=0, le=1, description="plain ARD for this fraction of the epochs, then IAD (the authors' 60 of 200)"
    )
    weight_teacher_term: Literal["confidence", "one"] = Field(
        "confidence",
        description="confidence: the teacher's KL weighted by P_T^beta (the paper's Eq.); one: unweighted (the "
        "authors' code)",
    )


class _ContrastiveParams(MethodParamsBase):
    """Shared by ``crd`` and ``gacd``: projection heads, critic and negatives (docs/method.md)."""

    feat_dim: Int = Field(128, ge=2, le=4096, description="projection dimension d")
    nce_temperature: float = Field(0.07, gt=0, le=10, description="critic temperature tau")
    negatives: Literal["memory", "in_batch"] = "memory"
    n_negatives: Int = Field(16384, ge=1, le=1_000_000, description="N, capped by the data available")
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

    def cross_task_errors(self, cross_task: bool) -> list[tuple[str, str]]:
        """Across tasks the KD term compares outputs class by class: it is undefined there."""
        if cross_task and self.lambda_kd > 0:
            return [("lambda_kd", "must be 0 when teacher and student label sets differ")]
        return []

    @model_validator(mode="after")
    def _one_label_set(self) -> _ContrastiveParams:
        for field, message in self.cross_task_errors(bool(self.cross_task)):
            raise ValueError(f"{field}: {message}")
        return self


class CRDParams(_ContrastiveParams):
    name = "crd"
    label = "CRD"
    description = "Contrastive Representation Distillation on clean data (Tian et al. 2020; non-robust)"
    needs_teacher = True


class GACDParams(_ContrastiveParams):
    name = "gacd"
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

    def cross_task_errors(self, cross_task: bool) -> list[tuple[str, str]]:
        """Across tasks, besides the KD term, hard reweighting: it asks whether the teacher is right."""
        errors = super().cross_task_errors(cross_task)
        if cross_task and self.reweight == "hard":
            errors.append(("reweight", "'hard' needs the teacher's labels; use 'soft' or 'none' across tasks"))
        return errors

    @model_validator(mode="after")
    def _ce_attack(self) -> GACDParams:
        if self.attack == "ce" and self.attack_ce_weight > 0:
            raise ValueError("attack_ce_weight: mixes CE into the guided attack; with attack 'ce' leave it at 0")
        return self


# Every method, in the order `gacd list` shows them. Adding a method: its class above, its name here.
MethodParams = Union[  # noqa: UP007  (a union of classes that is also iterated: typing.get_args)
    NaturalParams,
    ATParams,
    TRADESParams,
    KDParams,
    ARDParams,
    RSLADParams,
    IADParams,
    CRDParams,
    GACDParams,
]


def declared(union: Any) -> dict[str, type[MethodParamsBase]]:
    """The parameters classes of ``union`` by method name, each checked to be a whole declaration.

    Raises:
        TypeError: a class lacks its name, label, description or ``needs_teacher``.
        ValueError: two classes declare the same name.
    """
    out: dict[str, type[MethodParamsBase]] = {}
    for cls in typing.get_args(union) or (union,):
        missing = [a for a in ("name", "label", "description", "needs_teacher") if not hasattr(cls, a)]
        if missing:
            raise TypeError(f"{cls.__name__}: a method's declaration sets {', '.join(missing)}")
        if cls.name in out:
            raise ValueError(f"duplicate method name {cls.name!r}")
        out[cls.name] = cls
    return out


# The parameters class of each method, by name, in declaration order.
METHOD_PARAMS: dict[str, type[MethodParamsBase]] = declared(MethodParams)


def method_names(*, needs_teacher: bool | None = None) -> list[str]:
    """The methods in declaration order; only those that do (or do not) need a teacher when given."""
    return [n for n, c in METHOD_PARAMS.items() if needs_teacher is None or c.needs_teacher == needs_teacher]
