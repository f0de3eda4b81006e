"""Uploads streamed straight to disk, with a size limit and nothing left behind on failure.

A multipart body is parsed as it arrives (``python-multipart``'s push parser): the one file part is
written to a ``.partial`` file in the destination directory while its SHA-256 is computed, small text
fields are kept in memory. Past the size limit, on a malformed body or when the client goes away, the
partial file is removed and the request fails (413, 400). Only a complete upload is renamed to its
final name. If the API process itself dies mid-upload, the ``.partial`` file is what remains. Its name
carries the instance id of the API process that wrote it (``.upload-{instance}-{random}.partial``), and
every API process keeps a heartbeat in the store and sweeps the artifact store now and then
(:func:`sweep_partials`): a partial whose writer's heartbeat is gone is removed, with the upload's
folder when nothing else is in it. So an API restarted mid-upload leaves nothing behind, and with many
API replicas on one shared artifact store none of them removes an upload another one is receiving.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from service.api.errors import APIError

log = logging.getLogger("gacd.api")
PARTIAL_SUFFIX = ".partial"
PARTIAL_PREFIX = ".upload-"
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32


@dataclass
class Upload:
    """A received multipart upload: its text fields and the one file, complete on disk."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    path: Path | None = None
    size: int = 0
    sha256: str = ""


def partial_name(instance: str) -> str:
    """A fresh name for a partial upload written by the API process ``instance``."""
    return f"{PARTIAL_PREFIX}{instance}-{secrets.token_hex(8)}{PARTIAL_SUFFIX}"


def partial_owner(name: str) -> str | None:
    """The instance id in a partial upload's name (None for a name not made by :func:`partial_name`)."""
    if not (name.startswith(PARTIAL_PREFIX) and name.endswith(PARTIAL_SUFFIX)):
        return None
    owner, sep, _ = name[len(PARTIAL_PREFIX) : -len(PARTIAL_SUFFIX)].rpartition("-")
    return owner if sep and owner else None


class _Receiver:
    def __init__(self, dest_dir: Path, file_field: str, instance: str) -> None:
        self.dest_dir, self.file_field, self.instance = dest_dir, file_field, instance
        self.upload = Upload()
        self.partial: Path | None = None
        self._fh: Any = None
        self._hash = hashlib.sha256()
        self._headers: dict[str, str] = {}
        self._hname = b""
        self._hvalue = b""
        self._part_name: str | None = None
        self._part_is_file = False
        self._buf = bytearray()

    # python-multipart callbacks ---------------------------------------------------------------------
    def on_part_begin(self) -> None:
        self._headers, self._part_name, self._part_is_file = {}, None, False
        self._buf = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._hname.decode("latin-1").lower()] = self._hvalue.decode("latin-1")
        self._hname, self._hvalue = b"", b""

    def on_headers_finished(self) -> None:
        disp, opts = parse_options_header(self._headers.get("content-disposition", ""))
        if disp != b"form-data" or b"name" not in opts:
            raise _Reject(
                APIError(400, "malformed_multipart", "a part lacks 'Content-Disposition: form-data; name=...'")
            )
        self._part_name = opts[b"name"].decode("utf-8", "replace")
        if b"filename" in opts:
            if self._part_name != self.file_field:
                raise _Reject(
                    APIError(422, "invalid_request", f"files go in the field {self.file_field!r}", self._part_name)
                )
            if self.partial is not None:
                raise _Reject(APIError(422, "invalid_request", "send exactly one file", self.file_field))
            self._part_is_file = True
            self.upload.filename = Path(opts[b"filename"].decode("utf-8", "replace").replace("\\", "/")).name
            self.partial = self.dest_dir / partial_name(self.instance)
            self._fh = open(self.partial, "wb")  # noqa: SIM115 (closed in on_part_end / cleanup)
        elif self._part_name in self.upload.fields:  # one value per field, as the documents say
            raise _Reject(APIError(422, "invalid_request", f"{self._part_name}: given more than once", self._part_name))
        elif len(self.upload.fields) >= MAX_FIELDS:
            raise _Reject(APIError(422, "invalid_request", f"at most {MAX_FIELDS} form fields"))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._part_is_file:
            assert self._fh is not None
            self._fh.write(chunk)
            self._hash.update(chunk)
            self.upload.size += len(chunk)
        else:
            self._buf += chunk
            if len(self._buf) > MAX_FIELD_BYTES:
                raise _Reject(
                    APIError(413, "too_large", f"form field {self._part_name!r} is over 64 KiB", self._part_name)
                )

    def on_part_end(self) -> None:
        if self._part_is_file and self._fh is not None:
            self._fh.close()
            self._fh = None
        elif self._part_name is not None:
            self.upload.fields[self._part_name] = self._buf.decode("utf-8", "replace")

    def cleanup(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.partial is not None:
            with contextlib.suppress(FileNotFoundError):
                self.partial.unlink()


class _Reject(Exception):
    def __init__(self, error: APIError) -> None:
        self.error = error


def _storage_error(exc: OSError) -> APIError:
    """The artifact store could not take the upload (full, read-only, unreachable): 503, retry later."""
    log.error("upload failed on the artifact store: %s", exc)
    return APIError(
        503,
        "storage_unavailable",
        f"the artifact store cannot take the upload now ({exc.strerror or type(exc).__name__}); retry later",
        headers={"Retry-After": "60"},
    )


def _too_large(limit: int) -> APIError:
    return APIError(413, "too_large", f"the upload is over the limit of {limit} bytes")


async def receive_file(
    request: Request, dest_dir: Path, final_name: str, max_bytes: int, file_field: str = "file"
) -> Upload:
    """Stream a ``multipart/form-data`` body; the file lands at ``dest_dir / final_name``.

    Raises:
        APIError: 415 (not multipart), 400 (malformed), 413 (over ``max_bytes``), 422 (no file).
    """
    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data":
        raise APIError(415, "unsupported_media_type", "send multipart/form-data with the file in the field 'file'")
    boundary = opts.get(b"boundary")
    if not boundary:
        raise APIError(400, "malformed_multipart", "the multipart Content-Type has no boundary")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise _too_large(max_bytes)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _storage_error(exc) from None
    rx = _Receiver(dest_dir, file_field, request.app.state.instance)
    callbacks = {
        name: getattr(rx, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_part_end",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
        )
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + 64 * 1024 or rx.upload.size > max_bytes:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
        if rx.upload.size > max_bytes:
            raise _too_large(max_bytes)
        if rx.partial is None or rx._fh is not None:
            raise APIError(422, "invalid_request", "the upload has no complete file in the field 'file'", file_field)
    except _Reject as exc:
        rx.cleanup()
        raise exc.error from None
    except MultipartParseError as exc:
        rx.cleanup()
        raise APIError(400, "malformed_multipart", f"the multipart body is malformed: {exc}") from None
    except ClientDisconnect:
        rx.cleanup()
        raise APIError(400, "client_disconnected", "the client went away before the upload completed") from None
    except OSError as exc:
        rx.cleanup()
        raise _storage_error(exc) from None
    except BaseException:
        rx.cleanup()
        raise
    final = dest_dir / final_name
    os.replace(rx.partial, final)
    up = rx.upload
    up.path, up.sha256 = final, rx._hash.hexdigest()
    return up


@contextlib.contextmanager
def removed_on_error(folder: Path) -> Iterator[Path]:
    """Around an upload and its checks: any failure removes ``folder``, so a refused upload leaves nothing."""
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def sweep_partials(root: Path, is_alive: Callable[[str], bool], grace_seconds: float = 10.0) -> int:
    """Remove the partial uploads under ``root`` whose API process is gone; returns how many.

    A partial is left alone while it was written in the last ``grace_seconds`` or while
    ``is_alive(instance)`` says its writer still runs. The folder it was in goes too when it is empty.
    """
    if not root.is_dir():
        return 0
    cutoff = time.time() - grace_seconds
    n = 0
    # uploads land in {tenant}/teachers/{id}/ and {tenant}/datasets/{id}/: look there only, not through
    # the (much larger) job folders
    pattern = f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"
    found = [*root.glob(f"*/teachers/*/{pattern}"), *root.glob(f"*/datasets/*/{pattern}")]
    for p in found:
        try:
            if not p.is_file() or p.stat().st_mtime > cutoff:
                continue
            owner = partial_owner(p.name)
            if owner is not None and is_alive(owner):
                continue
            p.unlink()
            n += 1
            with contextlib.suppress(OSError):
                p.parent.rmdir()  # only when empty: the upload's own folder
        except OSError:
            continue
    return n


def file_encoding(example: str, suffixes: Iterable[str]) -> dict[str, Any]:
    """The OpenAPI ``encoding`` of an upload's ``file`` part: its name's suffix says its format."""
    names = ", ".join(f"*{suffix}" for suffix in suffixes)
    return {
        "contentType": "application/octet-stream",
        "headers": {
            "Content-Disposition": {
                "description": f"the part's filename says the file's format: {names}",
                "schema": {"type": "string", "example": f'form-data; name="file"; filename="{example}"'},
            }
        },
    }
