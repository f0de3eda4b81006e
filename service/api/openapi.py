"""The OpenAPI document clients and code generators read: FastAPI's, with two corrections.

1. Request schemas written by hand from a pydantic model (``Model.model_json_schema()`` in a route's
   ``openapi_extra``, as the job specification is) carry their sub-models in a local ``$defs`` and
   point at them with ``#/$defs/Name``. Inside an OpenAPI document such a reference resolves against
   the document's root, where there is no ``$defs``: every one of them dangles. They are moved to
   ``components/schemas`` and the references rewritten.
2. FastAPI documents a 422 ``HTTPValidationError`` (``{"detail": [...]}``) for every route with
   parameters, but :mod:`service.api.errors` answers a request that fails validation with the one error
   shape, ``ErrorBody``. Those 422s are documented as ``ErrorBody``.

The corrected document is built once, on the first request for it, like FastAPI's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from service.api.errors import ErrorBody, responses

_LOCAL = "#/$defs/"
_COMPONENTS = "#/components/schemas/"
_FASTAPI_422 = _COMPONENTS + "HTTPValidationError"
_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")


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
    _rewrite_refs(doc)
    return doc


def _hoist(node: Any, schemas: dict[str, Any]) -> None:
    """Move every ``$defs`` found under ``node`` into ``schemas`` (the same name must mean the same schema)."""
    if isinstance(node, dict):
        defs = node.pop("$defs", None)
        for name, schema in (defs or {}).items():
            _hoist(schema, schemas)
            _add(schemas, name, schema)
        for value in node.values():
            _hoist(value, schemas)
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
