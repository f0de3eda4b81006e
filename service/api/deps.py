"""Dependencies every route uses: the tenant behind the API key, the store, the settings, the queue.

``Tenant``, ``StoreDep``, ``SettingsDep`` and ``QueueDep`` are ``Annotated`` dependencies, so that a
route's signature reads as a sentence: ``def get_job(job_id: str, tenant: Tenant, store: StoreDep)``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from service.api.errors import APIError, not_found
from service.state.queue import Queue
from service.state.records import Record, valid_id
from service.state.settings import Settings
from service.state.store import Repository, Store

R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class TenantCtx:
    """Who is calling: the tenant a valid API key belongs to."""

    name: str


class KeyRing:
    """API keys, kept only as SHA-256 digests and compared in constant time.

    Every presented key is hashed and compared against every known digest with
    ``hmac.compare_digest``, so neither the comparison nor the loop reveals how much of a key matched.
    """

    def __init__(self, keys: dict[str, str]) -> None:
        self._digests = [(hashlib.sha256(k.encode()).digest(), tenant) for k, tenant in keys.items()]

    def __len__(self) -> int:
        return len(self._digests)

    def tenant(self, key: str) -> TenantCtx | None:
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for known, tenant in self._digests:
            if hmac.compare_digest(known, digest):
                found = tenant
        return TenantCtx(found) if found is not None else None


async def _auth(request: Request) -> TenantCtx:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise APIError(
            401, "unauthorized", "send 'Authorization: Bearer <api key>'", headers={"WWW-Authenticate": "Bearer"}
        )
    ctx = request.app.state.keyring.tenant(key.strip())
    if ctx is None:
        raise APIError(401, "unauthorized", "unknown API key", headers={"WWW-Authenticate": "Bearer"})
    request.state.tenant = ctx.name
    return ctx


async def _store(request: Request) -> Store:
    return request.app.state.store


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _queue(request: Request) -> Queue:
    return request.app.state.queue


# The dependencies are coroutines: none of them waits on anything (the key check is a few hashes in
# memory), and a plain function would cost each request a trip through the thread pool.
Tenant = Annotated[TenantCtx, Depends(_auth)]
StoreDep = Annotated[Store, Depends(_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]
QueueDep = Annotated[Queue, Depends(_queue)]


def owned(records: Repository[R], tenant: str, rid: str) -> R:
    """The tenant's record ``rid`` among ``records`` (``store.jobs``, ``store.teachers``, ...).

    Raises:
        APIError: 404 when there is no such record, or it is another tenant's (the same answer, so that
            ids of other tenants cannot be probed).
    """
    kind = records.record_type
    rec = records.get(rid, tenant) if valid_id(rid, kind.prefix) else None
    if rec is None:
        raise not_found(kind.noun, rid)
    return rec
