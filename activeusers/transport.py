"""The one path that sends pre-packed commands and reads their replies, private to the reader, the writer and
what sends for them (``tests/test_layering.py`` lists who may import it).

The writer and the reader send hiredis-packed commands on raw connections instead of redis-py's pipelines (far less
Python per command); :func:`send_commands` and :func:`send_commands_async` are where those go to the right node:
each command comes with its routing key (its first key), commands are grouped by the node that owns the key's hash
slot, each group goes in one write on one of that node's connections, and the replies come back in the caller's
order. A ``MOVED`` reply (the slot map changed) refreshes the map and resends that command to the new owner, an
``ASK`` reply (a slot being migrated) resends it once with ``ASKING`` to the node named, a ``NOSCRIPT`` reply loads
the given scripts on every primary and resends. Refusals come back as exception objects in their place, never
raised mid-stream, so a connection stays in step with its replies. A command sent again runs after the others of
its call: the commands of one call must not depend on each other's order (the writer's are idempotent additions;
a reader's are reads).

The routing on a cluster is written once, for both kinds of client (:func:`_cluster_rounds`, a coroutine): only
the I/O is twinned, :class:`_BlockingNodes` for redis-py's blocking cluster client and :class:`_AsyncNodes` for its
asyncio one. The blocking one never suspends, so :func:`_blocking` runs the routing to its end without a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import math
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Final, Protocol, TypeVar, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot as _key_slot
from redis.exceptions import AskError, MovedError, NoScriptError, TryAgainError

from activeusers.clusterstats import ClusterStats, cluster_stats, count_redirects
from activeusers.connections import REDIS_ERRORS, AsyncClient, Routed, SyncClient, leased

# A command redirected more often than this while the slot map settles keeps its last MOVED/ASK reply.
MAX_REDIRECTS: Final = 5
ASKING: Final = b"*1\r\n$6\r\nASKING\r\n"
# The writer's and reader's keys repeat from batch to batch (days, hours, buckets): their slots are remembered.
SLOT_MEMO_KEYS: Final = 65_536
# How much of a stream of commands is joined into one write (a batch's commands are sent as they are built).
STREAM_BYTES: Final = 64 * 1024

N = TypeVar("N")
# A node of either cluster client.
Node = TypeVar("Node", bound=ClusterNode | AsyncClusterNode)
T = TypeVar("T")


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
        replies = _blocking(_cluster_rounds(_BlockingNodes(client), sent, cluster_stats(client))) if sent else []
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
        await client.initialize()  # a no-op once the slot map is known
        replies = await _cluster_rounds(_AsyncNodes(client), commands, cluster_stats(client))
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


# ---------------------------------------------------------------------------------------------------- on a cluster


class _Nodes(Protocol[Node]):
    """The I/O of one cluster client, all :func:`_cluster_rounds` needs of it."""

    def locate(self, slot: int) -> Node:
        """The node that owns ``slot`` in the client's slot map."""
        ...

    def named(self, host: str, port: int) -> Node | None:
        """The node at ``host:port`` if the slot map knows it."""
        ...

    async def exchange(self, sends: Sequence[tuple[Node, bytes, int, bool]]) -> list[list[Any]]:
        """Write each ``(node, packed, count, asking)`` to its node, then read the ``count`` replies of each."""
        ...

    async def reload(self) -> None:
        """Read the slot map again."""
        ...


def _node_name(node: ClusterNode | AsyncClusterNode) -> str:
    return str(node.name)


async def _cluster_rounds(nodes: _Nodes[Node], commands: Sequence[Routed], stats: ClusterStats) -> list[Any]:
    """The replies of ``commands`` sent to the owners of their slots, in order, following ``MOVED`` (after a
    fresh slot map), ``ASK`` and ``TRYAGAIN`` for up to ``MAX_REDIRECTS`` rounds."""
    replies: list[Any] = [None] * len(commands)
    todo: list[int] = list(range(len(commands)))
    asks: dict[int, tuple[str, int]] = {}
    for _ in range(MAX_REDIRECTS):
        groups = route(commands, todo, asks, nodes.locate, nodes.named, _node_name)
        sends = [
            (node, _packed(commands, positions, asking), len(positions), asking) for node, asking, positions in groups
        ]
        try:
            answers = await nodes.exchange(sends)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            # A node gone or replaced: the next send starts from a fresh slot map.
            with contextlib.suppress(*REDIS_ERRORS):
                await _reload(nodes, stats)
            raise
        again: list[int] = []
        moved = False
        for (_, _, positions), got in zip(groups, answers, strict=True):
            redo, refreshed = settle(replies, positions, got, asks)
            again += redo
            moved = moved or refreshed
        if not again:
            break
        count_redirects(stats, replies, again)
        if moved:
            await _reload(nodes, stats)
        todo = sorted(again)
    return replies


async def _reload(nodes: _Nodes[Any], stats: ClusterStats) -> None:
    try:
        await nodes.reload()
    except BaseException:
        stats.add("failed_reload")
        raise
    stats.add("reload")


def _blocking(routing: Coroutine[Any, Any, T]) -> T:
    """Run ``routing``, whose awaits never suspend (a blocking client's I/O), to its end."""
    try:
        routing.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    routing.close()
    raise RuntimeError("a blocking cluster send suspended")


class _BlockingNodes:
    """The I/O of redis-py's blocking cluster client: its awaits never suspend."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client

    def locate(self, slot: int) -> ClusterNode:
        return self._client.nodes_manager.get_node_from_slot(slot)

    def named(self, host: str, port: int) -> ClusterNode | None:
        return cast(ClusterNode | None, self._client.get_node(host=host, port=port))  # type: ignore[no-untyped-call]

    async def exchange(self, sends: Sequence[tuple[ClusterNode, bytes, int, bool]]) -> list[list[Any]]:
        sent: list[tuple[redis.ConnectionPool, Any, int, bool]] = []
        try:
            # Every node gets its commands before any reply is read, so the nodes work at the same time.
            for node, packed, count, asking in sends:
                pool = self._client.get_redis_connection(node).connection_pool
                connection = pool.get_connection()
                sent.append((pool, connection, count, asking))
                connection.send_packed_command([packed])  # type: ignore[no-untyped-call]
            return [_read_replies(connection.read_response, count, asking) for _, connection, count, asking in sent]
        finally:
            for pool, connection, _, _ in sent:
                pool.release(connection)

    async def reload(self) -> None:
        self._client.nodes_manager.initialize()


class _AsyncNodes:
    """The I/O of redis-py's asyncio cluster client: the nodes are asked concurrently."""

    def __init__(self, client: AsyncRedisCluster) -> None:
        self._client = client

    def locate(self, slot: int) -> AsyncClusterNode:
        return self._client.nodes_manager.get_node_from_slot(slot)

    def named(self, host: str, port: int) -> AsyncClusterNode | None:
        return self._client.get_node(host=host, port=port)

    async def exchange(self, sends: Sequence[tuple[AsyncClusterNode, bytes, int, bool]]) -> list[list[Any]]:
        return list(await asyncio.gather(*(_async_node_send(*send) for send in sends)))

    async def reload(self) -> None:
        await self._client.nodes_manager.initialize()
