"""Shared fixtures: the real Kafka + Redis test bed and per-test isolation.

* ``stack`` (session): a :class:`Stack` with ``kafka_bootstrap`` and ``redis_url``. Taken from the environment
  (``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``, as ``.ci/run`` exports them) when both are set; otherwise
  ``dev/stack up`` is run (it reuses services that already run) and ``.stack/env`` is read. The services are
  left running afterwards (``dev/stack down`` stops them). When they cannot be reached the test fails under CI
  (env ``CI`` set, not ``0``/``false``) and is skipped otherwise.
* ``topic`` (function): a factory ``topic(partitions=3) -> name`` that creates a fresh, uniquely named topic
  and deletes it after the test.
* ``redis_client`` (function): a sync ``redis.Redis`` (``decode_responses=True``) for the stack.
* ``redis_prefix`` (function): a unique key prefix ``t-<8 hex>:``; keys under it are deleted after the test.
* ``module_topic`` and ``module_redis_prefix`` (module): the same for fixtures that one module's tests share
  (one seeded pipeline for many tests), cleaned up after the module.
* ``secure_env`` (session): the settings that reach the broker's SASL_SSL listener and the TLS Redis with its
  ACL user (``$STACK_DIR/secure.env``, written by ``dev/stack up --secure``, which is run when the file is
  missing). Unavailable services fail the test under CI, as for ``stack``.
* ``redis_cluster`` (session): the seed URL of the real 3-master Redis Cluster (``REDIS_CLUSTER_URL`` from the
  environment, as ``.ci/run`` exports it, else from ``$STACK_DIR/env`` after ``dev/stack up --cluster``, which
  is run when it names none). Unavailable: fails under CI, as for ``stack``.
* ``secure_cluster_env`` (session): the settings that reach the TLS-only Redis Cluster with its ACL user
  (``REDIS_URL`` its seed node, ``REDIS_CLUSTER=true``, the TLS Redis's user, password and certificates), from
  ``REDIS_CLUSTER_URL`` in ``$STACK_DIR/secure.env`` (``dev/stack up --secure --cluster``, run when it names none).
  Unavailable: fails under CI, as for ``stack``. ``module_secure_cluster_prefix``: a module's key prefix there.
* ``cluster_client`` (function): a sync ``redis.cluster.RedisCluster`` (``decode_responses=True``) for it, and
  ``cluster_prefix`` (function): a unique key prefix whose keys are deleted from the cluster after the test
  (``module_cluster_prefix``: after the module).

Every test that uses ``stack`` (directly or through the fixtures above) is marked ``integration``
automatically, so ``pytest -m "not integration"`` runs the unit tests alone.

Nothing here connects at import time: the module imports fine without any service.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from tests.support.environment import in_ci

if TYPE_CHECKING:
    import redis
    import redis.cluster
    from kafka.admin import KafkaAdminClient

REPO_ROOT = Path(__file__).resolve().parent.parent
STACK_SCRIPT = REPO_ROOT / "dev" / "stack"
STACK_UP_TIMEOUT_S = 600  # the first run downloads the Kafka jars


@dataclass(frozen=True)
class Stack:
    """Where the real services listen."""

    kafka_bootstrap: str
    redis_url: str


def _unavailable(reason: str) -> NoReturn:
    message = f"Kafka/Redis test bed unavailable: {reason}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _stack_env_file() -> Path:
    override = os.environ.get("STACK_DIR")
    return (Path(override) if override else REPO_ROOT / ".stack") / "env"


def _parse_env(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip("'\"")
    return values


def _start_stack() -> tuple[str, str]:
    # `up` prints the env file; its stdout is used first (a concurrent `down` may remove the file).
    values = _parse_env(_stack_up())
    env_file = _stack_env_file()
    if not {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"} <= values.keys():
        try:
            values = _parse_env(env_file.read_text())
        except OSError as exc:
            _unavailable(f"dev/stack up succeeded but {env_file} is unreadable: {exc}")
    try:
        return values["KAFKA_BOOTSTRAP_SERVERS"], values["REDIS_URL"]
    except KeyError as exc:
        _unavailable(f"dev/stack up printed no {exc} (nor has {env_file} it)")


def _check_reachable(found: Stack) -> None:
    import redis
    from kafka.admin import KafkaAdminClient

    try:
        client = redis.Redis.from_url(found.redis_url, socket_connect_timeout=5, socket_timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        _unavailable(f"Redis at {found.redis_url} does not answer: {type(exc).__name__}: {exc}")
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=found.kafka_bootstrap, client_id="tests-probe", request_timeout_ms=10_000
        )
        try:
            admin.list_topics()
        finally:
            admin.close()
    except Exception as exc:  # kafka-python raises many unrelated types (NoBrokersAvailable, timeouts, ...)
        _unavailable(f"Kafka at {found.kafka_bootstrap} does not answer: {type(exc).__name__}: {exc}")


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The real Kafka broker and Redis server (from the environment, else started by ``dev/stack up``)."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    redis_url = os.environ.get("REDIS_URL", "").strip()
    if not (bootstrap and redis_url):
        bootstrap, redis_url = _start_stack()
    found = Stack(kafka_bootstrap=bootstrap, redis_url=redis_url)
    _check_reachable(found)
    return found


def _stack_up(*flags: str) -> str:
    """``dev/stack up FLAGS`` (it reuses what runs); its stdout (the env file), or the test bed is unavailable."""
    command = " ".join(("dev/stack up", *flags))
    try:
        result = subprocess.run(
            [sys.executable, str(STACK_SCRIPT), "up", *flags],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=STACK_UP_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"{command} could not run: {exc}")
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
        _unavailable(f"{command} exited {result.returncode}:\n{output}")
    return result.stdout


@pytest.fixture(scope="session")
def secure_env(stack: Stack) -> dict[str, str]:
    """Settings for the secured broker listener and the TLS Redis (from ``dev/stack up --secure``)."""
    env_file = _stack_env_file().with_name("secure.env")
    if not env_file.exists():
        _stack_up("--secure")
    try:
        values = _parse_env(env_file.read_text())
    except OSError as exc:
        _unavailable(f"no secured services: {env_file} is unreadable ({exc})")
    if values.get("KAFKA_SECURITY_PROTOCOL") != "SASL_SSL" or not values.get("REDIS_URL", "").startswith("rediss://"):
        _unavailable(f"{env_file} does not describe a SASL_SSL broker and a TLS Redis")
    return values


@pytest.fixture(scope="session")
def redis_cluster(stack: Stack) -> str:
    """Seed URL of the real Redis Cluster (``dev/stack up --cluster``), every slot served."""
    url = os.environ.get("REDIS_CLUSTER_URL", "").strip()
    if not url:
        url = _parse_env(_read_or_empty(_stack_env_file())).get("REDIS_CLUSTER_URL", "")
    if not url:
        url = _parse_env(_stack_up("--cluster")).get("REDIS_CLUSTER_URL", "")
    if not url:
        _unavailable("dev/stack up --cluster wrote no REDIS_CLUSTER_URL")
    import redis.cluster

    timeouts = {"socket_connect_timeout": 5, "socket_timeout": 5}
    _check_cluster("Redis Cluster", url, lambda: redis.cluster.RedisCluster.from_url(url, **timeouts))
    return url


def _check_cluster(what: str, url: str, connect: Callable[[], Any]) -> None:
    """Unavailable unless the cluster ``connect()`` reaches serves every slot (``cluster_state:ok``)."""
    import redis.cluster

    try:
        client = connect()
        try:
            state = client.cluster_info().get("cluster_state")
        finally:
            client.close()
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        _unavailable(f"{what} at {url} does not answer: {type(exc).__name__}: {exc}")
    if state != "ok":
        _unavailable(f"{what} at {url} reports cluster_state {state}")


@pytest.fixture(scope="session")
def secure_cluster_env(secure_env: dict[str, str]) -> dict[str, str]:
    """Settings for the TLS-only Redis Cluster with its ACL user (``dev/stack up --secure --cluster``)."""
    url = secure_env.get("REDIS_CLUSTER_URL", "")
    if not url:
        _stack_up("--secure", "--cluster")
        url = _parse_env(_read_or_empty(_stack_env_file().with_name("secure.env"))).get("REDIS_CLUSTER_URL", "")
    if not url.startswith("rediss://"):
        _unavailable("dev/stack up --secure --cluster wrote no rediss:// REDIS_CLUSTER_URL into secure.env")
    values = {name: value for name, value in secure_env.items() if name != "REDIS_CLUSTER_URL"}
    values |= {"REDIS_URL": url, "REDIS_CLUSTER": "true"}
    from activeusers.redisconn import redis_client
    from activeusers.settings import Settings

    _check_cluster("TLS Redis Cluster", url, lambda: redis_client(Settings.from_env(values)))
    return values


def _read_or_empty(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@pytest.fixture
def cluster_client(redis_cluster: str) -> Iterator[redis.cluster.RedisCluster]:
    """A sync ``RedisCluster`` for the real cluster, answering ``str`` (``decode_responses=True``)."""
    import redis.cluster

    client = redis.cluster.RedisCluster.from_url(redis_cluster, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def cluster_prefix(cluster_client: redis.cluster.RedisCluster) -> Iterator[str]:
    """``redis_prefix`` on the cluster: every key under it is deleted after the test (SCAN of every primary)."""
    with _fresh_prefix(cluster_client) as prefix:
        yield prefix


@pytest.fixture(scope="module")
def module_cluster_prefix(redis_cluster: str) -> Iterator[str]:
    """``cluster_prefix`` for a module's shared fixtures: its keys are deleted from the cluster after the module."""
    import redis.cluster

    client = redis.cluster.RedisCluster.from_url(redis_cluster, decode_responses=True)
    try:
        with _fresh_prefix(client) as prefix:
            yield prefix
    finally:
        client.close()


@pytest.fixture(scope="module")
def module_secure_cluster_prefix(secure_cluster_env: dict[str, str]) -> Iterator[str]:
    """``module_cluster_prefix`` on the TLS cluster (deleted as its ACL user: it may SCAN and DEL)."""
    from activeusers.redisconn import redis_client
    from activeusers.settings import Settings

    client = redis_client(Settings.from_env(secure_cluster_env))
    try:
        with _fresh_prefix(client) as prefix:
            yield prefix
    finally:
        client.close()


@pytest.fixture(scope="session")
def kafka_admin(stack: Stack) -> Iterator[KafkaAdminClient]:
    """A session-wide kafka-python admin client for the stack."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, client_id="tests-admin")
    yield admin
    admin.close()


def _topic_name(node_name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", node_name).strip("-.")[:80]
    return f"t-{slug}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def _fresh_topics(admin: KafkaAdminClient, owner: str) -> Iterator[Callable[..., str]]:
    """A factory ``create(partitions=3) -> name`` of fresh topics named after ``owner``, deleted on exit."""
    from kafka.admin import NewTopic

    created: list[str] = []

    def create(partitions: int = 3) -> str:
        name = _topic_name(owner)
        admin.create_topics(
            [NewTopic(name=name, num_partitions=partitions, replication_factor=1)],
            timeout_ms=30_000,
            wait_for_metadata=True,
        )
        created.append(name)
        _wait_for_leaders(admin, name, partitions)
        return name

    yield create
    if created:
        try:
            admin.delete_topics(created, timeout_ms=30_000, raise_errors=False)
        except Exception as exc:  # cleanup must not mask the test's own outcome
            print(f"warning: could not delete topics {created}: {exc!r}", file=sys.stderr)


@pytest.fixture
def topic(kafka_admin: KafkaAdminClient, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Factory ``topic(partitions=3) -> name``: a fresh topic, ready for use, deleted after the test."""
    with _fresh_topics(kafka_admin, request.node.name) as create:
        yield create


@pytest.fixture(scope="module")
def module_topic(kafka_admin: KafkaAdminClient, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """``topic`` for a module's shared fixtures (one seeded pipeline for many tests): deleted after the module."""
    with _fresh_topics(kafka_admin, request.module.__name__) as create:
        yield create


def _wait_for_leaders(admin: KafkaAdminClient, name: str, partitions: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        described = admin.describe_topics([name])
        parts = described[0].get("partitions", []) if described else []
        if len(parts) == partitions and all(p.get("leader_id", p.get("leader", -1)) >= 0 for p in parts):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name} has no leaders after {timeout_s}s: {described!r}")
        time.sleep(0.1)


@pytest.fixture
def redis_client(stack: Stack) -> Iterator[redis.Redis]:
    """A sync ``redis.Redis`` for the stack, answering ``str`` (``decode_responses=True``)."""
    import redis

    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    yield client
    client.close()


@contextlib.contextmanager
def _fresh_prefix(client: redis.Redis | redis.cluster.RedisCluster) -> Iterator[str]:
    """A unique key prefix ``t-<8 hex>:``; every key under it is deleted on exit (SCAN + DEL)."""
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    yield prefix
    batch: list[str] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A unique key prefix ``t-<8 hex>:``; every key under it is deleted after the test (SCAN + DEL)."""
    with _fresh_prefix(redis_client) as prefix:
        yield prefix


@pytest.fixture(scope="module")
def module_redis_prefix(stack: Stack) -> Iterator[str]:
    """``redis_prefix`` for a module's shared fixtures: its keys are deleted after the module."""
    import redis

    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        with _fresh_prefix(client) as prefix:
            yield prefix
    finally:
        client.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs the real services (uses ``stack``, even indirectly) as ``integration``."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
