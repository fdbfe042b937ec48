"""The test bed itself: real Kafka and Redis behave as the project relies on, and dev/stack's pure helpers."""

from __future__ import annotations

import socket
import struct
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from teststack.accounts import SERVICE_RIGHTS, render_redis_acl, scram_marker
from teststack.envfiles import parse_env, render_env, render_secure_env
from teststack.kafkaconfig import SecureListener, render_server_properties
from teststack.kafkajars import jar_cache_dir
from teststack.kafkaprobe import decode_metadata_response, encode_metadata_request, kafka_ready
from teststack.layout import CLUSTERS, PLAIN_CLUSTER, TLS_CLUSTER, Paths, cluster_ports, stack_paths
from teststack.output import StackError
from teststack.ports import choose_port, port_is_free
from teststack.rediscommands import cluster_create_command, redis_cluster_command, redis_command, redis_tls_command
from teststack.redisprobe import cluster_problem, encode_redis_command, parse_cluster_info, redis_ready

pytestmark = pytest.mark.slow  # starts and restarts the test bed's services

if TYPE_CHECKING:
    from conftest import Stack

REPO_ROOT = Path(__file__).resolve().parent.parent
POLL_DEADLINE_S = 60.0


# ----------------------------------------------------------------------------------------------- unit tests


def test_env_file_round_trip() -> None:
    text = render_env(kafka_port=19092, redis_port=6390)
    assert "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092\n" in text
    assert "REDIS_URL=redis://127.0.0.1:6390/0\n" in text
    assert parse_env(text) == {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
        "REDIS_URL": "redis://127.0.0.1:6390/0",
    }
    assert parse_env("export A='x'\n# c\n\nB=\"y=z\"\n") == {"A": "x", "B": "y=z"}


def test_server_properties_single_node_kraft_on_loopback(tmp_path: Path) -> None:
    text = render_server_properties(19092, 19093, tmp_path / "data")
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == props["listeners"]
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert "controller.quorum.voters" not in props  # refused by `format --standalone`
    assert "auto.create.topics.enable" not in props  # broker default (true) is wanted
    hosts = [part.split("//")[1].rsplit(":", 1)[0] for part in props["listeners"].split(",")]
    assert set(hosts) == {"127.0.0.1"}


def test_server_properties_with_the_secure_listener(tmp_path: Path) -> None:
    secure = SecureListener(19094, tmp_path / "server.p12", "pw", tmp_path / "ca.pem")
    text = render_server_properties(19092, 19093, tmp_path / "data", secure)
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,SASL_SSL://127.0.0.1:19094"
    assert props["advertised.listeners"] == props["listeners"]
    assert props["listener.security.protocol.map"].split(",")[-1] == "SASL_SSL:SASL_SSL"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"  # the broker itself needs no credentials
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert "ScramLoginModule required" in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert props["listener.name.sasl_ssl.ssl.keystore.location"] == str(tmp_path / "server.p12")
    assert props["listener.name.sasl_ssl.ssl.truststore.type"] == "PEM"
    assert props["listener.name.sasl_ssl.ssl.client.auth"] == "required"
    plain = render_server_properties(19092, 19093, tmp_path / "data")
    assert "SASL_SSL" not in plain and "keystore" not in plain


def test_tls_redis_is_tls_only_with_acl_users(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    cmd = redis_tls_command("redis-server", 6391, paths)
    assert cmd[cmd.index("--port") + 1] == "0"  # no plaintext port at all
    assert cmd[cmd.index("--tls-port") + 1] == "6391"
    assert cmd[cmd.index("--bind") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--tls-auth-clients") + 1] == "yes"
    assert cmd[cmd.index("--aclfile") + 1] == str(tmp_path / "secrets" / "redis-users.acl")
    assert not any("pw" in part for part in cmd)  # the password lives in the ACL file, not in ps
    service, admin, default = render_redis_acl("pw", "admin-pw").splitlines()
    assert service.startswith("user active-users on >pw resetchannels ~* -@all +")  # nothing but what is named
    rights = set(service.split()[6:])
    assert {"+evalsha", "+script|load", "+cluster|slots", "+asking", "+rpush", "+lrange", "+bitfield"} <= rights
    assert not {"+@all", "+flushall", "+flushdb", "+config", "+keys", "+debug", "+eval"} & rights
    assert admin == "user stack-admin on >admin-pw ~* &* +@all"
    assert default == "user default off"


def test_the_security_doc_names_the_acl_users_rights() -> None:
    security = (REPO_ROOT / "docs" / "security.md").read_text()
    rule = security.split("user active-users on >PASSWORD ", 1)[1].split("```", 1)[0]
    assert tuple(rule.split()) == SERVICE_RIGHTS


def test_tls_cluster_nodes_are_tls_only_with_the_bus_and_replication_over_tls(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    node_dir = paths.cluster_node_dir(TLS_CLUSTER, 2)
    assert node_dir == tmp_path / "redis-cluster-tls" / "node-2"
    cmd = redis_cluster_command("redis-server", 6397, node_dir, paths.log_file("n"), paths)
    options = dict(zip(cmd[1::2], cmd[2::2], strict=False))
    assert (options["--port"], options["--tls-port"]) == ("0", "6397")
    assert (options["--tls-cluster"], options["--tls-replication"], options["--tls-auth-clients"]) == ("yes",) * 3
    assert options["--tls-client-cert-file"] == str(tmp_path / "tls" / "client.pem")  # the bus's client side
    assert options["--aclfile"] == str(tmp_path / "secrets" / "redis-users.acl")
    assert options["--cluster-enabled"] == "yes" and options["--dir"] == str(node_dir)
    create = cluster_create_command("redis-cli", 6395, paths)
    assert create[:2] == ["redis-cli", "--tls"] and create[create.index("--user") + 1] == "stack-admin"
    assert create[create.index("create") + 1 :][:3] == ["127.0.0.1:6395", "127.0.0.1:6396", "127.0.0.1:6397"]
    assert [cluster.services[0] for cluster in CLUSTERS] == ["redis-cluster-0", "redis-cluster-tls-0"]
    assert TLS_CLUSTER.env_var == "STACK_REDIS_CLUSTER_TLS_PORT"


def test_secure_env_names_the_services_settings(tmp_path: Path) -> None:
    from activeusers.settings import variable_names

    values = parse_env(render_secure_env(19094, 6391, Paths(tmp_path)))
    assert set(values) <= variable_names()
    with_cluster = parse_env(render_secure_env(19094, 6391, Paths(tmp_path), 6395))
    assert with_cluster == {**values, "REDIS_CLUSTER_URL": "rediss://127.0.0.1:6395/0"}
    assert values["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19094"
    assert (values["KAFKA_SECURITY_PROTOCOL"], values["KAFKA_SASL_MECHANISM"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert values["REDIS_URL"] == "rediss://127.0.0.1:6391/0"
    assert values["KAFKA_SASL_PASSWORD_FILE"] == str(tmp_path / "secrets" / "kafka-password")
    assert not {"KAFKA_SASL_PASSWORD", "REDIS_PASSWORD"} & set(values)  # passwords only as files
    assert scram_marker("pw") != scram_marker("other") and "pw" not in scram_marker("pw")


def test_redis_command_persistence_modes(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    plain = redis_command("redis-server", 6390, paths, aof=False)
    assert plain[plain.index("--bind") + 1] == "127.0.0.1"
    assert plain[plain.index("--save") + 1] == ""
    assert plain[plain.index("--appendonly") + 1] == "no"
    assert plain[plain.index("--daemonize") + 1] == "no"
    aof = redis_command("redis-server", 6390, paths, aof=True)
    assert aof[aof.index("--appendonly") + 1] == "yes"
    assert aof[aof.index("--appendfsync") + 1] == "everysec"
    assert aof[aof.index("--dir") + 1] == str(tmp_path / "redis-data")


def test_env_file_names_the_cluster_when_it_runs() -> None:
    values = parse_env(render_env(19092, 6390, 6392))
    assert values["REDIS_CLUSTER_URL"] == "redis://127.0.0.1:6392/0"
    assert "REDIS_CLUSTER_URL" not in parse_env(render_env(19092, 6390))


def test_cluster_nodes_are_cluster_mode_on_loopback_without_persistence(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    cmd = redis_cluster_command("redis-server", 6393, paths.cluster_node_dir(PLAIN_CLUSTER, 1), paths.log_file("n"))
    assert cmd[cmd.index("--port") + 1] == "6393" and cmd[cmd.index("--bind") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--cluster-enabled") + 1] == "yes"
    assert cmd[cmd.index("--cluster-config-file") + 1] == "nodes.conf"
    assert cmd[cmd.index("--dir") + 1] == str(tmp_path / "redis-cluster" / "node-1")  # a nodes.conf per node
    assert (cmd[cmd.index("--save") + 1], cmd[cmd.index("--appendonly") + 1]) == ("", "no")
    assert cluster_ports(7420) == [7420, 7421, 7422]
    create = cluster_create_command("redis-cli", 7420)
    assert create == [
        "redis-cli", "--cluster", "create", "127.0.0.1:7420", "127.0.0.1:7421", "127.0.0.1:7422",
        "--cluster-replicas", "0", "--cluster-yes",
    ]  # fmt: skip


def test_cluster_info_is_parsed() -> None:
    text = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_known_nodes:3\r\n"
    assert parse_cluster_info(text) == {
        "cluster_state": "ok",
        "cluster_slots_assigned": "16384",
        "cluster_known_nodes": "3",
    }
    assert encode_redis_command("CLUSTER", "INFO") == b"*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n"


def test_jar_cache_dir_is_per_user_and_versioned() -> None:
    xdg = jar_cache_dir("4.1.1", {"XDG_CACHE_HOME": "/c", "HOME": "/h"})
    assert xdg == Path("/c/active-users/kafka-4.1.1")
    assert jar_cache_dir("4.0.0", {"HOME": "/h"}) == Path("/h/.cache/active-users/kafka-4.0.0")


def test_metadata_request_and_response_codec() -> None:
    request = encode_metadata_request(7, client_id="x")
    (size,) = struct.unpack(">i", request[:4])
    assert size == len(request) - 4
    assert struct.unpack(">hhi", request[4:12]) == (3, 4, 7)  # Metadata, v4, correlation id

    def string(text: str | None) -> bytes:
        if text is None:
            return struct.pack(">h", -1)
        return struct.pack(">h", len(text)) + text.encode()

    response = (
        struct.pack(">iii", 7, 0, 1)  # correlation id, throttle, 1 broker
        + struct.pack(">i", 1)
        + string("127.0.0.1")
        + struct.pack(">i", 19092)
        + string(None)
        + string("cluster")
        + struct.pack(">i", 1)
        + struct.pack(">i", 0)  # no topics
    )
    answer = decode_metadata_response(response)
    assert answer.correlation_id == 7
    assert answer.brokers == ((1, "127.0.0.1", 19092),)
    assert answer.cluster_id == "cluster"
    assert answer.controller_id == 1


def test_port_probe_and_explicit_port_taken() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free(port)
        with pytest.raises(StackError, match="taken"):
            choose_port("redis", port, None, port, ())
        fallback = choose_port("redis", None, None, port, ())
        assert fallback != port
    assert kafka_ready(port, timeout=0.5) is not None  # nothing listens any more


def test_dev_stack_runs_on_the_standard_library_alone() -> None:
    """``.ci/run`` starts the stack with the system's python3, before any virtualenv: without site-packages (``-S``)
    and from another folder, ``dev/stack`` still imports its package and ``consumer/kafkawire.py`` by path."""
    import subprocess

    result = subprocess.run(
        [sys.executable, "-I", "-S", str(REPO_ROOT / "dev" / "stack"), "up", "--help"],
        capture_output=True, text=True, cwd="/", check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--redis-cluster-tls-port" in result.stdout


# ----------------------------------------------------------------------------------------------- integration


def _consume(consumer: Any, want: int, on_batch: Callable[[list[Any]], bool] | None = None) -> list[Any]:
    """Poll until ``want`` records arrived (or ``on_batch`` returns True), committing after every batch."""
    records: list[Any] = []
    deadline = time.monotonic() + POLL_DEADLINE_S
    while len(records) < want and time.monotonic() < deadline:
        batches = consumer.poll(timeout_ms=500)
        batch = [record for part in batches.values() for record in part]
        if not batch:
            continue
        records.extend(batch)
        consumer.commit()
        if on_batch is not None and on_batch(records):
            break
    return records


def _consumer(stack: Stack, topic_name: str, group: str, **extra: Any) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(
        topic_name,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **extra,
    )


def _produce(stack: Stack, topic_name: str, count: int) -> list[tuple[bytes, bytes]]:
    from kafka import KafkaProducer

    sent = [(f"user-{i % 97}".encode(), f"event-{i}".encode()) for i in range(count)]
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic_name, key=key, value=value) for key, value in sent]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=10)
    finally:
        producer.close()
    return sent


def test_kafka_produce_and_consume_group_with_manual_commit(stack: Stack, topic: Callable[..., str]) -> None:
    from kafka import TopicPartition

    name = topic(3)
    sent = _produce(stack, name, 3000)
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = _consumer(stack, name, group)
    try:
        records = _consume(consumer, 3000)
        committed = {p: consumer.committed(TopicPartition(name, p)) for p in range(3)}
    finally:
        consumer.close()

    assert len(records) == 3000
    assert sorted((r.key, r.value) for r in records) == sorted(sent)
    per_key: dict[bytes, list[int]] = defaultdict(list)
    partitions_by_key: dict[bytes, set[int]] = defaultdict(set)
    for record in records:
        per_key[record.key].append(int(record.value.split(b"-")[1]))
        partitions_by_key[record.key].add(record.partition)
    assert all(seq == sorted(seq) for seq in per_key.values()), "per-key order must be kept"
    assert all(len(parts) == 1 for parts in partitions_by_key.values()), "a key lives in one partition"
    assert len({r.partition for r in records}) == 3, "97 keys should spread over all 3 partitions"
    assert sum(offset or 0 for offset in committed.values()) == 3000


def test_kafka_group_resumes_after_last_commit(stack: Stack, topic: Callable[..., str]) -> None:
    from kafka import TopicPartition

    total = 1000
    name = topic(3)
    sent = {value for _, value in _produce(stack, name, total)}
    group = f"g-{uuid.uuid4().hex[:8]}"

    first = _consumer(stack, name, group, max_poll_records=50)
    try:
        # Stop part way: _consume commits after every batch, so everything consumed here is committed.
        part_one = _consume(first, total, on_batch=lambda seen: len(seen) >= 300)
        committed = {p: first.committed(TopicPartition(name, p)) or 0 for p in range(3)}
    finally:
        first.close(autocommit=False)
    assert 300 <= len(part_one) < total
    assert sum(committed.values()) == len(part_one)

    second = _consumer(stack, name, group)
    try:
        part_two = _consume(second, total - len(part_one))
    finally:
        second.close()

    values_one = {r.value for r in part_one}
    values_two = {r.value for r in part_two}
    assert len(values_one) == len(part_one)
    assert len(part_two) == total - len(part_one)
    assert values_one.isdisjoint(values_two), "nothing committed may be consumed again"
    assert values_two == sent - values_one, "the second consumer gets exactly the remainder"
    first_offsets: dict[int, int] = {}
    for record in part_two:
        first_offsets[record.partition] = min(first_offsets.get(record.partition, record.offset), record.offset)
    for partition, offset in first_offsets.items():
        assert offset == committed[partition], f"partition {partition} must resume at its committed offset"


def test_redis_set_round_trip(redis_client: Any, redis_prefix: str) -> None:
    key = f"{redis_prefix}users"
    members = {f"u{i}" for i in range(100)}
    assert redis_client.sadd(key, *members) == 100
    assert redis_client.sadd(key, "u1", "u2") == 0
    assert redis_client.smembers(key) == members
    assert redis_client.scard(key) == 100
    assert list(redis_client.scan_iter(match=f"{redis_prefix}*")) == [key]


def test_secure_stack_is_up_and_reused(stack: Stack, secure_env: dict[str, str]) -> None:
    """``up --secure`` again reuses every running service (no restart) and rewrites the same secure.env."""
    import subprocess

    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "dev" / "stack"), "up", "--secure"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for service in ("redis", "kafka", "redis-tls"):
        assert f"{service}: reused pid" in result.stderr
    assert "restarting" not in result.stderr and "wiping" not in result.stderr
    env_file = Path(secure_env["KAFKA_SASL_PASSWORD_FILE"]).parent.parent / "secure.env"
    assert parse_env(env_file.read_text()) == secure_env
    for name in ("KAFKA_SASL_PASSWORD_FILE", "REDIS_PASSWORD_FILE"):
        assert Path(secure_env[name]).stat().st_mode & 0o077 == 0  # passwords readable by their owner only


def test_integration_marker_is_automatic(request: pytest.FixtureRequest, stack: Stack) -> None:
    assert request.node.get_closest_marker("integration") is not None
    assert stack.kafka_bootstrap.startswith("127.0.0.1:")
    assert stack.redis_url.startswith("redis://127.0.0.1:")


def test_cluster_is_up_every_slot_served_and_reused(stack: Stack, redis_cluster: str) -> None:
    """``up --cluster`` again reuses the three running nodes and names the same seed; each node serves a third."""
    import subprocess

    import redis

    first = int(redis_cluster.rsplit(":", 1)[1].split("/")[0])
    for port in cluster_ports(first):
        assert cluster_problem(port) is None
        node = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        assert node.config_get("cluster-enabled") == {"cluster-enabled": "yes"}
        owned = [line for line in node.execute_command("CLUSTER", "NODES").splitlines() if "myself" in line]
        assert "master" in owned[0] and "connected" in owned[0]
        node.close()
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "dev" / "stack"), "up", "--cluster"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "redis-cluster: reused pids" in result.stderr and "created" not in result.stderr
    assert parse_env(result.stdout)["REDIS_CLUSTER_URL"] == redis_cluster
    status = subprocess.run(
        [sys.executable, str(REPO_ROOT / "dev" / "stack"), "status"], capture_output=True, text=True, check=False
    )
    assert "redis-cluster: cluster_state:ok" in status.stdout
    assert all(f"redis-cluster-{i}: running" in status.stdout for i in range(3))


def test_tls_cluster_is_tls_only_every_slot_served_and_reused(stack: Stack, secure_cluster_env: dict[str, str]) -> None:
    """``up --secure --cluster`` again reuses the TLS cluster's nodes; they speak TLS only, on the bus too."""
    import subprocess

    import redis

    paths = stack_paths()
    first = int(secure_cluster_env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    admin = {"username": "stack-admin", "password": (paths.secrets / "redis-admin-password").read_text()}
    tls = {"ssl": True, "ssl_ca_certs": secure_cluster_env["REDIS_SSL_CA_FILE"]}
    tls |= {
        "ssl_certfile": secure_cluster_env["REDIS_SSL_CERT_FILE"],
        "ssl_keyfile": secure_cluster_env["REDIS_SSL_KEY_FILE"],
    }
    for port in cluster_ports(first):
        assert cluster_problem(port, tls=paths) is None
        assert redis_ready(port) is not None  # no plaintext answer on the client port
        node = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, **tls, **admin)
        settings = {name: node.config_get(name)[name] for name in ("port", "tls-cluster", "tls-replication")}
        assert settings == {"port": "0", "tls-cluster": "yes", "tls-replication": "yes"}
        assert "off" in node.acl_getuser("default")["flags"]  # no passwordless user
        node.close()
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "dev" / "stack"), "up", "--secure", "--cluster"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "redis-cluster-tls: reused pids" in result.stderr and "created" not in result.stderr
    secure = parse_env(paths.secure_env_file.read_text())
    assert secure["REDIS_CLUSTER_URL"] == secure_cluster_env["REDIS_URL"]
    status = subprocess.run(
        [sys.executable, str(REPO_ROOT / "dev" / "stack"), "status"], capture_output=True, text=True, check=False
    )
    assert "redis-cluster-tls: cluster_state:ok" in status.stdout
    assert all(f"redis-cluster-tls-{i}: running" in status.stdout for i in range(3))
