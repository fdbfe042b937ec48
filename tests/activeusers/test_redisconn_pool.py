"""Redis connections of the asyncio clients (``activeusers.redisconn``): a burst waits for a free connection
instead of failing, bounded by REDIS_POOL_SIZE and REDIS_POOL_WAIT, on the real single server and cluster.

(Beside ``test_redisconn.py``, which still imports the retired ``activeusers.store`` at this commit.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from activeusers.redisconn import (
    Gate,
    PoolExhausted,
    async_redis_client,
    gate_of,
    leased,
    pack_command,
    send_commands_async,
)
from activeusers.settings import Settings

BURST = 300


def get(key: str) -> tuple[str, bytes]:
    return key, pack_command(("GET", key))


def own_connections(ports: set[int]) -> int:
    """This process' established TCP connections to ``ports`` (Linux: its socket inodes in /proc/net/tcp)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port, state, inode = int(fields[2].rsplit(":", 1)[1], 16), fields[3], fields[9]
        count += remote_port in ports and state == "01" and inode in inodes
    return count


async def burst(settings: Settings, keys: list[str], ports: set[int]) -> tuple[list[Any], int]:
    """BURST concurrent sends of one GET each: their replies, and the connections the client had opened to
    ``ports`` when they were done (a pool keeps what it opened)."""
    client = async_redis_client(settings)
    gate = gate_of(client)
    assert gate is not None and gate.size == settings.redis_pool_size
    before = own_connections(ports)
    try:
        replies = await asyncio.gather(*(send_commands_async(client, [get(keys[n % len(keys)])]) for n in range(BURST)))
        opened = own_connections(ports) - before
    finally:
        await client.aclose()
    return [reply for (reply,) in replies], opened


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


async def test_a_burst_waits_for_the_few_connections_of_a_single_server(
    redis_url: str, redis_prefix: str, redis_client
):
    keys = [f"{redis_prefix}k{n}" for n in range(7)]
    for n, key in enumerate(keys):
        redis_client.set(key, str(n))
    settings = Settings(redis_url=redis_url, redis_pool_size=3, redis_pool_wait_s=5)
    replies, opened = await burst(settings, keys, {port_of(redis_url)})
    assert replies == [str(n % 7).encode() for n in range(BURST)]
    assert 1 <= opened <= 3  # 300 at once over at most REDIS_POOL_SIZE connections, none refused


async def test_a_burst_waits_for_the_few_connections_of_a_cluster(
    redis_cluster: str, cluster_prefix: str, cluster_client
):
    keys = [f"{cluster_prefix}{{k{n}}}" for n in range(7)]  # spread over the nodes
    for n, key in enumerate(keys):
        cluster_client.set(key, str(n))
    nodes = {int(node.port) for node in cluster_client.get_primaries()}
    settings = Settings(redis_url=redis_cluster, redis_cluster=True, redis_pool_size=2, redis_pool_wait_s=5)
    replies, opened = await burst(settings, keys, nodes)
    assert replies == [str(n % 7).encode() for n in range(BURST)]
    assert 1 <= opened <= 2 * len(nodes)  # at most REDIS_POOL_SIZE per node


async def test_a_wait_past_redis_pool_wait_is_pool_exhausted(redis_url: str) -> None:
    client = async_redis_client(Settings(redis_url=redis_url, redis_pool_size=1, redis_pool_wait_s=0.2))
    try:
        async with leased(client):  # the one permit, held
            started = time.monotonic()
            with pytest.raises(PoolExhausted, match="REDIS_POOL_WAIT") as refused:
                await send_commands_async(client, [get("any")])
            assert 0.2 <= time.monotonic() - started < 1.0
            assert isinstance(refused.value, redis.ConnectionError)  # a Redis error: the API's documented 503
        (reply,) = await send_commands_async(client, [get("any-missing-key")])  # free again
        assert reply is None
    finally:
        await client.aclose()


async def test_the_gate_admits_in_turn() -> None:
    gate = Gate(2, 1.0)
    order: list[int] = []

    async def hold(n: int) -> None:
        await gate.acquire()
        order.append(n)
        await asyncio.sleep(0.01)
        gate.release()

    await asyncio.gather(*(hold(n) for n in range(6)))
    assert order == list(range(6)) and gate.in_use == 0
