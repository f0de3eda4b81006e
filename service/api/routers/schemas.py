"""``/v1/schemas``: the JSON Schemas of what the service hands out, so that clients can validate and
generate code for them. Today one: the job report (``report.json``), from the core's typed report
(:mod:`gacd_core.report_model`, which imports without torch). ``docs/report.schema.json`` is the same
document, committed.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gacd_core.report_model import SCHEMA, SCHEMA_VERSION, report_json_schema
from service.api.deps import Tenant
from service.api.errors import responses

router = APIRouter(prefix="/v1/schemas", tags=["schemas"])

# What the answer is, for the OpenAPI document: a JSON Schema (draft 2020-12) describing an object.
_JSON_SCHEMA_DOCUMENT = {
    "title": "JSONSchema",
    "type": "object",
    "description": "A JSON Schema document (draft 2020-12).",
    "required": ["$schema", "title", "type", "properties"],
    "properties": {
        "$schema": {"type": "string"},
        "title": {"type": "string"},
        "type": {"type": "string", "enum": ["object"]},
        "properties": {"type": "object"},
        "$defs": {"type": "object"},
    },
}

# The head of the answer, for the document's example (the real one lists every section).
_EXAMPLE = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Report",
    "type": "object",
    "properties": {"schema": {"type": "string"}, "schema_version": {"type": "integer"}, "metrics": {"type": "object"}},
    "$defs": {"Metrics": {"type": "object", "properties": {"clean_acc": {"type": "number"}}}},
}


@cache
def _report_schema() -> dict[str, Any]:
    return report_json_schema()


@router.get(
    "/report",
    summary="The JSON Schema of report.json",
    description=(
        f"The schema of a job's `report.json` (`schema` `{SCHEMA}`, `schema_version` {SCHEMA_VERSION}), "
        "as `GET /v1/jobs/{job_id}/artifacts/report.json` returns it. Older reports (without "
        "`schema_version`) differ only by keys they lack."
    ),
    response_class=JSONResponse,
    responses={
        **responses(),
        200: {
            "description": "the JSON Schema of report.json",
            "content": {"application/json": {"schema": _JSON_SCHEMA_DOCUMENT, "example": _EXAMPLE}},
        },
    },
)
def get_report_schema(tenant: Tenant) -> JSONResponse:
    return JSONResponse(_report_schema())
