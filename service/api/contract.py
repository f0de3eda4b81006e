"""The job specification as the HTTP API states it: ``JobCreate`` and its parts, built from the core's
:class:`~gacd_core.spec.JobSpec`, and the check that holds a submitted body to it.

The core model is shared with the CLI, which reads files and accepts what YAML and ``--set`` give it
(``"5"`` for 5). Over HTTP the contract is the JSON Schema below, and the service refuses whatever it
refuses:

- every closed set is an ``enum`` taken from the registries when the document is built (methods from
  their declarations, architectures, datasets and evaluation attacks from :mod:`gacd_core.catalog`,
  device kinds from :data:`gacd_core.spec.DEVICES`), never a copied list;
- what a field validator checks one value at a time is stated as bounds, patterns, ``uniqueItems`` and
  ``maxProperties`` (``std`` above 0, class indices at least 0, milestones strictly between 0 and 1,
  at most 32 eps values, metadata keys and values by length);
- fields HTTP never accepts (:data:`~service.api.schemas.NOT_OVER_HTTP`: files on the machine that runs
  the job) are absent, and ``teacher.id`` is required where a teacher is given;
- ``method_params`` is any one method's parameters (its tag, ``method``, is the job's and is not sent).

What a schema cannot say is checked by the core after it and answered with 422 ``invalid_spec``, its
``field`` naming the rule: a method that needs a teacher (or does not take one), parameters of another
method, ``mean`` without ``std``, a preset with explicit values, ``val_size`` not below ``train_subset``,
``split: val`` without ``val_size``, ``warmup_epochs`` not below ``epochs``, milestones not increasing,
``dataset.id`` on a built-in dataset (or missing on ``custom``), and the contrastive parameters' own
combinations. The descriptions in the document say so.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import jsonschema_rs

from gacd_core import catalog
from gacd_core.spec import DEVICES, INDEXED_DEVICE, METHOD_PARAMS, JobSpec, method_names
from service.api.schemas import NOT_OVER_HTTP

COMPONENTS = "#/components/schemas/"
ID_PATTERNS = {prefix: f"^{prefix}_[0-9a-f]{{24}}$" for prefix in ("job", "tch", "ds")}

_CROSS_FIELD = (
    "Rules between fields are checked after the schema (422 `invalid_spec`, `field` naming the rule): "
    "methods that distil need `teacher` and the others refuse it; `method_params` are the chosen method's; "
    "`dataset.id` goes with `custom` only; `val_size` below `train_subset`; `evaluation.split: val` needs "
    "`val_size`; `warmup_epochs` below `epochs`; milestones increasing; `mean` with `std`."
)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _non_null(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of a pydantic ``X | None`` property (the property itself when not nullable)."""
    for branch in prop.get("anyOf", []):
        if branch.get("type") != "null":
            return branch
    return prop


def _rgb(prop: dict[str, Any], positive: bool) -> None:
    """A tuple of three numbers as a plain array (generators read ``items`` better than ``prefixItems``)."""
    array = _non_null(prop)
    array.pop("prefixItems", None)
    array["items"] = {"type": "number", **({"exclusiveMinimum": 0} if positive else {})}


def _enum(prop: dict[str, Any], names: Any) -> None:
    target = _non_null(prop)
    target["enum"] = list(names)


@functools.cache
def _built(methods: tuple[str, ...]) -> dict[str, Any]:
    # keyed by the declared methods: a method declared later (a test's toy method) rebuilds it
    del methods
    doc = JobSpec.model_json_schema(ref_template=COMPONENTS + "{model}")
    defs: dict[str, Any] = doc.pop("$defs")
    doc["title"] = "JobCreate"
    doc["description"] = f"{doc.get('description', '')} {_CROSS_FIELD}".strip()
    props = doc["properties"]
    _enum(props["method"], catalog.METHODS)
    props["method"]["description"] = "the training method: " + ", ".join(
        f"{name} ({entry.description})" for name, entry in catalog.METHODS.items()
    )
    device = props["device"]
    device.pop("type", None)
    device["anyOf"] = [
        {"type": "string", "enum": list(DEVICES)},
        {"type": "string", "pattern": f"^{INDEXED_DEVICE.pattern}$"},
    ]
    meta = props["metadata"]
    meta.update(maxProperties=64, propertyNames={"maxLength": 64})
    for branch in meta["additionalProperties"]["anyOf"]:
        if branch.get("type") == "string":
            branch["maxLength"] = 1024

    # who needs a teacher: stated with if/then/else (generators that skip these keywords lose nothing else)
    doc["if"] = {"properties": {"method": {"enum": method_names(needs_teacher=False)}}, "required": ["method"]}
    doc["then"] = {"properties": {"teacher": {"type": "null"}}}
    doc["else"] = {"required": ["teacher"], "properties": {"teacher": {"$ref": COMPONENTS + "TeacherSpec"}}}

    teacher = defs["TeacherSpec"]
    for part, names in NOT_OVER_HTTP.items():
        target = defs["TeacherSpec" if part == "teacher" else "DatasetSpec"]
        for name in names:
            target["properties"].pop(name)
    teacher["properties"]["id"] = {
        "type": "string",
        "pattern": ID_PATTERNS["tch"],
        "description": "the id of one of your teachers (POST /v1/teachers), ready",
    }
    teacher["required"] = ["id"]
    _enum(teacher["properties"]["arch"], catalog.MODELS)
    _rgb(teacher["properties"]["mean"], positive=False)
    _rgb(teacher["properties"]["std"], positive=True)
    given = {name: {"properties": {name: {"type": "array"}}, "required": [name]} for name in ("mean", "std")}
    teacher["allOf"] = [{"if": given["mean"], "then": given["std"]}, {"if": given["std"], "then": given["mean"]}]

    student = defs["StudentSpec"]["properties"]
    _enum(student["arch"], catalog.MODELS)
    _rgb(student["mean"], positive=False)
    _rgb(student["std"], positive=True)

    dataset = defs["DatasetSpec"]["properties"]
    _enum(dataset["name"], catalog.DATASETS)
    dataset["id"] = _nullable({"type": "string", "pattern": ID_PATTERNS["ds"]}) | {
        "default": None,
        "description": "custom datasets: the id of one of your datasets (POST /v1/datasets), ready",
    }
    # custom datasets are named by id, built-in ones by name alone
    defs["DatasetSpec"]["if"] = {"properties": {"name": {"const": "custom"}}, "required": ["name"]}
    defs["DatasetSpec"]["then"] = {"required": ["id"], "properties": {"id": {"type": "string"}}}
    defs["DatasetSpec"]["else"] = {"properties": {"id": {"type": "null"}}}
    classes = _non_null(dataset["classes"])
    classes.update(uniqueItems=True, items={"type": "integer", "minimum": 0})

    hyper = defs["HyperParameters"]["properties"]
    hyper["milestones"].update(uniqueItems=True, items={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1})
    hyper["method_params"] = _nullable({"anyOf": [{"$ref": COMPONENTS + name} for name in _params_names()]}) | {
        "default": None,
        "description": "the parameters of the job's method (omitted ones take its defaults): "
        + ", ".join(f"{cls.__name__} for {name}" for name, cls in METHOD_PARAMS.items()),
    }
    for cls in METHOD_PARAMS.values():
        params = defs[cls.__name__]
        params["properties"].pop("method", None)
        params.pop("discriminator", None)

    evaluation = defs["EvaluationSpec"]["properties"]
    evaluation["attacks"].update(uniqueItems=True, items={"type": "string", "enum": list(catalog.EVAL_ATTACKS)})
    evaluation["eps_sweep"].update(maxItems=32, items={"type": "number", "minimum": 0, "maximum": 1})

    return {"JobCreate": doc, **defs}


def _params_names() -> list[str]:
    return [cls.__name__ for cls in METHOD_PARAMS.values()]


def job_schemas() -> dict[str, Any]:
    """``JobCreate`` and the schemas it refers to, by component name (a copy, to be put in a document)."""
    return copy.deepcopy(_built(tuple(METHOD_PARAMS)))


@functools.cache
def _validator(methods: tuple[str, ...]) -> Any:
    del methods
    root = {"$ref": COMPONENTS + "JobCreate", "components": {"schemas": job_schemas()}}
    return jsonschema_rs.Draft202012Validator(root)


def contract_errors(body: Any) -> list[tuple[str, str]]:
    """Where ``body`` breaks the ``JobCreate`` schema: ``(field, message)`` pairs, none when it holds.

    The core has accepted the body when this runs; what is left are values its lax parsing converts
    (``"5"``, ``5.0`` or ``true`` for an integer, ``1`` for a boolean) and the bounds stated here only.
    """
    out = []
    for err in _validator(tuple(METHOD_PARAMS)).iter_errors(body):
        field = ".".join(str(p) for p in err.instance_path)
        out.append((field, err.message))
    return out
