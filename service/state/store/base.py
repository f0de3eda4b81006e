"""What every part of the store shares: the connection, the errors a caller may see, ``connect``."""

from __future__ import annotations

from typing import Any

import redis

from service.state.store.keys import Keys

STORE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
"""What a client sees while Redis is away (restarting, loading its append-only file, unreachable)."""
StoreError = redis.exceptions.RedisError
"""Any error of the store's Redis, :data:`STORE_ERRORS` included."""


class Fenced(Exception):
    """A worker's write was refused: its lease on the job is gone (another worker may hold it)."""


class TransitionRefused(Exception):
    """A status change that the job's current status does not allow."""

    def __init__(self, current: str | None) -> None:
        super().__init__(f"the job is {current}")
        self.current = current


class Part:
    """One concern of the store, over the store's one Redis connection.

    Args:
        client: a ``redis.Redis`` with ``decode_responses=True``.
        keys: the key names.
    """

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        # redis-py's annotations do not know about decode_responses=True: treat replies as Any here.
        self._redis: Any = client
        self._keys = keys


def connect(url: str, **kw: Any) -> redis.Redis:
    """A Redis client that decodes responses and fails fast when Redis is away."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=kw.pop("socket_connect_timeout", 2.0),
        socket_timeout=kw.pop("socket_timeout", 10.0),
        health_check_interval=kw.pop("health_check_interval", 15),
        **kw,
    )
