"""Consumer liveness in Redis: each consumer's heartbeat record, written by the consumer and read by the API's
readiness check.

A record is a key of its own that Redis expires (``CONSUMER_STALE``), indexed in a sorted set scored by expiry,
so readers find the records without ``SCAN``. Index entries are pruned one time to live after they expired, which
leaves room for clocks that differ between hosts: the record's own expiry (Redis' clock) decides liveness.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from activeusers.connections import REDIS_ERRORS, AsyncClient, SyncClient
from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema
from activeusers.settings import Settings

# Bounds the readiness check's read; far more consumer-group members than any topic has partitions.
HEARTBEATS_READ = 1000


class Heartbeats:
    """Publishes and withdraws one consumer process' heartbeat records (blocking redis-py)."""

    def __init__(self, client: SyncClient, keys: KeySchema, settings: Settings) -> None:
        self._client = client
        self._keys = keys
        self._ttl_ms = max(1, int(settings.consumer_stale_s * 1000))

    def beat(self, member: str, state: dict[str, object], now_ms: int) -> None:
        """Publish ``member``'s liveness record for ``CONSUMER_STALE`` (raises :class:`StoreUnavailable`)."""
        index = self._keys.heartbeats()
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.set(self._keys.heartbeat(member), orjson.dumps(state), px=self._ttl_ms)
                pipe.zadd(index, {member: now_ms + self._ttl_ms})
                pipe.zremrangebyscore(index, "-inf", now_ms - self._ttl_ms)
                pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis heartbeat failed: {exc}") from exc

    def forget(self, member: str) -> None:
        """Remove ``member``'s liveness record (a clean stop; raises :class:`StoreUnavailable`)."""
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.delete(self._keys.heartbeat(member))
                pipe.zrem(self._keys.heartbeats(), member)
                pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis heartbeat removal failed: {exc}") from exc


async def live_heartbeats(client: AsyncClient, keys: KeySchema) -> dict[str, dict[str, Any]]:
    """The liveness record of every consumer whose heartbeat has not expired, by member id (at most
    ``HEARTBEATS_READ`` of them, the freshest); raises :class:`StoreUnavailable`."""
    try:
        found = await client.zrange(keys.heartbeats(), 0, HEARTBEATS_READ - 1, desc=True)
        members = cast(list[bytes | str], found)  # without withscores: the members alone
        if not members:
            return {}
        names = [_text(member) for member in members]
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(keys.heartbeat(name))
            values = await pipe.execute()
    except REDIS_ERRORS as exc:
        raise StoreUnavailable(f"Redis read failed: {exc}") from exc
    beats: dict[str, dict[str, Any]] = {}
    for name, value in zip(names, values, strict=True):
        if value is None:
            continue  # expired: the member died without withdrawing it (or its index entry awaits pruning)
        try:
            beat = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue  # a foreign or truncated value says nothing about liveness
        if isinstance(beat, dict):
            beats[name] = beat
    return beats


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
