"""The API's documentation pages work with the network off (service/api/docs.py).

In process: ``/docs`` and ``/redoc`` reference no outside URL, and every script, stylesheet, icon and
OpenAPI document they reference is served by the app itself, with the right content type, and is the
file the ``fastapi-offline`` package ships. In a browser: headless Chromium, allowed no network but
the loopback, renders every operation of the document on both pages (skipped without Chromium).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.docs import ASSETS_URL, asset_dir
from service.launch.commands import api_command
from service.launch.embedded import _wait_http, free_port
from service.state.settings import Settings

pytestmark = pytest.mark.api

ROOT = Path(__file__).resolve().parent.parent
KEY = "docs-test-key-" + "d" * 16
PAGES = ("/docs", "/redoc")


def dead_redis() -> str:
    """A Redis URL nobody listens on: the documentation pages need no store."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    settings = Settings(
        redis_url=dead_redis(), api_keys=f"{KEY}=docs", artifact_root=tmp_path_factory.mktemp("artifacts")
    )
    return TestClient(create_app(settings))


class _References(HTMLParser):
    """What a page makes the browser fetch: (kind, url) for scripts, stylesheets, icons and ReDoc's spec."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "script" and a.get("src"):
            self.found.append(("script", a["src"]))
        elif tag == "script":
            self._in_script = True
        elif tag == "link" and a.get("href"):
            self.found.append(("icon" if "icon" in a.get("rel", "") else a.get("rel", "link"), a["href"]))
        elif tag in ("img", "iframe") and a.get("src"):
            self.found.append((tag, a["src"]))
        elif tag == "redoc" and a.get("spec-url"):
            self.found.append(("openapi", a["spec-url"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline.append(data)


def references(html: str) -> list[tuple[str, str]]:
    """Every URL ``html`` loads, including the OpenAPI URL that Swagger UI's inline script fetches."""
    parser = _References()
    parser.feed(html)
    found = list(parser.found)
    for script in parser.inline:
        found += [("openapi", url) for url in re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", script)]
    return found


# What each kind of reference must be: content type, smallest plausible size, a marker in the body.
EXPECTED = {
    "script": (("text/javascript", "application/javascript"), 100_000),
    "stylesheet": (("text/css",), 10_000),
    "icon": (("image/png",), 500),
    "openapi": (("application/json",), 10_000),
}
# The global each page's inline code calls (Swagger UI) or the custom element it needs (ReDoc).
BUNDLE_EXPORTS = {"/docs": "SwaggerUIBundle", "/redoc": "Redoc"}


@pytest.mark.unit
@pytest.mark.parametrize("page", PAGES)
def test_a_docs_page_loads_everything_from_the_app_itself(client: TestClient, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://", r.text), "the page names an outside URL"
    refs = references(r.text)
    kinds = sorted(kind for kind, _ in refs)
    assert kinds == (["icon", "openapi", "script", "stylesheet"] if page == "/docs" else ["icon", "openapi", "script"])
    for kind, url in refs:
        # this server, not a protocol-relative outside host
        assert url.startswith("/") and not url.startswith("//"), (kind, url)
        got = client.get(url)
        types, least = EXPECTED[kind]
        assert got.status_code == 200, (kind, url, got.status_code)
        assert got.headers["content-type"].split(";")[0] in types, (kind, url, got.headers["content-type"])
        assert len(got.content) >= least, (kind, url, len(got.content))
        if kind == "openapi":
            assert "/v1/jobs" in json.loads(got.content)["paths"]
            continue
        assert url.startswith(ASSETS_URL + "/")
        assert got.content == (asset_dir() / url.removeprefix(ASSETS_URL + "/")).read_bytes()  # the package's file
        if kind == "script":
            assert BUNDLE_EXPORTS[page].encode() in got.content


@pytest.mark.unit
def test_assets_are_only_the_package_files_and_count_in_metrics(client: TestClient) -> None:
    missing = client.get(f"{ASSETS_URL}/no-such-file.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get(f"{ASSETS_URL}/%2e%2e/core.py").status_code == 404  # nothing outside the bundle directory
    client.get(f"{ASSETS_URL}/swagger-ui.css")
    metrics = client.get("/metrics").text
    assert f'gacd_http_requests_total{{method="GET",route="{ASSETS_URL}",status="200"}}' in metrics
    assert client.get("/openapi.json").json()["paths"].keys().isdisjoint({"/docs", "/redoc", ASSETS_URL})


# --------------------------------------------------------------------------------------------------
# In a browser with no network but the loopback
# --------------------------------------------------------------------------------------------------
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def offline_browser_flags(profile: Path) -> list[str]:
    """Headless Chromium that can reach 127.0.0.1 and nothing else: host names do not resolve, and
    any other address goes to a proxy that is not there (loopback is never proxied)."""
    return [
        "--headless",
        "--disable-gpu",
        "--no-sandbox",  # tests run as root here
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--proxy-server=http://127.0.0.1:{free_port()}",
        "--virtual-time-budget=15000",  # let the page's scripts fetch the document and render it
    ]


def rendered(url: str, profile: Path) -> str:
    assert CHROMIUM is not None
    out = subprocess.run(
        [CHROMIUM, *offline_browser_flags(profile), "--dump-dom", url], capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API as ``gacd serve`` runs it (its own uvicorn process, on a free port); no Redis is needed."""
    tmp = tmp_path_factory.mktemp("served")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GACD_")},
        "GACD_API_KEYS": f"{KEY}=docs",
        "GACD_REDIS_URL": dead_redis(),
        "GACD_ARTIFACT_ROOT": str(tmp / "artifacts"),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    with open(tmp / "api.log", "wb") as log:
        proc = subprocess.Popen(api_command("127.0.0.1", port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", 60, [proc])
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def operations(doc: dict[str, object]) -> set[tuple[str, str]]:
    paths = doc["paths"]
    assert isinstance(paths, dict)
    return {(method, path) for path, ops in paths.items() for method in ops}


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_the_browser_cannot_reach_a_cdn(tmp_path: Path) -> None:
    """The control: under these flags a page that loads Swagger UI from its CDN gets nothing."""
    page = tmp_path / "cdn.html"
    page.write_text(
        '<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>'
        "<script>document.title = 'bundle: ' + typeof SwaggerUIBundle</script>",
        encoding="utf-8",
    )
    assert "<title>bundle: undefined</title>" in rendered(page.as_uri(), tmp_path / "profile")


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_swagger_ui_renders_every_operation_offline(served: str, client: TestClient, tmp_path: Path) -> None:
    dom = rendered(served + "/docs", tmp_path / "profile")
    shown = {
        (method, path)
        for method, path in re.findall(r'class="opblock opblock-(\w+)\b.*?data-path="([^"]*)"', dom, flags=re.S)
    }
    assert shown == operations(client.get("/openapi.json").json())


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_redoc_renders_every_operation_offline(served: str, client: TestClient, tmp_path: Path) -> None:
    dom = rendered(served + "/redoc", tmp_path / "profile")
    shown = set(re.findall(r'id="operation/([^"]+)"', dom))
    doc = client.get("/openapi.json").json()
    assert shown == {op["operationId"] for ops in doc["paths"].values() for op in ops.values()}
