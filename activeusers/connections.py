"""Connections to Redis: the clients (a single server or a Redis Cluster), their security, and the bound on the
connections of the asyncio clients; with the packed form every command sent on them takes (:func:`pack_command`).

Redis Cluster: ``REDIS_CLUSTER=true`` makes ``REDIS_URL`` name one seed node of a cluster (any node; the client
reads the slot map from it).

Connections of the asyncio clients (the API's) are bounded, ``REDIS_POOL_SIZE`` per process (per node on a
cluster), and a call that finds them all busy waits for one up to ``REDIS_POOL_WAIT`` instead of failing: a single
server's client takes redis-py's :class:`~redis.asyncio.BlockingConnectionPool`; redis-py's asyncio cluster client
has no blocking pool (a node past its ``max_connections`` raises ``MaxConnectionsError``), so every operation of
such a client holds a permit of a :class:`Gate` of the pool's size (:func:`leased`), each operation using at most
one connection per node. A wait that runs out raises :class:`PoolExhausted`.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeAlias, cast

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from activeusers.settings import Settings

REDIS_ERRORS = (redis.RedisError, RedisClusterException, OSError)
SyncClient: TypeAlias = redis.Redis | RedisCluster
AsyncClient: TypeAlias = aioredis.Redis | AsyncRedisCluster

# A pre-packed command and its routing key (its first key: the cluster sends it to the owner of that key's slot).
Routed: TypeAlias = tuple[str, bytes]

# A command in Redis' wire format, packed by hiredis in C (its stub types the argument as a one-element tuple; it
# takes a command of any length).
pack_command = cast(Callable[[tuple[str | int | bytes, ...]], bytes], hiredis.pack_command)


# redis-py's default retries a dead connection several times with growing sleeps, which multiplies the
# configured timeout; callers here have their own retry policy (the consumer) or must answer fast (the API).
_QUICK_BACKOFF = {"cap": 0.05, "base": 0.01}


def redis_security(settings: Settings) -> dict[str, Any]:
    """The credentials and TLS keyword arguments of every Redis client (sync and asyncio): the ACL user and
    password, and for ``rediss://`` the CA, the optional client certificate and host-name checking."""
    kwargs: dict[str, Any] = {}
    if settings.redis_username:
        kwargs["username"] = settings.redis_username
    if settings.redis_password:
        kwargs["password"] = settings.redis_password.reveal()
    if settings.redis_url.startswith("rediss://"):
        kwargs.update(
            ssl_cert_reqs="required",
            ssl_check_hostname=settings.redis_ssl_check_hostname,
            ssl_ca_certs=settings.redis_ssl_ca_file or None,
            ssl_certfile=settings.redis_ssl_cert_file or None,
            ssl_keyfile=settings.redis_ssl_key_file or None,
        )
        if settings.redis_ssl_key_password:
            # Only when set: redis-py's asyncio cluster client takes no key password (the settings refuse one
            # with REDIS_CLUSTER), and refuses the keyword even as None.
            kwargs["ssl_password"] = settings.redis_ssl_key_password.reveal()
    return kwargs


def _client_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments every client shares: the bounded timeouts and the security of the settings."""
    return {
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        "health_check_interval": 30,
        **redis_security(settings),
    }


def redis_client(settings: Settings) -> SyncClient:
    """A blocking client with the bounded timeouts and the security of the settings: redis-py's
    :class:`~redis.cluster.RedisCluster` when ``REDIS_CLUSTER`` is on (it reads the slot map from the seed node
    of ``REDIS_URL`` at once), a plain :class:`redis.Redis` otherwise."""
    common = _client_options(settings)
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **common)
    client: redis.Redis = redis.Redis.from_url(
        settings.redis_url, retry=Retry(ExponentialBackoff(**_QUICK_BACKOFF), retries=1), **common
    )
    return client


def async_redis_client(settings: Settings) -> AsyncClient:
    """An asyncio client with the bounded timeouts, the security and the pool of the settings: redis-py's asyncio
    :class:`~redis.asyncio.cluster.RedisCluster` when ``REDIS_CLUSTER`` is on (it connects on first use; each
    node's connections bounded by ``REDIS_POOL_SIZE`` through the client's :class:`Gate`), else a plain one on a
    :class:`~redis.asyncio.BlockingConnectionPool` of ``REDIS_POOL_SIZE`` connections. Either way a call waits up
    to ``REDIS_POOL_WAIT`` for a free connection."""
    common = _client_options(settings)
    size, wait_s = settings.redis_pool_size, settings.redis_pool_wait_s
    client: AsyncClient
    if settings.redis_cluster:
        # An operation holds one connection per node, two when an ASK sends some of its commands to a node that
        # owns others of them (a slot being migrated): the gate bounds the operations, the nodes the connections.
        client = AsyncRedisCluster.from_url(settings.redis_url, max_connections=2 * size, **common)
    else:
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=size,
            timeout=wait_s,
            retry=AsyncRetry(ExponentialBackoff(**_QUICK_BACKOFF), retries=1),
            **common,
        )
        client = aioredis.Redis.from_pool(pool)
    with _GATES_LOCK:
        _GATES[client] = Gate(size, wait_s)
    return client


class PoolExhausted(redis.ConnectionError):
    """No Redis connection came free within ``REDIS_POOL_WAIT`` (every one was busy the whole time)."""


class Gate:
    """At most ``size`` Redis operations of one asyncio client at once; the next ones wait, each up to
    ``wait_s``, in arrival order (an asyncio semaphore; one per client, used on its event loop only)."""

    __slots__ = ("_free", "in_use", "size", "wait_s")

    def __init__(self, size: int, wait_s: float) -> None:
        self.size = size
        self.wait_s = wait_s
        self.in_use = 0
        self._free = asyncio.Semaphore(size)

    async def acquire(self) -> None:
        """Take a permit, waiting up to ``wait_s``; :class:`PoolExhausted` when none came free."""
        if not self._free.locked():
            await self._free.acquire()  # returns at once: a permit is free
        else:
            try:
                async with asyncio.timeout(self.wait_s):
                    await self._free.acquire()
            except TimeoutError:
                raise PoolExhausted(
                    f"no Redis connection free within REDIS_POOL_WAIT ({self.wait_s:g}s): all {self.size} "
                    "(REDIS_POOL_SIZE) busy"
                ) from None
        self.in_use += 1

    def release(self) -> None:
        """Give a permit back."""
        self.in_use -= 1
        self._free.release()


class _Lease:
    """``async with leased(client)``: a permit of the client's gate for the block (nothing when it has none)."""

    __slots__ = ("_gate",)

    def __init__(self, gate: Gate | None) -> None:
        self._gate = gate

    async def __aenter__(self) -> None:
        if self._gate is not None:
            await self._gate.acquire()

    async def __aexit__(self, *exc: object) -> None:
        if self._gate is not None:
            self._gate.release()


_GATES: weakref.WeakKeyDictionary[AsyncClient, Gate] = weakref.WeakKeyDictionary()
_GATES_LOCK = threading.Lock()


def gate_of(client: AsyncClient) -> Gate | None:
    """The gate :func:`async_redis_client` gave ``client`` (``None`` for a client made otherwise)."""
    return _GATES.get(client)


def leased(client: AsyncClient) -> _Lease:
    """An async context manager holding a permit of ``client``'s gate: wrap every redis-py call of an asyncio
    client in it (the packed-command transport does), so that a cluster client never asks a node for more
    connections than it has and a burst waits (up to ``REDIS_POOL_WAIT``, then :class:`PoolExhausted`)."""
    return _Lease(_GATES.get(client))
