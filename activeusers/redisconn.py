"""Connections to Redis: the clients (a single server or a Redis Cluster), their security, the start-up check,
and the one path that sends pre-packed commands and reads their replies.

Redis Cluster: ``REDIS_CLUSTER=true`` makes ``REDIS_URL`` name one seed node of a cluster (any node; the client
reads the slot map from it). The writer and the reader send hiredis-packed commands on raw connections instead
of redis-py's pipelines (far less Python per command); :func:`send_commands` and :func:`send_commands_async`
are where those go to the right node: each command comes with its routing key (its first key), commands are
grouped by the node that owns the key's hash slot, each group goes in one write on one of that node's
connections, and the replies come back in the caller's order. A ``MOVED`` reply (the slot map changed) refreshes
the map and resends that command to the new owner, an ``ASK`` reply (a slot being migrated) resends it once with
``ASKING`` to the node named, a ``NOSCRIPT`` reply loads the given scripts on every primary and resends.
Refusals come back as exception objects in their place, never raised mid-stream, so a connection stays in step
with its replies. A command sent again runs after the others of its call: the commands of one call must not
depend on each other's order (the writer's are idempotent additions; a reader's are reads).

Connections of the asyncio clients (the API's) are bounded, ``REDIS_POOL_SIZE`` per process (per node on a
cluster), and a call that finds them all busy waits for one up to ``REDIS_POOL_WAIT`` instead of failing: a single
server's client takes redis-py's :class:`~redis.asyncio.BlockingConnectionPool`; redis-py's asyncio cluster client
has no blocking pool (a node past its ``max_connections`` raises ``MaxConnectionsError``), so every operation of
such a client holds a permit of a :class:`Gate` of the pool's size (:func:`leased`), each operation using at most
one connection per node. A wait that runs out raises :class:`PoolExhausted`.

What a cluster client met on that path (the commands sent again after ``MOVED``, ``ASK`` or ``TRYAGAIN``, the
slot-map reloads and the failed ones) is counted per client, :class:`ClusterStats`; :func:`cluster_counts` reads
those counts with the nodes of the client's slot map, for the metrics, without sending anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import math
import socket
import ssl
import threading
import urllib.parse
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, TypeVar, cast

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.cluster import PRIMARY, ClusterNode, RedisCluster
from redis.crc import key_slot as _key_slot
from redis.exceptions import AskError, MovedError, NoScriptError, RedisClusterException, TryAgainError
from redis.retry import Retry

from activeusers.errors import ConfigError
from activeusers.settings import Settings, redacted_url

REDIS_ERRORS = (redis.RedisError, RedisClusterException, OSError)
SyncClient: TypeAlias = redis.Redis | RedisCluster
AsyncClient: TypeAlias = aioredis.Redis | AsyncRedisCluster
# A command redirected more often than this while the slot map settles keeps its last MOVED/ASK reply.
MAX_REDIRECTS: Final = 5
ASKING: Final = b"*1\r\n$6\r\nASKING\r\n"
# The writer's and reader's keys repeat from batch to batch (days, hours, buckets): their slots are remembered.
SLOT_MEMO_KEYS: Final = 65_536

# A pre-packed command and its routing key (its first key: the cluster sends it to the owner of that key's slot).
Routed: TypeAlias = tuple[str, bytes]
N = TypeVar("N")


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
    client in it (:func:`send_commands_async` does), so that a cluster client never asks a node for more
    connections than it has and a burst waits (up to ``REDIS_POOL_WAIT``, then :class:`PoolExhausted`)."""
    return _Lease(_GATES.get(client))


def check_redis(settings: Settings) -> None:
    """One PING at start-up (bounded by REDIS_TIMEOUT): raise :class:`ConfigError` naming the setting when the
    credentials, the certificates or TLS itself do not match the server. A server that is merely unreachable
    is left to the caller's retries (it may be starting)."""
    client: SyncClient | None = None
    try:
        client = redis_client(settings)  # a cluster client reads the slot map here
        client.ping()
    except REDIS_ERRORS as exc:
        problem = redis_config_problem(settings, exc)
        if problem is None and settings.redis_url.startswith("rediss://"):
            if _answers_plaintext(settings):
                problem = f"REDIS_URL: Redis at {redacted_url(settings.redis_url)} does not speak TLS; use redis://"
            elif (refusal := _tls_refusal(settings)) is not None:
                problem = redis_config_problem(settings, redis.ConnectionError(refusal))
        if problem is not None:
            raise ConfigError(problem) from None
    finally:
        if client is not None:
            client.close()


def redis_config_problem(settings: Settings, exc: BaseException) -> str | None:
    """What a failed first command says about the configuration (``None``: nothing, the server is just down)."""
    if isinstance(exc, RedisClusterException) and exc.__cause__ is not None:
        exc = exc.__cause__  # the cluster client wraps what its seed node answered
    where = f"Redis at {redacted_url(settings.redis_url)}"
    text = str(exc)
    tls = settings.redis_url.startswith("rediss://")
    has_password = bool(settings.redis_password) or "@" in settings.redis_url.split("://", 1)[-1].split("/", 1)[0]
    if "Cluster mode is not enabled" in text:
        return f"REDIS_CLUSTER: {where} is not a Redis Cluster node; unset REDIS_CLUSTER for a single server"
    if "NOAUTH" in text or (isinstance(exc, redis.AuthenticationError) and not has_password):
        return f"REDIS_PASSWORD: {where} requires authentication; set REDIS_USERNAME and REDIS_PASSWORD"
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text:
        return f"REDIS_USERNAME/REDIS_PASSWORD: {where} refused the credentials ({_first_line(text)})"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        if "mismatch" in text:
            return f"REDIS_SSL_CHECK_HOSTNAME: the certificate of {where} is not for its host ({_first_line(text)})"
        return f"REDIS_SSL_CA_FILE: the certificate of {where} is not signed by a trusted CA ({_first_line(text)})"
    if tls and ("PEM lib" in text or "KEY_VALUES_MISMATCH" in text or "bad decrypt" in text):
        return (
            "REDIS_SSL_CERT_FILE/REDIS_SSL_KEY_FILE: the client certificate and key cannot be loaded (a PEM "
            f"certificate and its key, REDIS_SSL_KEY_PASSWORD when the key is encrypted): {_first_line(text)}"
        )
    if tls and ("CERTIFICATE_REQUIRED" in text or "BAD_CERTIFICATE" in text or "UNKNOWN_CA" in text):
        return f"REDIS_SSL_CERT_FILE/REDIS_SSL_KEY_FILE: {where} requires a client certificate it trusts"
    if tls and ("WRONG_VERSION_NUMBER" in text or "record layer" in text):
        return f"REDIS_URL: {where} does not speak TLS; use redis:// for a plaintext server"
    if not tls and ("Connection reset by peer" in text or "Connection closed by server" in text):
        return f"REDIS_URL: {where} closed the connection on a plaintext command; a TLS port needs rediss://"
    return None


def _tls_refusal(settings: Settings) -> str | None:
    """The TLS alert a ``rediss://`` server sends right after the handshake, if any.

    With TLS 1.3 a server refuses a missing or untrusted client certificate only after the client's handshake
    is done, so a client that writes first may see a bare EOF instead; waiting for the server's first bytes
    shows the alert itself."""
    url = urllib.parse.urlsplit(settings.redis_url)
    host = url.hostname or "localhost"
    try:
        context = ssl.create_default_context(cafile=settings.redis_ssl_ca_file or None)
        context.check_hostname = settings.redis_ssl_check_hostname
        if settings.redis_ssl_cert_file:
            context.load_cert_chain(
                settings.redis_ssl_cert_file,
                settings.redis_ssl_key_file or None,
                password=settings.redis_ssl_key_password.reveal() or None,
            )
        with (
            socket.create_connection((host, url.port or 6379), timeout=settings.redis_timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host) as sock,
        ):
            sock.settimeout(min(1.0, settings.redis_timeout_s))
            sock.recv(1)
    except ssl.SSLError as exc:
        return str(exc)
    except OSError:
        return None
    return None


def _answers_plaintext(settings: Settings) -> bool:
    """Whether the server of a ``rediss://`` URL answers a plaintext PING (so it is not a TLS port)."""
    url = urllib.parse.urlsplit(settings.redis_url)
    try:
        with socket.create_connection(
            (url.hostname or "localhost", url.port or 6379), timeout=settings.redis_timeout_s
        ) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH", b"-ERR"))
    except OSError:
        return False


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else "no detail"


# --------------------------------------------------------------------------------------------- cluster counts

# The kinds of reply after which a packed command is sent again, as the metrics label them.
REDIRECTS: Final = ("moved", "ask", "tryagain")


@dataclass(frozen=True, slots=True)
class ClusterCounts:
    """What one Redis Cluster client knows and has met, for the metrics (small and picklable: the consumer's
    store worker sends it to the member): the nodes of its slot map by role and, on the packed-command path,
    the commands sent again per kind of reply (``REDIRECTS``) and the slot-map reloads, ok and failed."""

    primaries: int
    replicas: int
    redirects: tuple[tuple[str, int], ...]
    reloads: int
    failed_reloads: int


class ClusterStats:
    """The counters of one cluster client; threads may share the client, so the counters take a lock (only
    redirections and reloads count, which are rare)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, event: str, count: int = 1) -> None:
        """Count ``count`` more of ``event`` (a ``REDIRECTS`` kind, ``reload`` or ``failed_reload``)."""
        with self._lock:
            self._counts[event] += count

    def get(self, event: str) -> int:
        """How many times ``event`` was counted."""
        with self._lock:
            return self._counts[event]


_STATS: weakref.WeakKeyDictionary[RedisCluster | AsyncRedisCluster, ClusterStats] = weakref.WeakKeyDictionary()
_STATS_LOCK = threading.Lock()


def cluster_stats(client: RedisCluster | AsyncRedisCluster) -> ClusterStats:
    """The counters of ``client`` (made at its first use; they go with the client)."""
    with _STATS_LOCK:
        found = _STATS.get(client)
        if found is None:
            found = _STATS[client] = ClusterStats()
        return found


def cluster_counts(client: SyncClient | AsyncClient) -> ClusterCounts | None:
    """The counts of a cluster client and the nodes of its slot map as it holds them now (no command is sent;
    an asyncio client knows no node before its first command); ``None`` for a single server's client."""
    if not isinstance(client, RedisCluster | AsyncRedisCluster):
        return None
    nodes = list(cast(dict[str, ClusterNode | AsyncClusterNode], client.nodes_manager.nodes_cache).values())
    primaries = sum(node.server_type == PRIMARY for node in nodes)
    stats = cluster_stats(client)
    return ClusterCounts(
        primaries=primaries,
        replicas=len(nodes) - primaries,
        redirects=tuple((kind, stats.get(kind)) for kind in REDIRECTS),
        reloads=stats.get("reload"),
        failed_reloads=stats.get("failed_reload"),
    )


def _count_redirects(stats: ClusterStats, replies: Sequence[Any], again: Sequence[int]) -> None:
    for position in again:
        reply = replies[position]
        stats.add("moved" if isinstance(reply, MovedError) else "ask" if isinstance(reply, AskError) else "tryagain")


# --------------------------------------------------------------------------------------------- packed commands


@functools.lru_cache(maxsize=SLOT_MEMO_KEYS)
def key_slot(key: str) -> int:
    """The cluster hash slot of ``key`` (CRC16 of its hash tag ``{...}`` when it has one, else of the key)."""
    return _key_slot(key.encode())


def group_by_owner(
    commands: Sequence[Routed], positions: Sequence[int], owner: Callable[[int], N]
) -> dict[N, list[int]]:
    """The ``positions`` (indexes into ``commands``) grouped by ``owner(slot of the routing key)``, in order."""
    groups: dict[N, list[int]] = {}
    for position in positions:
        groups.setdefault(owner(key_slot(commands[position][0])), []).append(position)
    return groups


def settle(
    replies: list[Any], positions: Sequence[int], got: Sequence[Any], asks: dict[int, tuple[str, int]]
) -> tuple[list[int], bool]:
    """Store the replies ``got`` for ``positions``; return the positions to send again and whether a ``MOVED``
    asks for a fresh slot map. An ``ASK`` records its target in ``asks`` (for the next send only)."""
    again: list[int] = []
    moved = False
    for position, reply in zip(positions, got, strict=True):
        replies[position] = reply
        asks.pop(position, None)
        if isinstance(reply, MovedError):
            moved = True
            again.append(position)
        elif isinstance(reply, AskError):
            asks[position] = (reply.host, int(reply.port))
            again.append(position)
        elif isinstance(reply, TryAgainError):  # a multi-key command during a slot migration
            again.append(position)
    return again, moved


def route(
    commands: Sequence[Routed],
    todo: Sequence[int],
    asks: dict[int, tuple[str, int]],
    locate: Callable[[int], N],
    named: Callable[[str, int], N | None],
    name_of: Callable[[N], str],
) -> list[tuple[N, bool, list[int]]]:
    """The positions ``todo`` grouped by the node to send them to, in order: the owner of their key's slot
    (``locate(slot)``), or for a position in ``asks`` the node its ``ASK`` named (sent after ``ASKING``)."""
    nodes: dict[tuple[str, bool], N] = {}
    owners: dict[int, tuple[str, bool]] = {}  # a batch's commands share few slots: each is looked up once

    def owner(slot: int) -> tuple[str, bool]:
        found = owners.get(slot)
        if found is None:
            node = locate(slot)
            found = owners[slot] = (name_of(node), False)
            nodes[found] = node
        return found

    groups = group_by_owner(commands, [i for i in todo if i not in asks], owner)
    for position in (i for i in todo if i in asks):
        node = named(*asks[position]) or locate(key_slot(commands[position][0]))
        nodes[(name_of(node), True)] = node
        groups.setdefault((name_of(node), True), []).append(position)
    return [(nodes[name], name[1], positions) for name, positions in groups.items()]


# A command in Redis' wire format, packed by hiredis in C (its stub types the argument as a one-element tuple; it
# takes a command of any length).
pack_command = cast(Callable[[tuple[str | int | bytes, ...]], bytes], hiredis.pack_command)

# How much of a stream of commands is joined into one write (a batch's commands are sent as they are built).
STREAM_BYTES: Final = 64 * 1024


def _packed(commands: Sequence[Routed], positions: Sequence[int], asking: bool) -> bytes:
    if asking:
        return b"".join(ASKING + commands[i][1] for i in positions)
    return b"".join(commands[i][1] for i in positions)


def _read_replies(read: Callable[[], Any], count: int, asking: bool) -> list[Any]:
    replies: list[Any] = []
    for _ in range(count):
        if asking:
            with contextlib.suppress(redis.ResponseError):
                read()  # ASKING's +OK
        try:
            replies.append(read())
        except redis.ResponseError as exc:  # in its place: the replies after it still have to be read
            replies.append(exc)
    return replies


def send_commands(
    client: SyncClient, commands: Iterable[Routed], scripts: Sequence[str] = (), then: Routed | None = None
) -> list[Any]:
    """Send the packed ``commands`` (each with its routing key) and return their replies in order,
    refusals as :class:`redis.ResponseError` objects. On a single server: written on one pooled connection as
    ``commands`` yields them (a generator's later commands are built while Redis runs the first ones), then every
    reply read. ``scripts`` (Lua sources) are loaded when a reply is ``NOSCRIPT``, and those commands sent again.
    ``then`` runs once every command has taken effect (its reply last): in the same write on a single server,
    which runs a connection's commands in order, else (a cluster's nodes, commands sent again) after their
    replies. Connection failures raise (``REDIS_ERRORS``)."""
    single = not isinstance(client, RedisCluster)
    if isinstance(client, RedisCluster):
        sent = list(commands)
        replies = _cluster_send(client, sent) if sent else []
    else:
        stream = itertools.chain(commands, [then]) if then is not None else commands
        sent, replies = _pool_send(client.connection_pool, stream)
    count = len(sent) - 1 if then is not None and single else len(sent)
    again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)] if scripts else []
    if again:
        for source in scripts:  # a cluster client loads it on every primary
            client.script_load(source)
        for position, reply in zip(again, send_commands(client, [sent[i] for i in again]), strict=True):
            replies[position] = reply
    if then is not None and (again or not single):
        replies = [*replies[:count], *send_commands(client, [then])]
    return replies


def _pool_send(pool: redis.ConnectionPool, commands: Iterable[Routed]) -> tuple[list[Routed], list[Any]]:
    # Joined writes of STREAM_BYTES, then every reply in order: redis-py's Pipeline spends microseconds of Python
    # per command on bookkeeping and reply callbacks, which a backfill batch of hundreds of commands feels.
    sent: list[Routed] = []
    connection = None
    try:
        pending: list[bytes] = []
        size = 0
        for routed in commands:
            if connection is None:
                connection = pool.get_connection()
            sent.append(routed)
            pending.append(routed[1])
            size += len(routed[1])
            if size >= STREAM_BYTES:
                connection.send_packed_command([b"".join(pending)])  # type: ignore[no-untyped-call]
                pending, size = [], 0
        if connection is None:
            return sent, []
        if pending:
            connection.send_packed_command([b"".join(pending)])  # type: ignore[no-untyped-call]
        return sent, _read_replies(connection.read_response, len(sent), asking=False)
    except BaseException:
        if connection is not None:
            connection.disconnect()  # type: ignore[no-untyped-call]  # commands sent whose replies are not read: the connection is out of step
        raise
    finally:
        if connection is not None:
            pool.release(connection)


def _reload(client: RedisCluster, stats: ClusterStats) -> None:
    try:
        client.nodes_manager.initialize()
    except BaseException:
        stats.add("failed_reload")
        raise
    stats.add("reload")


def _cluster_send(client: RedisCluster, commands: Sequence[Routed]) -> list[Any]:
    stats = cluster_stats(client)
    replies: list[Any] = [None] * len(commands)
    todo: list[int] = list(range(len(commands)))
    asks: dict[int, tuple[str, int]] = {}
    for _ in range(MAX_REDIRECTS):
        manager = client.nodes_manager
        groups = route(commands, todo, asks, manager.get_node_from_slot, _sync_named(client), _node_name)
        sent: list[tuple[redis.ConnectionPool, Any, list[int], bool]] = []
        try:
            # Every node gets its group before any reply is read, so the nodes work at the same time.
            for node, asking, positions in groups:
                pool = client.get_redis_connection(node).connection_pool
                connection = pool.get_connection()
                sent.append((pool, connection, positions, asking))
                connection.send_packed_command([_packed(commands, positions, asking)])  # type: ignore[no-untyped-call]
            again: list[int] = []
            moved = False
            for _pool, connection, positions, asking in sent:
                got = _read_replies(connection.read_response, len(positions), asking)
                redo, refreshed = settle(replies, positions, got, asks)
                again += redo
                moved = moved or refreshed
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            # A node gone or replaced: the next send starts from a fresh slot map.
            with contextlib.suppress(*REDIS_ERRORS):
                _reload(client, stats)
            raise
        finally:
            for pool, connection, _, _ in sent:
                pool.release(connection)
        if not again:
            break
        _count_redirects(stats, replies, again)
        if moved:
            _reload(client, stats)
        todo = sorted(again)
    return replies


async def send_commands_async(
    client: AsyncClient, commands: Sequence[Routed], scripts: Sequence[str] = ()
) -> list[Any]:
    """The asyncio twin of :func:`send_commands` (the API's reads), holding a permit of the client's gate
    (:func:`leased`); a cluster's nodes are asked concurrently."""
    if not commands:
        return []
    async with leased(client):
        return await _send_async(client, commands, scripts)


async def _send_async(client: AsyncClient, commands: Sequence[Routed], scripts: Sequence[str]) -> list[Any]:
    if isinstance(client, AsyncRedisCluster):
        replies = await _async_cluster_send(client, commands)
    else:
        replies = await _async_pool_send(client.connection_pool, commands)
    if scripts and any(isinstance(reply, NoScriptError) for reply in replies):
        for source in scripts:
            await client.script_load(source)
        again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        redo = await _send_async(client, [commands[i] for i in again], ())
        for position, reply in zip(again, redo, strict=True):
            replies[position] = reply
    return replies


async def _async_pool_send(pool: aioredis.ConnectionPool, commands: Sequence[Routed]) -> list[Any]:
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await connection.send_packed_command(b"".join(packed for _, packed in commands))
        return await _read_replies_async(connection, len(commands), asking=False)
    except BaseException:
        # A failure (or a cancellation) mid-reply leaves the connection out of step with its replies.
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)


async def _read_replies_async(connection: Any, count: int, asking: bool) -> list[Any]:
    # One deadline for all the replies of a write (REDIS_TIMEOUT, the connection's socket timeout): redis-py arms
    # and cancels a timer for every read it is asked for, a heap push and pop per reply of a batch otherwise.
    read = functools.partial(connection.read_response, timeout=math.inf)
    replies: list[Any] = []
    try:
        async with asyncio.timeout(connection.socket_timeout):
            for _ in range(count):
                if asking:
                    with contextlib.suppress(redis.ResponseError):
                        await read()
                try:
                    replies.append(await read())
                except redis.ResponseError as exc:
                    replies.append(exc)
    except TimeoutError:
        raise redis.TimeoutError(f"Timeout reading the replies from Redis ({connection.socket_timeout:g}s)") from None
    return replies


async def _async_reload(client: AsyncRedisCluster, stats: ClusterStats) -> None:
    try:
        await client.nodes_manager.initialize()
    except BaseException:
        stats.add("failed_reload")
        raise
    stats.add("reload")


async def _async_cluster_send(client: AsyncRedisCluster, commands: Sequence[Routed]) -> list[Any]:
    await client.initialize()  # a no-op once the slot map is known
    stats = cluster_stats(client)
    replies: list[Any] = [None] * len(commands)
    todo: list[int] = list(range(len(commands)))
    asks: dict[int, tuple[str, int]] = {}
    for _ in range(MAX_REDIRECTS):
        manager = client.nodes_manager
        groups = route(commands, todo, asks, manager.get_node_from_slot, _async_named(client), _async_node_name)
        try:
            answers = await asyncio.gather(
                *(
                    _async_node_send(node, _packed(commands, positions, asking), len(positions), asking)
                    for node, asking, positions in groups
                )
            )
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            with contextlib.suppress(*REDIS_ERRORS):
                await _async_reload(client, stats)
            raise
        again: list[int] = []
        moved = False
        for (_, _, positions), got in zip(groups, answers, strict=True):
            redo, refreshed = settle(replies, positions, got, asks)
            again += redo
            moved = moved or refreshed
        if not again:
            break
        _count_redirects(stats, replies, again)
        if moved:
            await _async_reload(client, stats)
        todo = sorted(again)
    return replies


async def _async_node_send(node: AsyncClusterNode, packed: bytes, count: int, asking: bool) -> list[Any]:
    connection = node.acquire_connection()
    try:
        await connection.send_packed_command(packed)
        return await _read_replies_async(connection, count, asking)
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        node.release(connection)


def _node_name(node: ClusterNode) -> str:
    return str(node.name)


def _async_node_name(node: AsyncClusterNode) -> str:
    return str(node.name)


def _sync_named(client: RedisCluster) -> Callable[[str, int], ClusterNode | None]:
    return lambda host, port: cast(ClusterNode | None, client.get_node(host=host, port=port))  # type: ignore[no-untyped-call]


def _async_named(client: AsyncRedisCluster) -> Callable[[str, int], AsyncClusterNode | None]:
    return lambda host, port: client.get_node(host=host, port=port)
