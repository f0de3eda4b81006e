"""Typed records in Redis hashes: one JSON value per field, every field written checked against its
record's model, listings per tenant newest first. Jobs, teachers and datasets are each a repository of
their record type (:class:`Uploads` for teachers and datasets, :class:`~service.state.store.jobs.Jobs`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar

import redis
from pydantic import TypeAdapter

from service.state.records import DatasetRecord, Record, TeacherRecord
from service.state.store.base import Fenced, Part
from service.state.store.keys import Keys

R = TypeVar("R", bound=Record)
U = TypeVar("U", TeacherRecord, DatasetRecord)

# Set fields of a record if the lease holds the token (KEYS: rec, lease; ARGV: token, f1, v1, ...).
_FENCED_HSET = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


@dataclass
class Page(Generic[R]):
    """One page of a listing: the records, whether more follow, and the cursor for the next page."""

    data: list[R]
    has_more: bool
    next_after: str | None


@cache
def _field(record_type: type[Record], name: str) -> TypeAdapter[Any]:
    """The validator of one field of a record type (KeyError for a field the record does not have)."""
    field = record_type.model_fields.get(name)
    if field is None or field.annotation is None:
        raise KeyError(f"{record_type.__name__} has no field {name!r}")
    return TypeAdapter(field.annotation)


def encoded(record_type: type[Record], fields: Mapping[str, Any]) -> list[str]:
    """``[name, JSON value, ...]`` of some fields of a record, each value validated as the record's field."""
    out: list[str] = []
    for name, value in fields.items():
        adapter = _field(record_type, name)
        out += [name, json.dumps(adapter.dump_python(adapter.validate_python(value), mode="json"))]
    return out


def encoded_record(record: Record) -> list[str]:
    """``[name, JSON value, ...]`` of every field of a record."""
    out: list[str] = []
    for name, value in record.model_dump(mode="json").items():
        out += [name, json.dumps(value)]
    return out


def decoded(record_type: type[R], raw: dict[str, str], tenant: str | None, status: str | None = None) -> R | None:
    """A record from its hash as Redis returns it, if it is the tenant's (and has ``status``)."""
    if not raw:
        return None
    fields = {k: json.loads(v) for k, v in raw.items()}
    if tenant is not None and fields.get("tenant") != tenant:
        return None
    if status is not None and fields.get("status") != status:
        return None
    return record_type.model_validate(fields)


class Repository(Part, Generic[R]):
    """The records of one type: read, update, delete and list them.

    Args:
        client: the store's Redis connection.
        keys: the key names.
        record_type: the records kept here; ids of another kind are none of them.
    """

    def __init__(self, client: redis.Redis, keys: Keys, record_type: type[R]) -> None:
        super().__init__(client, keys)
        self.record_type = record_type
        self._fenced_hset = client.register_script(_FENCED_HSET)

    def _mine(self, rid: str) -> bool:
        return rid.startswith(self.record_type.prefix + "_")

    def get(self, rid: str, tenant: str | None = None) -> R | None:
        """The record ``rid``, or None when there is none of this type or it belongs to another tenant."""
        if not self._mine(rid):
            return None
        return decoded(self.record_type, self._redis.hgetall(self._keys.record(rid)), tenant)

    def status(self, rid: str) -> str | None:
        """Only the ``status`` field of a record (cheap: workers poll a job's for cancellation)."""
        raw = self._redis.hget(self._keys.record(rid), "status")
        return json.loads(raw) if raw else None

    def update(self, rid: str, fields: Mapping[str, Any]) -> None:
        """Set fields of a record, each checked against the record's model.

        Raises:
            KeyError: no such record, or a field the record does not have.
            pydantic.ValidationError: a value that does not fit its field.
        """
        self._fenced_update(rid, fields, None, self._keys.no_lease(rid))

    def _fenced_update(self, rid: str, fields: Mapping[str, Any], token: str | None, lease: str) -> None:
        """:meth:`update`, only while ``lease`` holds ``token`` when one is given (else :class:`Fenced`)."""
        if not self._mine(rid):
            raise KeyError(rid)
        args = [token or "", *encoded(self.record_type, fields)]
        res = int(self._fenced_hset(keys=[self._keys.record(rid), lease], args=args))
        if res == 0:
            raise Fenced(rid)
        if res == -1:
            raise KeyError(rid)

    def delete(self, rid: str, tenant: str) -> None:
        """Remove a record and its index entry."""
        if not self._mine(rid):
            raise KeyError(rid)
        pipe = self._redis.pipeline(transaction=True)
        self._delete_more(pipe, rid, tenant)
        pipe.delete(self._keys.record(rid))
        pipe.zrem(self._keys.index(tenant, self.record_type.prefix), rid)
        pipe.execute()

    def _delete_more(self, pipe: Any, rid: str, tenant: str) -> None:
        """What else goes with a record, in the same transaction (nothing, but for a job)."""

    def page(self, tenant: str, limit: int, after: str | None = None, status: str | None = None) -> Page[R]:
        """The tenant's records, newest first, ``limit`` at a time after the cursor ``after`` (KeyError
        when it is not one of them), only those with ``status`` when given."""
        key = self._keys.index(tenant, self.record_type.prefix)
        hi: str = "+inf"
        if after is not None:
            score = self._redis.zscore(key, after)
            if score is None:
                raise KeyError(after)
            hi = f"({int(score)}"
        out: list[R] = []
        # Without a status filter nearly every id is a row: read a page (and one more) at a time.
        batch = limit + 1 if status is None else max(limit + 1, 50)
        while len(out) <= limit:
            ids = self._redis.zrevrangebyscore(key, hi, "-inf", start=0, num=batch, withscores=True)
            if not ids:
                break
            hi = self._collect(ids, tenant, status, out, limit)
            if len(ids) < batch:
                break
        has_more = len(out) > limit
        data = out[:limit]
        return Page(data, has_more, data[-1].id if has_more and data else None)

    def _collect(self, ids: list[tuple[str, float]], tenant: str, status: str | None, out: list[R], limit: int) -> str:
        """Append the records of a batch of ``(id, score)`` to ``out`` until it holds ``limit + 1``;
        returns the cursor after the last id looked at."""
        hi = ""
        pipe = self._redis.pipeline(transaction=False)  # the batch's records in one round trip
        for rid, _ in ids:
            pipe.hgetall(self._keys.record(rid))
        for (_, score), raw in zip(ids, pipe.execute(), strict=True):
            rec = decoded(self.record_type, raw, tenant, status)
            hi = f"({int(score)}"
            if rec is None:
                continue
            out.append(rec)
            if len(out) > limit:
                break
        return hi


class Uploads(Repository[U]):
    """Teachers or datasets: records a user uploads and a worker validates."""

    def create(self, record: U) -> None:
        """Store a new record and index it."""
        fields = encoded_record(record)
        seq = self._redis.incr(self._keys.sequence)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self._keys.record(record.id), mapping=dict(zip(fields[::2], fields[1::2], strict=True)))
        pipe.zadd(self._keys.index(record.tenant, record.prefix), {record.id: seq})
        pipe.execute()
