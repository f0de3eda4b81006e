"""HTTP problems: one exception type, one JSON shape, one place that maps every error to it.

Every error the API returns is ``{"error": {"code": ..., "message": ..., "field": ...}}`` with a
fitting 4xx (or 503 when the store is away). ``code`` is stable: clients branch on it; ``message`` is
for people; ``field`` names the offending input when there is one. A user never sees a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from gacd_core.errors import GACDError, SpecError
from service.state.store import STORE_ERRORS

log = logging.getLogger("gacd.api")


class APIError(Exception):
    """An error response: HTTP ``status``, stable ``code``, readable ``message``, optional ``field``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers
        self.details = details


def not_found(kind: str, rid: str) -> APIError:
    return APIError(404, "not_found", f"no {kind} {rid!r}")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


def body(code: str, message: str, field: str | None = None, details: list[dict[str, Any]] | None = None) -> dict:
    err: dict[str, Any] = {"code": code, "message": message, "field": field}
    if details:
        err["details"] = details
    return {"error": err}


def spec_error(exc: SpecError) -> APIError:
    """A job specification that does not validate: 422 naming the first bad field, all of them in details."""
    details = [{"field": f, "message": m} for f, m in exc.errors]
    return APIError(422, "invalid_spec", exc.message, exc.field, details=details)


def core_error(exc: GACDError) -> APIError:
    """A typed error of the core (``teacher_unfit``, ``invalid_weights``, ...) as a 422 with its own code."""
    if isinstance(exc, SpecError):
        return spec_error(exc)
    return APIError(422, exc.code, exc.message, exc.field)


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Malformed request (bad JSON, malformed multipart)",
        401: "Missing or unknown API key (`unauthorized`)",
        404: "No such object for this tenant (`not_found`)",
        409: "Conflict with the object's state (`conflict`, `idempotency_conflict`)",
        413: "Body or upload over the size limit (`too_large`)",
        415: "Unsupported content type (`unsupported_media_type`)",
        422: "Invalid input; `field` names it (`invalid_spec`, `invalid_request`, ...)",
        429: "A per-tenant limit: too many unfinished jobs (`too_many_active_jobs`) or submissions per minute "
        "(`rate_limited`); see `Retry-After`",
        503: "The job store, the queue or the artifact store is unavailable (`store_unavailable`, "
        "`queue_unavailable`, `storage_unavailable`); see `Retry-After`",
    }
    out: dict[int | str, dict[str, Any]] = {c: {"model": ErrorBody, "description": text[c]} for c in codes}
    for c in (429, 503):
        if c in out:
            out[c]["headers"] = {
                "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
            }
    return out


COMMON = _responses(401, 503)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI error responses for a route: the common ones plus ``codes``."""
    return {**COMMON, **_responses(*codes)}


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at this request's path. Starlette's own 405 names only
    the methods of the first route whose path matched, although several routes may share a path; each
    method is tried against the app's routes as they are (included routers too)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into the one JSON shape."""

    @app.exception_handler(APIError)
    async def _api(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(
            body(exc.code, exc.message, exc.field, exc.details), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(GACDError)
    async def _core(_: Request, exc: GACDError) -> JSONResponse:
        err = core_error(exc)
        return JSONResponse(body(err.code, err.message, err.field, err.details), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        details = []
        for e in errors:
            loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header")]
            details.append({"field": ".".join(loc) or None, "message": str(e.get("msg", ""))})
        first = details[0] if details else {"field": None, "message": "invalid request"}
        msg = f"{first['field']}: {first['message']}" if first["field"] else str(first["message"])
        return JSONResponse(body("invalid_request", msg, first["field"], details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        code = codes.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.detail else code
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            message = f"{request.method} is not allowed here"
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return JSONResponse(body(code, message), status_code=exc.status_code, headers=headers)

    async def _store(_: Request, exc: Exception) -> JSONResponse:
        log.warning("job store unavailable: %s", exc)
        return JSONResponse(
            body("store_unavailable", "the job store is unavailable; retry shortly"),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    for away in STORE_ERRORS:  # Redis restarting (loading its append-only file is a ConnectionError), unreachable
        app.add_exception_handler(away, _store)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(body("internal_error", "an internal error occurred; it has been logged"), status_code=500)
