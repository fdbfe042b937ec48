"""Redis connections (``activeusers.connections``): the clients and their settings (timeouts, credentials, TLS
files), and for the asyncio clients a burst that waits for a free connection instead of failing, bounded by
REDIS_POOL_SIZE and REDIS_POOL_WAIT, on the real single server and cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.cluster

from activeusers.connections import (
    Gate,
    PoolExhausted,
    async_redis_client,
    gate_of,
    leased,
    pack_command,
    redis_client,
    redis_security,
)
from activeusers.secret import Secret
from activeusers.settings import Settings
from activeusers.transport import send_commands_async

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


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_cluster_setting_makes_cluster_clients() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:6379/0", redis_cluster=True, redis_timeout_s=0.75)
    client = async_redis_client(settings)  # connects on first use only
    assert isinstance(client, redis.asyncio.cluster.RedisCluster)
    asyncio.run(client.aclose())
    with pytest.raises(redis.exceptions.RedisClusterException):
        redis_client(Settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0", redis_cluster=True))


TIMEOUTS = Settings(redis_url="redis://cache.invalid:6390/3", redis_timeout_s=0.75)


def _assert_the_settings_timeouts(kwargs: dict[str, Any]) -> None:
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.invalid", 6390, 3)
    assert kwargs["socket_timeout"] == 0.75
    assert kwargs["socket_connect_timeout"] == 0.75


def test_redis_client_uses_the_settings_timeouts() -> None:
    client = redis_client(TIMEOUTS)
    _assert_the_settings_timeouts(client.connection_pool.connection_kwargs)
    client.close()


async def test_async_redis_client_uses_the_settings_timeouts() -> None:
    client = async_redis_client(TIMEOUTS)
    _assert_the_settings_timeouts(client.connection_pool.connection_kwargs)
    await client.aclose()


def test_clients_get_the_acl_user_password_and_tls_files(tmp_path) -> None:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("x")
    settings = Settings(
        redis_url="rediss://cache.invalid:6380/0",
        redis_username="app",
        redis_password=Secret("pw"),
        redis_ssl_ca_file=str(files["ca"]),
        redis_ssl_cert_file=str(files["cert"]),
        redis_ssl_key_file=str(files["key"]),
        redis_ssl_check_hostname=False,
    )
    assert settings.problems() == []
    # The asyncio cluster client connects at its first command only, so its settings can be looked at here.
    cluster = async_redis_client(dataclasses.replace(settings, redis_cluster=True))
    assert isinstance(cluster, redis.asyncio.cluster.RedisCluster)
    for kwargs in (redis_client(settings).connection_pool.connection_kwargs,
                   async_redis_client(settings).connection_pool.connection_kwargs,
                   cluster.nodes_manager.connection_kwargs):  # fmt: skip
        assert (kwargs["username"], kwargs["password"]) == ("app", "pw")
        assert kwargs["ssl_ca_certs"] == str(files["ca"]) and kwargs["ssl_cert_reqs"] == "required"
        assert (kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (str(files["cert"]), str(files["key"]))
        assert kwargs["ssl_check_hostname"] is False
    asyncio.run(cluster.aclose())
    assert redis_security(Settings()) == {}  # plaintext, default user: nothing added
    keyed = dataclasses.replace(settings, redis_ssl_key_password=Secret("kpw"))
    assert redis_security(keyed)["ssl_password"] == "kpw"
    assert "ssl_password" not in redis_security(settings)  # the asyncio cluster client refuses even None
