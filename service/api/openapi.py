"""The OpenAPI document clients and code generators read: FastAPI's, corrected and completed.

1. Request schemas written by hand from a pydantic model (``Model.model_json_schema()`` in a route's
   ``openapi_extra``, as the teacher-from-job body is) carry their sub-models in a local ``$defs`` and
   point at them with ``#/$defs/Name``. Inside an OpenAPI document such a reference resolves against
   the document's root, where there is no ``$defs``: every one of them dangles. They are moved to
   ``components/schemas`` and the references rewritten.
2. FastAPI documents a 422 ``HTTPValidationError`` (``{"detail": [...]}``) for every route with
   parameters, but :mod:`service.api.errors` answers a request that fails validation with the one error
   shape, ``ErrorBody``. Those 422s are documented as ``ErrorBody``.
3. The job specification is ``JobCreate``, the JSON Schema pydantic generates for the union of the
   job's method variants (:mod:`service.api.contract`), put in the components here as it is.
4. Schemas carry the names users read (``Job``, ``Teacher``, ``TeacherFromJob``...) rather than the
   code's (``JobPublic``...), and every operation an id a generated client can name a function after
   (``createJob``, ``listJobs``: the route function's name in camelCase, :func:`operation_id`).
5. Links: what a job, a teacher or a dataset just created (or listed artifacts) lead to, so that
   clients and stateful testers can follow them (``createJob`` -> ``getJob``, ``listJobEvents``,
   ``cancelJob``, ``listJobArtifacts``; ``listJobArtifacts`` -> ``downloadArtifact``...).

The corrected document is built once, on the first request for it, like FastAPI's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from service.api.contract import job_schemas
from service.api.errors import ErrorBody, responses

_LOCAL = "#/$defs/"
_COMPONENTS = "#/components/schemas/"
_FASTAPI_422 = _COMPONENTS + "HTTPValidationError"
_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")


# The code's names of public shapes -> the document's.
RENAMES = {
    "JobPublic": "Job",
    "TeacherPublic": "Teacher",
    "DatasetPublic": "Dataset",
    "EventPublic": "Event",
    "ModelPublic": "Model",
}

# operationId -> {status: {link name: (target operationId, its parameters)}}
_ID = "$response.body#/id"
LINKS: dict[str, dict[str, dict[str, tuple[str, dict[str, str]]]]] = {
    "createJob": {
        "202": {
            "GetJob": ("getJob", {"job_id": _ID}),
            "ListJobEvents": ("listJobEvents", {"job_id": _ID}),
            "CancelJob": ("cancelJob", {"job_id": _ID}),
            "ListJobArtifacts": ("listJobArtifacts", {"job_id": _ID}),
            "CreateTeacherFromJob": ("createTeacherFromJob", {"job_id": _ID}),
        }
    },
    "getJob": {
        "200": {
            "ListJobArtifacts": ("listJobArtifacts", {"job_id": _ID}),
            "ListJobEvents": ("listJobEvents", {"job_id": _ID}),
        }
    },
    "cancelJob": {"200": {"GetJob": ("getJob", {"job_id": _ID})}},
    "listJobArtifacts": {
        "200": {
            "DownloadArtifact": (
                "downloadArtifact",
                {"job_id": "$request.path.job_id", "name": "$response.body#/data/0/name"},
            )
        }
    },
    "uploadTeacher": {
        "201": {
            "GetTeacher": ("getTeacher", {"teacher_id": _ID}),
            "DeleteTeacher": ("deleteTeacher", {"teacher_id": _ID}),
        }
    },
    "createTeacherFromJob": {"201": {"GetTeacher": ("getTeacher", {"teacher_id": _ID})}},
    "uploadDataset": {
        "201": {
            "GetDataset": ("getDataset", {"dataset_id": _ID}),
            "DeleteDataset": ("deleteDataset", {"dataset_id": _ID}),
        }
    },
}


def operation_id(route: APIRoute) -> str:
    """A route's operationId: its function's name in camelCase (``list_job_events`` -> ``listJobEvents``)."""
    first, *rest = route.name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def install(app: FastAPI) -> None:
    """Serve the corrected document at ``/openapi.json`` (and to ``/docs``)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = corrected(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def corrected(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with local ``$defs`` hoisted into the components and 422s documented as ``ErrorBody``."""
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    _hoist(doc.get("paths", {}), schemas)
    _document_validation_errors(doc, schemas)
    _point_at_components(doc, schemas)
    if _mentions(doc, _COMPONENTS + "JobCreate"):
        for name, schema in job_schemas().items():
            _add(schemas, name, schema)
    _rewrite_refs(doc)
    _rename(doc, schemas)
    _link(doc)
    return doc


def _point_at_components(node: Any, schemas: dict[str, Any]) -> None:
    """A schema marked ``{"x-component": name}`` becomes a reference to that component; one marked
    ``{"x-component": name, "x-schema": schema}`` also puts ``schema`` in the components under ``name``
    (request bodies written by hand get a name that way, rather than one made up by a generator)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict) and "x-component" in value:
                name = value["x-component"]
                if "x-schema" in value:
                    _hoist(value["x-schema"], schemas)
                    _add(schemas, name, value["x-schema"])
                node[key] = {"$ref": _COMPONENTS + name}
            else:
                _point_at_components(value, schemas)
    elif isinstance(node, list):
        for value in node:
            _point_at_components(value, schemas)


def _rename(doc: dict[str, Any], schemas: dict[str, Any]) -> None:
    for old, new in RENAMES.items():
        if old in schemas:
            if new in schemas:
                raise RuntimeError(f"OpenAPI: cannot rename {old} to {new}, which is taken")
            schemas[new] = schemas.pop(old)
            schemas[new]["title"] = new
    _retarget(doc, {_COMPONENTS + old: _COMPONENTS + new for old, new in RENAMES.items()})


def _retarget(node: Any, targets: dict[str, str]) -> None:
    if isinstance(node, dict):
        if node.get("$ref") in targets:
            node["$ref"] = targets[node["$ref"]]
        for value in node.values():
            _retarget(value, targets)
    elif isinstance(node, list):
        for value in node:
            _retarget(value, targets)


def _link(doc: dict[str, Any]) -> None:
    operations = {
        op["operationId"]: op
        for ops in doc.get("paths", {}).values()
        for op in ops.values()
        if isinstance(op, dict) and "operationId" in op
    }
    for source, by_status in LINKS.items():
        if source not in operations:
            continue
        for status, links in by_status.items():
            response = operations[source]["responses"][status]
            response["links"] = {
                name: {"operationId": target, "parameters": params}
                for name, (target, params) in links.items()
                if target in operations
            }


def _hoist(node: Any, schemas: dict[str, Any], *, names: bool = False) -> None:
    """Move every ``$defs`` found under ``node`` into ``schemas`` (the same name must mean the same schema).
    ``names``: ``node`` maps property names to schemas (``properties``), so a property named ``$defs``
    (that of a schema describing JSON Schema documents) is a property, not definitions."""
    if isinstance(node, dict):
        defs = None if names else node.pop("$defs", None)
        for name, schema in (defs or {}).items():
            _hoist(schema, schemas)
            _add(schemas, name, schema)
        for key, value in node.items():
            _hoist(value, schemas, names=not names and key in ("properties", "patternProperties"))
    elif isinstance(node, list):
        for value in node:
            _hoist(value, schemas)


def _add(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    _rewrite_refs(schema)
    existing = schemas.get(name)
    if existing is not None and existing != schema:
        raise RuntimeError(f"OpenAPI: two different schemas are both named {name!r}")
    schemas[name] = schema


def _rewrite_refs(node: Any) -> None:
    """``#/$defs/Name`` -> ``#/components/schemas/Name`` in ``$ref`` and in discriminator mappings."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            node["$ref"] = _component(ref)
        mapping = node.get("discriminator", {}).get("mapping") if isinstance(node.get("discriminator"), dict) else None
        if isinstance(mapping, dict):
            for key, target in mapping.items():
                if isinstance(target, str):
                    mapping[key] = _component(target)
        for value in node.values():
            _rewrite_refs(value)
    elif isinstance(node, list):
        for value in node:
            _rewrite_refs(value)


def _component(ref: str) -> str:
    return _COMPONENTS + ref[len(_LOCAL) :] if ref.startswith(_LOCAL) else ref


def _document_validation_errors(doc: dict[str, Any], schemas: dict[str, Any]) -> None:
    replaced = False
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422") if isinstance(operation, dict) else None
            schema = (response or {}).get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref") == _FASTAPI_422:
                operation["responses"]["422"] = {
                    "description": responses(422)[422]["description"],
                    "content": {"application/json": {"schema": {"$ref": _COMPONENTS + "ErrorBody"}}},
                }
                replaced = True
    if replaced and "ErrorBody" not in schemas:
        body = ErrorBody.model_json_schema(ref_template=_COMPONENTS + "{model}")
        for name, schema in body.pop("$defs", {}).items():
            _add(schemas, name, schema)
        _add(schemas, "ErrorBody", body)
    if not _mentions(doc.get("paths", {}), _FASTAPI_422):
        for name in _FASTAPI_ONLY:
            schemas.pop(name, None)


def _mentions(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_mentions(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_mentions(v, ref) for v in node)
    return False
