"""The API's documentation pages, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, working with no network.

FastAPI's own pages load Swagger UI's and ReDoc's scripts and styles from a CDN, so on a machine
without internet access they are blank. Here the pages point at copies the ``fastapi-offline`` package
ships (Swagger UI 5, ReDoc 2, a favicon), which the app serves itself under ``/docs/assets``. Only the
assets of that package are used, not its ``FastAPIOffline`` factory: the app keeps being built by
:func:`service.api.app.create_app`. Both pages read the corrected document of :mod:`service.api.openapi`
and need no API key, like ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

ASSETS_URL = "/docs/assets"
SWAGGER_JS, SWAGGER_CSS = "swagger-ui-bundle.js", "swagger-ui.css"
REDOC_JS, FAVICON = "redoc.standalone.js", "favicon.png"

# Swagger UI sends the whole document to validator.swagger.io for a badge unless told not to (only in
# some layouts, but an offline page should not even try).
SWAGGER_PARAMETERS: dict[str, Any] = {"validatorUrl": None}


def asset_dir() -> Path:
    """Where the installed ``fastapi-offline`` keeps the bundles (a RuntimeError if any is missing)."""
    directory = Path(str(files("fastapi_offline") / "static"))
    missing = [name for name in (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON) if not (directory / name).is_file()]
    if missing:
        raise RuntimeError(f"fastapi-offline has no {', '.join(missing)} under {directory}: reinstall it")
    return directory


class _Assets(StaticFiles):
    """The bundles, naming their mount as the request's route: ``/metrics`` then counts asset requests
    under ``/docs/assets`` (a Mount, unlike a route, does not put itself in the scope: "unmatched")."""

    mount: Mount | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("route", self.mount)
        await super().__call__(scope, receive, send)


def install(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the bundles under :data:`ASSETS_URL` and the two pages that use them.

    Build ``app`` with ``docs_url=None, redoc_url=None`` so that FastAPI's CDN pages are not there too.
    """
    assets = _Assets(directory=asset_dir())
    assets.mount = Mount(ASSETS_URL, app=assets, name="docs-assets")
    app.router.routes.append(assets.mount)

    def links(request: Request) -> tuple[str, Callable[[str], str]]:
        """The OpenAPI URL and a bundle file's URL, under the prefix a proxy may have stripped."""
        root = request.scope.get("root_path", "").rstrip("/")
        return f"{root}{app.openapi_url}", lambda name: f"{root}{ASSETS_URL}/{name}"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        spec, at = links(request)
        return get_swagger_ui_html(
            openapi_url=spec,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=at(SWAGGER_JS),
            swagger_css_url=at(SWAGGER_CSS),
            swagger_favicon_url=at(FAVICON),
            oauth2_redirect_url=None,  # the API takes bearer keys, no OAuth2 flow
            swagger_ui_parameters={**SWAGGER_PARAMETERS, **(app.swagger_ui_parameters or {})},
        )

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        spec, at = links(request)
        title = f"{app.title} - ReDoc"
        return get_redoc_html(
            openapi_url=spec,
            title=title,
            redoc_js_url=at(REDOC_JS),
            redoc_favicon_url=at(FAVICON),
            with_google_fonts=False,
        )
