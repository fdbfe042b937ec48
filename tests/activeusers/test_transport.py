"""The packed-command transport: the routing of packed commands (pure grouping and redirection logic; sending on
fakeredis and on the real single server and cluster)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import AskError, MovedError, NoScriptError, TryAgainError

from activeusers.clusterstats import ClusterCounts, ClusterStats, cluster_counts
from activeusers.connections import async_redis_client, pack_command, redis_client
from activeusers.errors import StoreUnavailable
from activeusers.scripts import Script
from activeusers.settings import Settings
from activeusers.transport import (
    MAX_REDIRECTS,
    _blocking,
    _cluster_rounds,
    group_by_owner,
    key_slot,
    route,
    send_commands,
    send_commands_async,
    settle,
)


def cmd(*args: str | int) -> tuple[str, bytes]:
    """A packed command routed by its first key (``args[1]``)."""
    return str(args[1]), pack_command(args)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ---------------------------------------------------------------------------------------------------- slots, routing


@pytest.mark.parametrize(
    ("key", "slot"),
    [("foo", 12182), ("bar", 5061), ("{user1000}.following", 3443), ("{user1000}.followers", 3443)],
)  # fmt: skip
def test_key_slot_is_redis_cluster_keyslot(key: str, slot: int) -> None:
    # The slots CLUSTER KEYSLOT answers for these keys; test_cluster_routing_matches_the_servers_slots asks the
    # real cluster the same.
    assert key_slot(key) == slot


def test_keys_of_one_hash_tag_share_a_slot() -> None:
    assert key_slot("a{b}c") == key_slot("b") and key_slot("{}x") != key_slot("x")  # "{}" is no hash tag
    keys = ["au:{64.17}:ids", "au:{64.17}:day:UTC:2026-12-01", "au:{64.17}:hour:UTC:2026-12-01T13"]
    assert {key_slot(key) for key in keys} == {key_slot("64.17")}
    assert key_slot("au:{64.17}:ids") != key_slot("au:{64.18}:ids")


def test_group_by_owner_keeps_each_groups_order() -> None:
    keys = ["a", "b", "c", "d", "e"]
    owner = {key_slot(k): name for k, name in zip(keys, ["n1", "n2", "n1", "n3", "n2"], strict=True)}
    commands = [cmd("GET", key) for key in keys]
    assert group_by_owner(commands, range(5), owner.__getitem__) == {"n1": [0, 2], "n2": [1, 4], "n3": [3]}
    assert group_by_owner(commands, [4, 3], owner.__getitem__) == {"n2": [4], "n3": [3]}
    assert group_by_owner(commands, [], owner.__getitem__) == {}


def test_settle_keeps_replies_and_names_what_to_send_again() -> None:
    replies: list[Any] = [None] * 5
    asks: dict[int, tuple[str, int]] = {4: ("127.0.0.1", 1)}
    got = [
        b"OK",
        MovedError("3999 127.0.0.1:7001"),
        AskError("3999 127.0.0.1:7002"),
        TryAgainError("Multiple keys request during rehashing of slot"),
        redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    ]
    again, moved = settle(replies, [0, 1, 2, 3, 4], got, asks)
    assert (again, moved) == ([1, 2, 3], True)
    assert asks == {2: ("127.0.0.1", 7002)}  # the refusal at 4 is final: its ASK is forgotten
    assert replies[0] == b"OK" and isinstance(replies[4], redis.ResponseError)
    again, moved = settle(replies, [1, 2, 3], [1, 2, 3], asks)
    assert (again, moved, asks, replies[1:4]) == ([], False, {}, [1, 2, 3])


def test_route_sends_asked_commands_to_the_named_node_apart() -> None:
    keys = [cmd("GET", key) for key in ("a", "b", "c")]
    owners = {key_slot("a"): "n1", key_slot("b"): "n1", key_slot("c"): "n2"}
    groups = route(keys, [0, 1, 2], {1: ("h", 9)}, owners.__getitem__, lambda host, port: f"{host}:{port}", str)
    assert groups == [("n1", False, [0]), ("n2", False, [2]), ("h:9", True, [1])]
    unknown = route(keys, [1], {1: ("h", 9)}, owners.__getitem__, lambda host, port: None, str)
    assert unknown == [("n1", True, [1])]  # a node not in the map yet: the slot's owner, after ASKING


class ScriptedNodes:
    """A cluster of one node ``n`` whose replies are scripted: ``answer(position)`` for each command sent."""

    def __init__(self, answer: Any, failing: int = 0) -> None:
        self.answer = answer
        self.failing = failing  # how many exchanges fail as a lost node before the others answer
        self.sent: list[list[bytes]] = []
        self.reloads = 0

    def locate(self, slot: int) -> Any:
        return SimpleNamespace(name="n")

    def named(self, host: str, port: int) -> Any:
        return None

    async def exchange(self, sends: Any) -> list[list[Any]]:
        if self.failing:
            self.failing -= 1
            raise redis.ConnectionError("lost")
        self.sent.append([packed for _, packed, _, _ in sends])
        return [[self.answer(packed) for packed in packed_of(sent)] for _, sent, _, _ in sends]

    async def reload(self) -> None:
        self.reloads += 1


def packed_of(joined: bytes) -> list[bytes]:
    """The commands of one joined write, each back as its routing key's bytes (the commands here are GETs)."""
    return [part.split(b"\r\n")[0] for part in joined.split(b"$1\r\n")[1:]]


def test_the_routing_core_follows_moved_until_max_redirects_and_reloads_each_time() -> None:
    stats = ClusterStats()
    nodes = ScriptedNodes(lambda key: MovedError("1 127.0.0.1:1") if key == b"b" else key)
    replies = _blocking(_cluster_rounds(nodes, [cmd("GET", "a"), cmd("GET", "b")], stats))
    assert replies[0] == b"a" and isinstance(replies[1], MovedError)  # redirected too often: its last reply
    assert len(nodes.sent) == MAX_REDIRECTS and nodes.reloads == MAX_REDIRECTS
    assert (stats.get("moved"), stats.get("reload"), stats.get("failed_reload")) == (MAX_REDIRECTS, MAX_REDIRECTS, 0)


def test_the_routing_core_reloads_after_a_lost_node_and_raises() -> None:
    stats = ClusterStats()
    nodes = ScriptedNodes(lambda key: key, failing=1)
    with pytest.raises(redis.ConnectionError):
        _blocking(_cluster_rounds(nodes, [cmd("GET", "a")], stats))
    assert nodes.reloads == 1 and stats.get("reload") == 1
    assert _blocking(_cluster_rounds(nodes, [cmd("GET", "a")], stats)) == [b"a"]


def test_send_commands_on_one_server_returns_replies_and_refusals_in_order() -> None:
    client = fakeredis.FakeRedis()
    client.set("t:s", "a string")
    replies = send_commands(client, [cmd("SADD", "t:a", "x"), cmd("SADD", "t:s", "x"), cmd("SCARD", "t:a")])
    assert replies[0] == 1 and replies[2] == 1
    assert isinstance(replies[1], redis.ResponseError) and "WRONGTYPE" in str(replies[1])
    assert send_commands(client, []) == []
    assert client.ping()  # the connection stayed in step


# Sets KEYS[1] to ARGV[1]: run before ``then`` (which sets the same key), the key ends as ``then`` left it.
MARK = "redis.call('SET', KEYS[1], ARGV[1]) return 1"


def _then_runs_last(client: Any, key: str) -> None:
    sha = hashlib.sha1(MARK.encode()).hexdigest()
    client.script_flush()  # every script command is refused (NOSCRIPT) and sent again after the load
    script = (key, pack_command(("EVALSHA", sha, 1, key, "script")))
    replies = send_commands(client, [script], (MARK,), cmd("SET", key, "then"))
    assert replies == [1, b"OK"]
    assert client.get(key) == b"then"
    replies = send_commands(client, [script], (MARK,), cmd("SET", key, "again"))
    assert replies == [1, b"OK"] and client.get(key) == b"again"  # loaded: one write, still in order


def test_then_runs_after_every_command_even_one_sent_again(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    _then_runs_last(client, f"{redis_prefix}mark")
    client.close()


def test_send_commands_writes_a_generator_as_it_yields() -> None:
    client = fakeredis.FakeRedis()
    big = "x" * 1000
    written: list[int] = []

    def commands() -> Iterator[tuple[str, bytes]]:
        for n in range(200):  # about three times STREAM_BYTES
            written.append(n)
            yield cmd("RPUSH", "t:l", f"{n}{big}")

    assert send_commands(client, commands()) == list(range(1, 201))
    assert written == list(range(200)) and client.llen("t:l") == 200
    assert send_commands(client, iter(())) == []


def test_a_generator_that_fails_leaves_no_reply_unread() -> None:
    client = fakeredis.FakeRedis()

    def commands() -> Iterator[tuple[str, bytes]]:
        for _ in range(100):
            yield cmd("RPUSH", "t:l", "x" * 1000)
        raise ValueError("a bug while building")

    with pytest.raises(ValueError, match="building"):
        send_commands(client, commands())
    stored = client.llen("t:l")
    assert 0 < stored < 100  # the writes of STREAM_BYTES so far went out, the rest did not
    assert send_commands(client, [cmd("LLEN", "t:l")]) == [stored]  # not an unread RPUSH reply: in step


async def test_send_commands_async_on_one_server() -> None:
    client = fakeredis.FakeAsyncRedis()
    await client.set("t:s", "a string")
    replies = await send_commands_async(client, [cmd("GET", "t:s"), cmd("LLEN", "t:s")])
    assert replies[0] == b"a string" and isinstance(replies[1], redis.ResponseError)
    assert await send_commands_async(client, []) == []
    await client.aclose()


# ---------------------------------------------------------------------------------------------- the real services


def _node(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True)


def _primaries(cluster_client: redis.cluster.RedisCluster) -> list[int]:
    return sorted(int(node.port) for node in cluster_client.get_primaries())


def _owner(cluster_client: redis.cluster.RedisCluster, slot: int) -> int:
    for first, last, (_host, port, *_rest), *_replicas in cluster_client.cluster_slots().values() or []:
        if first <= slot <= last:
            return int(port)
    raise AssertionError(f"no node serves slot {slot}")


def _owner_port(port: int, slot: int) -> int:
    for first, last, (_host, owner, *_rest), *_replicas in _node(port).execute_command("CLUSTER", "SLOTS"):
        if int(first) <= slot <= int(last):
            return int(owner)
    raise AssertionError(f"no node serves slot {slot}")


def _empty_slot_tag(prefix: str, port: int) -> tuple[str, int]:
    """A hash tag whose slot holds no key at all (so it can be moved without MIGRATE)."""
    for n in range(1000):
        tag = f"{prefix}{n}"
        slot = key_slot(tag)
        owner = _owner_port(port, slot)
        if _node(owner).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0:
            return tag, slot
    raise AssertionError("no empty slot found")


def _start_migration(slot: int, source: int, target: int) -> None:
    target_id, source_id = (
        _node(target).execute_command("CLUSTER", "MYID"),
        _node(source).execute_command("CLUSTER", "MYID"),
    )
    assert _node(target).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    assert _node(source).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)


def _finish_migration(slot: int, target: int, ports: list[int]) -> None:
    target_id = _node(target).execute_command("CLUSTER", "MYID")
    for port in [target, *(p for p in ports if p != target)]:
        _node(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


@pytest.fixture
def moving_slot(redis_cluster: str, cluster_prefix: str) -> Iterator[tuple[str, int, int, int, list[int]]]:
    """An empty slot (its hash tag), its owner, another primary and all primaries; the slot is handed back to its
    owner after the test, whatever state the test left it in."""
    seed = int(redis_cluster.rsplit(":", 1)[1].split("/")[0])
    ports = sorted(
        int(line.split()[1].split(":")[1].split("@")[0])
        for line in _node(seed).execute_command("CLUSTER", "NODES").splitlines()
        if "master" in line
    )
    tag, slot = _empty_slot_tag(cluster_prefix, seed)
    owner = _owner_port(seed, slot)
    other = next(port for port in ports if port != owner)
    yield tag, slot, owner, other, ports
    for port in ports:
        _asking(port, "DEL", *_node(port).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100))
    for port in ports:
        _node(port).execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
    _finish_migration(slot, owner, ports)


def _asking(port: int, *command: str) -> Any:
    """``command`` on node ``port`` right after ``ASKING`` on the same connection (a slot it imports)."""
    if len(command) < 2:
        return None
    with _node(port).pipeline(transaction=False) as pipe:
        pipe.execute_command("ASKING")
        pipe.execute_command(*command)
        return pipe.execute()[1]


def test_cluster_routing_matches_the_servers_slots(cluster_client: redis.cluster.RedisCluster) -> None:
    for key in ("foo", "bar", "{user1000}.following", "{}x", "au:{64.17}:ids", "au:day:UTC:2026-12-01"):
        assert key_slot(key) == cluster_client.cluster_keyslot(key)


def _cluster_settings(url: str) -> Settings:
    return Settings(redis_url=url, redis_cluster=True, redis_timeout_s=5)


def test_cluster_send_spreads_over_every_node_in_order(redis_cluster: str, cluster_prefix: str, cluster_client) -> None:
    client = redis_client(_cluster_settings(redis_cluster))
    keys = [f"{cluster_prefix}k{n}" for n in range(60)]
    assert len({cluster_client.get_node_from_key(key).name for key in keys}) == 3  # every node has some
    cluster_client.set(keys[7], "a string")
    commands = [cmd("SADD", key, f"m{n}") for n, key in enumerate(keys)]
    replies = send_commands(client, commands + [cmd("SCARD", key) for key in keys])
    assert isinstance(replies[7], redis.ResponseError) and "WRONGTYPE" in str(replies[7])
    assert replies[:7] + replies[8:60] == [1] * 59 and isinstance(replies[67], redis.ResponseError)
    assert replies[60:67] + replies[68:] == [1] * 59
    assert cluster_client.smembers(keys[42]) == {"m42"}
    client.close()


def test_then_runs_after_every_node_answered(redis_cluster: str, cluster_prefix: str) -> None:
    client = redis_client(_cluster_settings(redis_cluster))
    _then_runs_last(client, f"{cluster_prefix}mark")
    client.close()


def test_cluster_send_follows_moved_and_ask(moving_slot, redis_cluster: str, cluster_client) -> None:
    tag, slot, owner, other, ports = moving_slot
    client = redis_client(_cluster_settings(redis_cluster))  # its slot map says: owner
    key, fresh = f"x{{{tag}}}a", f"x{{{tag}}}b"
    assert send_commands(client, [cmd("SET", key, "1")]) == [b"OK"]
    _node(owner).delete(key)  # an empty slot again, to be migrated without MIGRATE
    _start_migration(slot, owner, other)
    # A key the source does not hold: it answers ASK; the command goes to the target after ASKING.
    assert send_commands(client, [cmd("SET", fresh, "2")]) == [b"OK"]
    assert _asking(other, "GET", fresh) == "2"
    assert _node(owner).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0  # not on the source
    assert _asking(other, "DEL", fresh) == 1
    _finish_migration(slot, other, ports)
    # The client still believes the old owner: MOVED, a fresh slot map, the command sent again.
    assert send_commands(client, [cmd("SET", key, "3")]) == [b"OK"]
    assert _node(other).get(key) == "3" and _owner_port(owner, slot) == other
    assert client.nodes_manager.get_node_from_slot(slot).port == other
    # What the metrics show: one ASK and one MOVED followed, the slot map read again once (after the MOVED).
    assert cluster_counts(client) == ClusterCounts(3, 0, (("moved", 1), ("ask", 1), ("tryagain", 0)), 1, 0)
    client.close()


async def test_async_cluster_send_follows_moved_and_loads_scripts(moving_slot, redis_cluster: str) -> None:
    tag, slot, owner, other, ports = moving_slot
    client = async_redis_client(_cluster_settings(redis_cluster))
    key = f"x{{{tag}}}a"
    script = Script("return redis.call('INCR', KEYS[1])")
    evalsha = (key, pack_command(("EVALSHA", script.sha, 1, key)))
    for port in ports:
        _node(port).script_flush()
    assert await send_commands_async(client, [evalsha], [script.source]) == [1]  # NOSCRIPT, loaded, again
    _node(owner).delete(key)
    _start_migration(slot, owner, other)
    _finish_migration(slot, other, ports)
    for port in ports:
        _node(port).script_flush()
    # MOVED (a stale slot map), then NOSCRIPT on the new owner: each sent again; a command sent again runs after
    # the rest of its call (the GET saw no key yet).
    got = await send_commands_async(client, [evalsha, cmd("GET", key)], [script.source])
    assert got == [1, None]
    assert _node(other).get(key) == "1"
    # Both commands of the moved slot came back MOVED; one reload answered both.
    assert cluster_counts(client) == ClusterCounts(3, 0, (("moved", 2), ("ask", 0), ("tryagain", 0)), 1, 0)
    await client.aclose()


def test_a_cluster_whose_seed_is_down_is_counted_as_a_failed_reload(redis_cluster: str, cluster_prefix: str) -> None:
    client = redis_client(_cluster_settings(redis_cluster))
    assert cluster_counts(redis_client(Settings(redis_url=redis_cluster))) is None  # a single server's client
    assert cluster_counts(client) == ClusterCounts(3, 0, (("moved", 0), ("ask", 0), ("tryagain", 0)), 0, 0)
    dead = closed_port()
    for node in client.get_primaries():  # every node gone at once: the send fails, and so does the reload
        pool = node.redis_connection.connection_pool
        pool.disconnect()
        pool.connection_kwargs["port"] = dead
        pool.reset()  # no connection object kept: each new one is made with the dead port
    client.nodes_manager.startup_nodes = {f"127.0.0.1:{dead}": redis.cluster.ClusterNode("127.0.0.1", dead)}
    with pytest.raises(redis.ConnectionError):
        send_commands(client, [cmd("SET", f"{cluster_prefix}k", "1")])
    counts = cluster_counts(client)
    assert counts is not None and (counts.reloads, counts.failed_reloads) == (0, 1)
    client.close()


def test_single_server_scripts_are_loaded_on_noscript(redis_url: str, redis_prefix: str) -> None:
    client = redis_client(Settings(redis_url=redis_url))
    script = Script("return redis.call('INCR', KEYS[1])")
    key = f"{redis_prefix}n"
    client.script_flush()
    evalsha = (key, pack_command(("EVALSHA", script.sha, 1, key)))
    assert send_commands(client, [evalsha, evalsha], [script.source]) == [1, 2]
    client.script_flush()
    assert isinstance(send_commands(client, [evalsha])[0], NoScriptError)  # no script to load: the refusal
    assert client.get(key) == b"2"
    client.close()


@pytest.mark.integration
@pytest.mark.slow
async def test_a_cluster_with_a_master_down_is_not_ready_until_it_is_back(tmp_path: Any) -> None:
    """A killed master (no replica to take over): once the cluster marks it failed, the reader's readiness check
    says so; ``dev/stack up --cluster`` brings the node back on its nodes.conf and the check passes again. The
    cluster is the test's own (``dev/stack`` in a private ``STACK_DIR``, on free loopback ports): killing a node
    of the shared one would fail the tests running beside it."""
    import os
    import signal
    import subprocess
    import sys

    from activeusers.keys import KeySchema
    from activeusers.reader import ActivityReader
    from tests.support.environment import REPO_ROOT
    from tests.support.services import REDIS_CLUSTER, parse_env, read_or_empty, unavailable
    from tests.support.waiting import wait_until

    stack_dir = tmp_path / "stack"

    def stack(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(REPO_ROOT / "dev" / "stack"), *args],
            env={**os.environ, "STACK_DIR": str(stack_dir)},
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip

    try:
        started = stack("up", "--cluster")
        if started.returncode != 0:
            unavailable(
                REDIS_CLUSTER, f"a private dev/stack up --cluster exited {started.returncode}: {started.stderr}"
            )
        redis_cluster = parse_env(read_or_empty(stack_dir / "env"))["REDIS_CLUSTER_URL"]
        seed = int(redis_cluster.rsplit(":", 1)[1].split("/")[0])
        victim = int((stack_dir / "redis-cluster-2.pid").read_text())
        assert _node(seed + 2).ping()  # the pid file names the node on the third port
        client = async_redis_client(_cluster_settings(redis_cluster))
        reader = ActivityReader(client, KeySchema("t:", "UTC"))
        await reader.ping()
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: _node(seed).cluster("INFO")["cluster_state"] != "ok", 30, "the cluster never noticed")
        with pytest.raises(StoreUnavailable, match=r"cluster_state fail|unreachable"):
            await reader.ping()
        up = stack("up", "--cluster")
        assert up.returncode == 0, up.stderr
        await reader.ping()
        await client.aclose()
    finally:
        stack("down", "--purge")
