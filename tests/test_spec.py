"""The job specification: defaults, readable errors naming each bad field, safe file loading, the
torch-free import contract, and the catalog agreeing with the registries."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gacd_core import catalog
from gacd_core.errors import SpecError, UnknownNameError
from gacd_core.registry import Registry
from gacd_core.spec import (
    METHOD_PARAMS,
    GACDParams,
    JobSpec,
    load_spec_file,
    method_names,
    parse_spec,
)

pytestmark = pytest.mark.unit

TEACHER = {"weights": "teacher.safetensors"}
TEACHER_METHODS = method_names(needs_teacher=True)
TEACHERLESS_METHODS = method_names(needs_teacher=False)
ALL_METHODS = method_names()


def _minimal(method: str) -> dict:
    return {"method": method} if method in TEACHERLESS_METHODS else {"method": method, "teacher": dict(TEACHER)}


def _errors(data: dict) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return info.value


# the architectures a refusal lists: ours, then timm's and torchvision's allowed names (zoo entries by pattern)
LIBRARY_AND_OURS = [n for n in catalog.ARCHITECTURES if not n.startswith("robustbench:")]


def _valid_list(message: str) -> list[str]:
    """The names after 'valid: ' or 'valid fields: ' in an error message."""
    marker = "valid fields: " if "valid fields: " in message else "valid: "
    assert marker in message, message
    return [n.strip() for n in message.split(marker, 1)[1].split(",")]


# --------------------------------------------------------------------------------------------------
# Defaults
# --------------------------------------------------------------------------------------------------
def test_defaults_resolve_to_gacd_with_its_parameters() -> None:
    spec = parse_spec({"teacher": dict(TEACHER)})
    assert spec.method == "gacd"
    assert spec.teacher is not None and spec.teacher.weights == "teacher.safetensors"
    assert isinstance(spec.params, GACDParams)
    assert spec.params == GACDParams()
    # The documented GACD defaults (docs/method.md, section 6: chosen on validation images by
    # benchmarks/compare.py --split val), not CRD's.
    assert (spec.params.lambda_nce, spec.params.lambda_kd, spec.params.lambda_ce) == (0.1, 1.0, 1.0)
    assert spec.params.nce_temperature == 0.07
    assert spec.params.feat_dim == 128
    assert (spec.params.negatives, spec.params.attack, spec.params.attack_ce_weight) == ("in_batch", "guided", 1.0)
    assert spec.params.n_negatives == 16384  # used when negatives: memory
    assert spec.params.memory_momentum == 0.5
    assert spec.params.reweight == "soft"
    assert spec.hyperparameters.attack.eps == pytest.approx(8 / 255)
    assert spec.hyperparameters.attack.step_size == pytest.approx(2 / 255)
    assert spec.hyperparameters.attack.steps == 10
    assert spec.evaluation.attacks == ["fgsm", "pgd20", "cw"]
    assert spec.student.arch == "mobilenetv2"
    assert spec.dataset.name == "cifar10"


@pytest.mark.parametrize("method", ALL_METHODS)
def test_method_params_take_the_methods_defaults(method: str) -> None:
    spec = parse_spec(_minimal(method))
    params_cls = METHOD_PARAMS[method]
    assert type(spec.params) is params_cls
    assert spec.params == params_cls()
    dumped = spec.public_dict()["hyperparameters"]["method_params"]
    assert "method" not in dumped
    assert dumped == params_cls().model_dump(mode="json")


def test_the_ce_attack_takes_no_mixing_weight_unless_one_is_given() -> None:
    params = parse_spec({**_minimal("gacd"), "hyperparameters": {"method_params": {"attack": "ce"}}}).params
    assert (params.attack, params.attack_ce_weight) == ("ce", 0.0)
    with pytest.raises(SpecError, match="attack_ce_weight"):
        parse_spec({**_minimal("gacd"), "hyperparameters": {"method_params": {"attack": "ce", "attack_ce_weight": 1}}})


def test_crd_and_gacd_defaults_differ_where_documented() -> None:
    crd = parse_spec(_minimal("crd")).params
    gacd = parse_spec(_minimal("gacd")).params
    assert (crd.lambda_nce, crd.lambda_kd, crd.lambda_ce, crd.kd_temperature) == (0.8, 0.0, 1.0, 4.0)
    assert (gacd.lambda_nce, gacd.lambda_kd, gacd.lambda_ce, gacd.kd_temperature) == (0.1, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_public_dict_round_trips(method: str) -> None:
    spec = parse_spec(
        {
            **_minimal(method),
            "seed": 7,
            "dataset": {"train_subset": 100, "val_size": 10},
            "metadata": {"run": "a", "n": 3},
        }
    )
    public = spec.public_dict()
    assert public["method"] == method
    assert "method" not in public["hyperparameters"]["method_params"]
    again = parse_spec(json.loads(json.dumps(public)))
    assert again == spec
    assert again.public_dict() == public


def test_given_method_params_are_kept_and_the_rest_defaulted() -> None:
    spec = parse_spec(
        {"method": "kd", "teacher": dict(TEACHER), "hyperparameters": {"method_params": {"temperature": 2.5}}}
    )
    assert spec.params.model_dump() == {"temperature": 2.5, "alpha": 0.9}


# --------------------------------------------------------------------------------------------------
# Unknown names and fields
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "field", "valid"),
    [
        ({"method": "distill", "teacher": TEACHER}, "method", list(catalog.METHODS)),
        ({"teacher": TEACHER, "student": {"arch": "vgg16"}}, "student.arch", LIBRARY_AND_OURS),
        ({"teacher": {**TEACHER, "arch": "vit_b16"}}, "teacher.arch", LIBRARY_AND_OURS),
        ({"teacher": TEACHER, "dataset": {"name": "imagenet"}}, "dataset.name", list(catalog.DATASETS)),
        (
            {"teacher": TEACHER, "evaluation": {"attacks": ["pgd20", "apgd"]}},
            "evaluation.attacks",
            list(catalog.EVAL_ATTACKS),
        ),
    ],
)
def test_unknown_names_list_the_valid_ones(data: dict, field: str, valid: list[str]) -> None:
    err = _errors(data)
    assert len(err.errors) == 1, err.errors
    loc, msg = err.errors[0]
    assert loc == field
    assert err.field == field
    assert msg.startswith("unknown ")
    assert _valid_list(msg) == valid
    assert field in str(err)


@pytest.mark.parametrize(
    ("data", "field", "valid"),
    [
        ({"teacher": TEACHER, "epoch": 10}, "epoch", list(JobSpec.model_fields)),
        (
            {"teacher": TEACHER, "student": {"arch": "resnet18", "width": 2}},
            "student.width",
            ["arch", "mean", "std"],
        ),
        (
            {"teacher": TEACHER, "hyperparameters": {"attack": {"epsilon": 0.1}}},
            "hyperparameters.attack.epsilon",
            ["eps", "steps", "step_size", "random_start"],
        ),
        (
            {"teacher": TEACHER, "hyperparameters": {"method_params": {"lamda_kd": 1.0}}},
            "hyperparameters.method_params.lamda_kd",
            [n for n, f in GACDParams.model_fields.items() if n != "method"],
        ),
        (
            {"method": "kd", "teacher": TEACHER, "hyperparameters": {"method_params": {"reweight": "soft"}}},
            "hyperparameters.method_params.reweight",
            ["temperature", "alpha"],
        ),
    ],
)
def test_unknown_fields_name_the_field_and_list_valid_fields(data: dict, field: str, valid: list[str]) -> None:
    err = _errors(data)
    assert err.errors == [(field, f"unknown field; valid fields: {', '.join(valid)}")]
    assert err.field == field


def test_gacd_fields_are_unknown_for_natural() -> None:
    err = _errors({"method": "natural", "hyperparameters": {"method_params": {"lambda_kd": 1.0}}})
    assert err.errors == [("hyperparameters.method_params.lambda_kd", "unknown field")]


def test_every_bad_field_is_reported() -> None:
    err = _errors({"teacher": TEACHER, "seed": -1, "student": {"arch": "nope"}, "hyperparameters": {"epochs": 0}})
    assert sorted(loc for loc, _ in err.errors) == ["hyperparameters.epochs", "seed", "student.arch"]


# --------------------------------------------------------------------------------------------------
# Out-of-range values
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("patch", "field", "fragment"),
    [
        ({"hyperparameters": {"epochs": 0}}, "hyperparameters.epochs", "greater than or equal to 1 (got 0)"),
        (
            {"hyperparameters": {"attack": {"eps": 2}}},
            "hyperparameters.attack.eps",
            "less than or equal to 1 (got 2)",
        ),
        ({"evaluation": {"eps": 2}}, "evaluation.eps", "less than or equal to 1 (got 2)"),
        (
            {"hyperparameters": {"batch_size": 0}},
            "hyperparameters.batch_size",
            "greater than or equal to 1 (got 0)",
        ),
        ({"evaluation": {"batch_size": 0}}, "evaluation.batch_size", "greater than or equal to 1 (got 0)"),
        ({"seed": -1}, "seed", "greater than or equal to 0 (got -1)"),
        (
            {"hyperparameters": {"milestones": [0.75, 0.5]}},
            "hyperparameters.milestones",
            "strictly increasing",
        ),
        (
            {"hyperparameters": {"milestones": [0.5, 0.5]}},
            "hyperparameters.milestones",
            "strictly increasing",
        ),
        (
            {"hyperparameters": {"milestones": [0.5, 1.5]}},
            "hyperparameters.milestones",
            "strictly between 0 and 1",
        ),
        (
            {"hyperparameters": {"epochs": 5, "warmup_epochs": 5}},
            "hyperparameters.warmup_epochs",
            "smaller than epochs",
        ),
        (
            {"hyperparameters": {"epochs": 5, "warmup_epochs": 7.5}},
            "hyperparameters.warmup_epochs",
            "smaller than epochs",
        ),
        ({"dataset": {"train_subset": 0}}, "dataset.train_subset", "greater than or equal to 1 (got 0)"),
        ({"dataset": {"classes": [1, 1, 2]}}, "dataset.classes", "must not repeat"),
        (
            {"dataset": {"train_subset": 10, "val_size": 10}},
            "dataset.val_size",
            "smaller than dataset.train_subset",
        ),
        ({"student": {"arch": "resnet18", "std": [0.2, 0.0, 0.2]}}, "student.std", "> 0"),
        ({"device": "tpu"}, "device", "auto, cpu, cuda"),
        ({"evaluation": {"attacks": ["fgsm", "fgsm"]}}, "evaluation.attacks", "must not repeat"),
    ],
)
def test_out_of_range_values_name_the_field(patch: dict, field: str, fragment: str) -> None:
    err = _errors({"teacher": TEACHER, **patch})
    assert [loc for loc, _ in err.errors] == [field]
    assert fragment in err.errors[0][1]
    assert err.field == field


def test_boundary_values_are_accepted() -> None:
    spec = parse_spec(
        {
            "teacher": TEACHER,
            "seed": 0,
            "hyperparameters": {
                "epochs": 1,
                "batch_size": 1,
                "warmup_epochs": 0.5,
                "milestones": [0.1, 0.9],
                "attack": {"eps": 1},
            },
        }
    )
    assert (spec.hyperparameters.epochs, spec.hyperparameters.batch_size) == (1, 1)
    assert spec.hyperparameters.attack.eps == 1


# --------------------------------------------------------------------------------------------------
# Cross-field rules
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", TEACHER_METHODS)
def test_distillation_methods_need_a_teacher(method: str) -> None:
    err = _errors({"method": method})
    assert len(err.errors) == 1
    loc, msg = err.errors[0]
    assert loc == "teacher" == err.field
    assert repr(method) in msg and "teacher.weights" in msg


@pytest.mark.parametrize("method", TEACHERLESS_METHODS)
def test_teacherless_methods_refuse_a_teacher(method: str) -> None:
    assert parse_spec({"method": method}).teacher is None
    err = _errors({"method": method, "teacher": TEACHER})
    assert err.errors == [("teacher", f"method {method!r} trains without a teacher: remove 'teacher'")]


def test_teacher_needs_weights_or_id() -> None:
    err = _errors({"teacher": {"arch": "resnet18"}})
    assert [loc for loc, _ in err.errors] == ["teacher.weights"]
    assert parse_spec({"teacher": {"id": "t-123"}}).teacher.id == "t-123"  # type: ignore[union-attr]


def test_custom_dataset_needs_path_or_id() -> None:
    err = _errors({"teacher": TEACHER, "dataset": {"name": "custom"}})
    assert [loc for loc, _ in err.errors] == ["dataset.path"]
    assert "needs a path" in err.errors[0][1]
    assert parse_spec({"teacher": TEACHER, "dataset": {"name": "custom", "path": "d.npz"}}).dataset.path == "d.npz"
    assert parse_spec({"teacher": TEACHER, "dataset": {"name": "custom", "id": "ds-1"}}).dataset.id == "ds-1"


def test_builtin_dataset_refuses_a_path() -> None:
    err = _errors({"teacher": TEACHER, "dataset": {"name": "cifar10", "path": "d.npz"}})
    assert [loc for loc, _ in err.errors] == ["dataset.path"]


def test_cross_task_gacd_refuses_logit_distillation() -> None:
    err = _errors({"teacher": TEACHER, "hyperparameters": {"method_params": {"cross_task": True}}})
    assert err.errors == [
        ("hyperparameters.method_params.lambda_kd", "must be 0 when teacher and student label sets differ")
    ]
    assert err.field == "hyperparameters.method_params.lambda_kd"
    hard = _errors(
        {
            "teacher": TEACHER,
            "hyperparameters": {"method_params": {"cross_task": True, "lambda_kd": 0, "reweight": "hard"}},
        }
    )
    assert [loc for loc, _ in hard.errors] == ["hyperparameters.method_params.reweight"]
    ok = parse_spec({"teacher": TEACHER, "hyperparameters": {"method_params": {"cross_task": True, "lambda_kd": 0}}})
    assert ok.params.cross_task is True and ok.params.lambda_kd == 0  # type: ignore[attr-defined]


def test_non_mapping_input_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec([1, 2])  # type: ignore[arg-type]
    assert info.value.errors == [("", "a job specification is a JSON object")]


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------
def test_load_spec_file_reads_json_and_yaml(tmp_path: Path) -> None:
    data = {
        "method": "ard",
        "teacher": {"weights": "t.pt", "arch": "resnet18", "num_classes": 10},
        "hyperparameters": {"epochs": 3, "method_params": {"temperature": 5.0}},
    }
    (tmp_path / "job.json").write_text(json.dumps(data))
    (tmp_path / "job.yaml").write_text(
        textwrap.dedent("""\
        method: ard
        teacher:
          weights: t.pt
          arch: resnet18
          num_classes: 10
        hyperparameters:
          epochs: 3
          method_params:
            temperature: 5.0
        """)
    )
    from_json = load_spec_file(tmp_path / "job.json")
    from_yaml = load_spec_file(tmp_path / "job.yaml")
    assert from_json == data
    assert from_yaml == data
    spec = parse_spec(from_yaml)
    assert (spec.method, spec.hyperparameters.epochs, spec.params.temperature) == ("ard", 3, 5.0)  # type: ignore[attr-defined]


def test_load_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as missing:
        load_spec_file(tmp_path / "nope.yaml")
    assert missing.value.field == "spec" and "cannot read" in missing.value.errors[0][1]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SpecError) as bad:
        load_spec_file(tmp_path / "bad.json")
    assert "not valid json" in bad.value.errors[0][1]
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SpecError) as lst:
        load_spec_file(tmp_path / "list.yaml")
    assert "mapping at the top level" in lst.value.errors[0][1]
    (tmp_path / "empty.yaml").write_text("")
    assert load_spec_file(tmp_path / "empty.yaml") == {}


def test_yaml_python_tags_are_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "evil.yaml").write_text(f"method: natural\nseed: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(SpecError) as info:
        load_spec_file(tmp_path / "evil.yaml")
    assert info.value.field == "spec"
    assert "not valid yaml" in info.value.errors[0][1]
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------
# Import contracts
# --------------------------------------------------------------------------------------------------
_NO_TORCH = """
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
        return None

sys.meta_path.insert(0, BlockTorch())
import gacd_core.catalog, gacd_core.errors, gacd_core.normalization, gacd_core.spec
spec = gacd_core.spec.parse_spec({"method": "rslad", "teacher": {"weights": "t.safetensors"}})
assert spec.params.adv_weight > 0
try:
    gacd_core.spec.parse_spec({"method": "nope"})
except gacd_core.errors.SpecError as exc:
    assert exc.field == "method"
else:
    raise SystemExit("an unknown method was accepted")
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
print("torch-free ok")
"""

_NO_SERVICE = """
import sys

SERVICE = ("fastapi", "celery", "redis", "starlette")
tried = []

class Record:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in SERVICE:
            tried.append(name)
        return None

sys.meta_path.insert(0, Record())
import gacd_core.jobs, gacd_core.cli, gacd_core.models, gacd_core.data, gacd_core.attacks
import gacd_core.methods, gacd_core.trainer, gacd_core.evaluation
loaded = sorted(m for m in sys.modules if m.split(".")[0] in SERVICE)
assert not loaded, loaded
assert not tried, tried  # not even attempted (a guarded import would pass the sys.modules check)
assert "torch" in sys.modules  # the check ran against the real, torch-using modules
print("service-free ok")
"""


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_spec_imports_without_torch() -> None:
    res = _run_python(_NO_TORCH)
    assert res.returncode == 0, res.stderr
    assert "torch-free ok" in res.stdout


def test_core_never_imports_the_service_stack() -> None:
    res = _run_python(_NO_SERVICE)
    assert res.returncode == 0, res.stderr
    assert "service-free ok" in res.stdout


# --------------------------------------------------------------------------------------------------
# Catalog vs registries
# --------------------------------------------------------------------------------------------------
def _registries() -> list[tuple[str, dict[str, Any], Registry]]:
    from gacd_core.attacks import PROTOCOL_ATTACKS
    from gacd_core.data import DATASETS
    from gacd_core.methods import METHODS
    from gacd_core.models import MODELS

    return [
        ("models", catalog.MODELS, MODELS),
        ("methods", catalog.METHODS, METHODS),
        ("attacks", catalog.EVAL_ATTACKS, PROTOCOL_ATTACKS),
        ("datasets", catalog.DATASETS, DATASETS),
    ]


@pytest.mark.parametrize("kind", ["models", "methods", "attacks", "datasets"])
def test_catalog_and_registry_hold_the_same_names(kind: str) -> None:
    _, names, registry = next(r for r in _registries() if r[0] == kind)
    assert sorted(names) == registry.names()
    assert len(registry) == len(names)
    for name in names:
        assert name in registry
        assert registry.get(name) is not None


def test_every_declared_method_has_exactly_one_implementation() -> None:
    from gacd_core.methods import METHODS

    assert METHODS.names() == sorted(METHOD_PARAMS)
    for name, params in METHOD_PARAMS.items():
        impl = METHODS.get(name)
        assert impl.params_class is params and impl.name == params.name == name
        assert catalog.METHODS[name] == catalog.MethodEntry(params.label, params.description, params.needs_teacher)


def test_a_declaration_must_be_complete_and_new() -> None:
    from typing import Union

    from gacd_core.method_params import MethodParams, MethodParamsBase, declared

    class Unlabelled(MethodParamsBase):
        name = "unlabelled"
        description = "a method without a label"
        needs_teacher = False

    with pytest.raises(TypeError, match="sets label"):
        declared(Union[MethodParams, Unlabelled])  # noqa: UP007

    class Again(MethodParamsBase):
        name, label, description, needs_teacher = "gacd", "GACD", "a second gacd", True

    with pytest.raises(ValueError, match="duplicate method name 'gacd'"):
        declared(Union[MethodParams, Again])  # noqa: UP007
    assert METHOD_PARAMS["gacd"] is GACDParams and "unlabelled" not in catalog.METHODS
    assert list(declared(MethodParams)) == list(METHOD_PARAMS) == list(catalog.METHODS)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_each_method_has_its_job_variant(method: str) -> None:
    from gacd_core.spec import JOB_SPECS

    variant = JOB_SPECS[method]
    params = METHOD_PARAMS[method]
    assert issubclass(variant, JobSpec) and variant.params_class is params
    assert type(parse_spec(_minimal(method))) is variant
    assert list(variant.model_fields) == list(JobSpec.model_fields)  # the same fields, in the same order
    hyper = variant.model_fields["hyperparameters"].default_factory()  # type: ignore[misc]
    assert type(hyper.method_params) is params and hyper.weight_decay == params.weight_decay


def test_weight_decay_is_the_methods_when_hyperparameters_arrive_as_an_object() -> None:
    from gacd_core.spec import HyperParameters

    given = HyperParameters(epochs=3)
    spec = parse_spec({"method": "ard", "teacher": dict(TEACHER), "hyperparameters": given})
    assert (spec.hyperparameters.epochs, spec.hyperparameters.weight_decay) == (3, 2e-4)
    explicit = HyperParameters(epochs=3, weight_decay=5e-4)
    spec = parse_spec({"method": "rslad", "teacher": dict(TEACHER), "hyperparameters": explicit})
    assert spec.hyperparameters.weight_decay == 5e-4  # set, so kept
    assert (
        parse_spec({"method": "kd", "teacher": dict(TEACHER), "hyperparameters": given}).params == METHOD_PARAMS["kd"]()
    )


def test_strict_parsing_refuses_what_a_lax_reading_converts() -> None:
    doc = {"method": "at", "hyperparameters": {"epochs": "5", "nesterov": 1}, "seed": 2.0}
    lax = parse_spec(doc)
    assert (lax.hyperparameters.epochs, lax.hyperparameters.nesterov, lax.seed) == (5, True, 2)
    err = _errors_strict(doc)
    assert [loc for loc, _ in err.errors] == ["hyperparameters.epochs", "hyperparameters.nesterov"]
    # a JSON number without a fraction is an integer (JSON Schema's integer), in both readings
    assert parse_spec({"method": "at", "seed": 3.0}, strict=True).seed == 3


def _errors_strict(data: dict) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(data, strict=True)
    return info.value


def test_method_params_do_not_repeat_the_method() -> None:
    err = _errors({**_minimal("kd"), "hyperparameters": {"method_params": {"method": "kd"}}})
    assert [loc for loc, _ in err.errors] == ["hyperparameters.method_params"]


def test_an_implementation_registers_only_against_a_declared_method() -> None:
    from gacd_core.methods import Method, register_method
    from gacd_core.spec import KDParams, NaturalParams

    class Undeclared(NaturalParams):
        pass

    with pytest.raises(ValueError, match="Undeclared is not declared"):
        register_method(Undeclared)(type("Impl", (Method,), {}))
    with pytest.raises(ValueError, match="duplicate method name 'kd'"):
        register_method(KDParams)(type("SecondKD", (Method,), {}))


def test_catalog_lists_the_documented_choices() -> None:
    assert list(catalog.METHODS) == ["natural", "at", "trades", "kd", "ard", "rslad", "iad", "crd", "gacd"]
    assert list(catalog.METHODS) == list(METHOD_PARAMS)
    assert TEACHERLESS_METHODS == ["natural", "at", "trades"]
    assert TEACHER_METHODS == ["kd", "ard", "rslad", "iad", "crd", "gacd"]
    assert {n: m.label for n, m in catalog.METHODS.items()} == {
        "natural": "natural training",
        "at": "AT",
        "trades": "TRADES",
        "kd": "KD",
        "ard": "ARD",
        "rslad": "RSLAD",
        "iad": "IAD",
        "crd": "CRD",
        "gacd": "GACD",
    }
    assert set(catalog.DATASETS) == {"cifar10", "cifar100", "stl10", "custom", "imagefolder", "shards"}
    assert {"resnet18", "wrn_34_10", "mobilenetv2"} <= set(catalog.MODELS)
    assert list(catalog.EVAL_ATTACKS) == ["fgsm", "pgd20", "cw"]
    assert catalog.ACCURACY_KEYS == ("clean_acc", "fgsm_acc", "pgd20_acc", "cw_acc", "autoattack_acc")
    assert catalog.REFERENCE_ATTACK.name == "pgd20" and catalog.REFERENCE_ATTACK.label == "PGD-20"
    assert all(a.key == f"{name}_acc" for name, a in catalog.ACCURACIES.items())


def test_registry_refuses_duplicates_and_names_outside_its_catalog() -> None:
    reg: Registry[object] = Registry("widget", {"alpha": "a", "beta": "b"})

    @reg.register()
    def alpha() -> None: ...

    reg.register("beta")(object)
    assert reg.names() == ["alpha", "beta"]
    assert reg.get("alpha") is alpha

    def again() -> None: ...

    with pytest.raises(ValueError, match="duplicate widget name 'alpha'"):
        reg.register("alpha")(again)
    assert reg.get("alpha") is alpha  # the first registration stands

    def gamma() -> None: ...

    with pytest.raises(ValueError, match=r"'gamma' is not declared; declare it in gacd_core\.catalog"):
        reg.register()(gamma)
    assert "gamma" not in reg and len(reg) == 2


def test_registry_get_unknown_lists_valid_names() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("b")(2)  # type: ignore[arg-type]
    reg.register("a")(1)  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError) as info:
        reg.get("c")
    err = info.value
    assert (err.kind, err.name, err.valid) == ("widget", "c", ["a", "b"])
    assert str(err) == "unknown widget 'c'; valid: a, b"
    assert isinstance(err, KeyError)


def test_real_registries_reject_unknown_names() -> None:
    from gacd_core.models import MODELS, create_model

    with pytest.raises(UnknownNameError) as info:
        create_model("vgg16")
    assert info.value.valid == MODELS.names()
    assert "resnet18" in str(info.value)


@pytest.mark.parametrize("method", [5, None, ["gacd"], {"name": "gacd"}])
def test_a_method_that_is_not_a_name_is_refused_on_method(method: Any) -> None:
    err = _errors({"method": method, "teacher": dict(TEACHER)})
    assert [loc for loc, _ in err.errors] == ["method"] and "unknown method" in err.errors[0][1]
