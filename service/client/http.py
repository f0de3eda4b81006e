"""A small Python client of the HTTP API (what the ``gacd`` client commands and the demo use).

client = Client("http://127.0.0.1:8000", api_key)
job = client.submit({"method": "at", "student": {"arch": "resnet10_w16"}, ...})
job = client.wait(job["id"], on_progress=print)
client.download(job["id"], "runs/job")
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

TERMINAL = ("succeeded", "failed", "cancelled")


class ClientError(Exception):
    """An error response of the API: ``status``, ``code``, ``message`` and ``field``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.status, self.code, self.message, self.field = status, code, message, field


def find_server(var: Path = Path("var")) -> tuple[str, str] | None:
    """(url, api key) from $GACD_URL / $GACD_API_KEY, else from ``var/serve.json`` of ``gacd serve``."""
    url, key = os.environ.get("GACD_URL"), os.environ.get("GACD_API_KEY")
    if url and key:
        return url, key
    path = var / "serve.json"
    if path.is_file():
        info = json.loads(path.read_text(encoding="utf-8"))
        return url or info["url"], key or info["api_key"]
    return None


class Client:
    def __init__(self, url: str, api_key: str, timeout: float = 60.0) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise ClientError(r.status_code, err["code"], err["message"], err.get("field"))
            except (ValueError, KeyError, TypeError):
                raise ClientError(r.status_code, "http_error", r.text[:500] or r.reason_phrase) from None
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else None

    # --- teachers and datasets -------------------------------------------------------------------
    def upload_teacher(
        self,
        path: str | Path,
        arch: str,
        num_classes: int | None,
        dataset: str,
        name: str | None = None,
        *,
        normalization: str | None = None,
        allow_weak: bool = False,
        **norm: Any,
    ) -> dict[str, Any]:
        """Upload weights; ``num_classes`` None reads it from the file, ``normalization`` None leaves the
        file's (gacd metadata, mu/sigma buffers) or none."""
        data: dict[str, str] = {"arch": arch, "dataset": dataset}
        if num_classes is not None:
            data["num_classes"] = str(num_classes)
        if name:
            data["name"] = name
        if normalization:
            data["normalization"] = normalization
        if allow_weak:
            data["allow_weak"] = "true"
        for k in ("mean", "std"):
            if norm.get(k) is not None:
                data[k] = json.dumps(list(norm[k]))
        p = Path(path)
        with open(p, "rb") as f:
            return self._call(
                "POST", "/v1/teachers", data=data, files={"file": (p.name, f, "application/octet-stream")}
            )

    def teacher_from_job(self, job_id: str, name: str | None = None, allow_weak: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"allow_weak": allow_weak}
        if name:
            body["name"] = name
        return self._call("POST", f"/v1/jobs/{job_id}/teacher", json=body)

    def teacher(self, teacher_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/teachers/{teacher_id}")

    def upload_dataset(self, path: str | Path, name: str | None = None) -> dict[str, Any]:
        p = Path(path)
        with open(p, "rb") as f:
            data = {"name": name} if name else {}
            return self._call(
                "POST", "/v1/datasets", data=data, files={"file": (p.name, f, "application/octet-stream")}
            )

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/datasets/{dataset_id}")

    def wait_ready(self, kind: str, rid: str, timeout: float = 600.0) -> dict[str, Any]:
        """Poll a teacher or dataset until it is ``ready``; ClientError when it is ``invalid``."""
        get = self.teacher if kind == "teacher" else self.dataset
        deadline = time.monotonic() + timeout
        while True:
            rec = get(rid)
            if rec["status"] == "ready":
                return rec
            if rec["status"] == "invalid":
                code = rec.get("error_code") or f"invalid_{kind}"
                raise ClientError(422, code, f"{kind} {rid} is invalid: {rec['error']}")
            if time.monotonic() > deadline:
                raise ClientError(408, "timeout", f"{kind} {rid} is still {rec['status']} after {timeout:.0f} s")
            time.sleep(0.5)

    # --- jobs --------------------------------------------------------------------------------------
    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/v1/jobs", json=spec, headers=headers)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def jobs(self, status: str | None = None, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in {"status": status, "limit": limit, "after": after}.items() if v is not None}
        return self._call("GET", "/v1/jobs", params=params)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel")

    def events(self, job_id: str, after: str | None = None) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}/events", params={"after": after} if after else {})

    def wait(
        self,
        job_id: str,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 1.0,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Poll until the job finishes; calls ``on_progress(job)`` and ``on_event(event)`` as they come."""
        after = None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_event is not None:
                page = self.events(job_id, after)
                for ev in page["data"]:
                    on_event(ev)
                    after = ev["id"]
            if on_progress is not None:
                on_progress(job)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(408, "timeout", f"job {job_id} is still {job['status']}")
            time.sleep(poll)

    def download(self, job_id: str, out_dir: str | Path, names: list[str] | None = None) -> list[Path]:
        """Download the job's artifacts into ``out_dir``, checking each file's SHA-256."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        listing = self._call("GET", f"/v1/jobs/{job_id}/artifacts")["data"]
        paths = []
        for art in listing:
            if names and art["name"] not in names:
                continue
            target = out / art["name"]
            h = hashlib.sha256()
            with self.http.stream("GET", f"/v1/jobs/{job_id}/artifacts/{art['name']}") as r:
                if r.status_code != 200:
                    raise ClientError(r.status_code, "download_failed", f"{art['name']}: HTTP {r.status_code}")
                with open(target, "wb") as f:
                    for chunk in r.iter_bytes():
                        h.update(chunk)
                        f.write(chunk)
            if h.hexdigest() != art["sha256"]:
                raise ClientError(502, "checksum_mismatch", f"{art['name']}: SHA-256 does not match the listing")
            paths.append(target)
        return paths
