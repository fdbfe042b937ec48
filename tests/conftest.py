"""Shared fixtures: the real Kafka + Redis test bed and per-test isolation.

Each service is found on its own (``tests.support.services``), so a test that needs only Redis runs without a
broker. When a service cannot be reached the test fails under CI (env ``CI`` set, not ``0``/``false``) and is
skipped otherwise; the session then ends with one line saying how many tests were skipped for which service and
how to start them.

* ``redis_url`` (session): the real Redis server's URL (``REDIS_URL`` from the environment, as ``.ci/run`` exports
  it, else from ``dev/stack up``, which reuses services that already run; they are left running afterwards).
* ``kafka_bootstrap`` (session): the real broker's bootstrap address (``KAFKA_BOOTSTRAP_SERVERS``, else as above).
* ``stack`` (session): a :class:`Stack` with both, for the tests that run the consumer.
* ``topic`` (function): a factory ``topic(partitions=3) -> name`` that creates a fresh, uniquely named topic
  and deletes it after the test.
* ``redis_client`` (function): a sync ``redis.Redis`` (``decode_responses=True``) for the Redis server.
* ``redis_prefix`` (function): a unique key prefix ``t-<8 hex>:``; keys under it are deleted after the test.
* ``module_topic`` and ``module_redis_prefix`` (module): the same for fixtures that one module's tests share
  (one seeded pipeline for many tests), cleaned up after the module.
* ``secure_env`` (session): the settings that reach the broker's SASL_SSL listener and the TLS Redis with its
  ACL user (``$STACK_DIR/secure.env``, written by ``dev/stack up --secure``, which is run when the file is
  missing).
* ``redis_cluster`` (session): the seed URL of the real 3-master Redis Cluster (``REDIS_CLUSTER_URL`` from the
  environment, as ``.ci/run`` exports it, else from ``$STACK_DIR/env`` after ``dev/stack up --cluster``, which
  is run when it names none).
* ``secure_cluster_env`` (session): the settings that reach the TLS-only Redis Cluster with its ACL user
  (``REDIS_URL`` its seed node, ``REDIS_CLUSTER=true``, the TLS Redis's user, password and certificates), from
  ``REDIS_CLUSTER_URL`` in ``$STACK_DIR/secure.env`` (``dev/stack up --secure --cluster``, run when it names none).
  ``module_secure_cluster_prefix``: a module's key prefix there.
* ``cluster_client`` (function): a sync ``redis.cluster.RedisCluster`` (``decode_responses=True``) for it, and
  ``cluster_prefix`` (function): a unique key prefix whose keys are deleted from the cluster after the test
  (``module_cluster_prefix``: after the module).

Every test that uses one of the services (directly or through the fixtures above) is marked ``integration``
automatically, so ``pytest -m "not integration"`` runs the unit tests alone. A test that reaches a service only
through ``request.getfixturevalue`` cannot be seen at collection: it must be marked by hand, and fails if it is not.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from tests.support import services
from tests.support.services import (
    KAFKA,
    REDIS_CLUSTER,
    SECURED,
    SECURED_CLUSTER,
    parse_env,
    read_or_empty,
    stack_env_file,
    stack_up,
    unavailable,
)

if TYPE_CHECKING:
    import redis
    import redis.cluster
    from kafka.admin import KafkaAdminClient

# The session fixtures that reach a real service: a test using any of them is an integration test.
SERVICE_FIXTURES = frozenset(
    {"redis_url", "kafka_bootstrap", "stack", "secure_env", "redis_cluster", "secure_cluster_env"}
)


@dataclass(frozen=True)
class Stack:
    """Where the real services listen."""

    kafka_bootstrap: str
    redis_url: str


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis server (from the environment, else started by ``dev/stack up``)."""
    url = services.stack_setting(services.REDIS, "REDIS_URL")
    services.check_redis(url)
    return url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The real Kafka broker (from the environment, else started by ``dev/stack up``)."""
    bootstrap = services.stack_setting(KAFKA, "KAFKA_BOOTSTRAP_SERVERS")
    services.check_kafka(bootstrap)
    return bootstrap


@pytest.fixture(scope="session")
def stack(kafka_bootstrap: str, redis_url: str) -> Stack:
    """The real Kafka broker and Redis server."""
    return Stack(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url)


@pytest.fixture(scope="session")
def secure_env() -> dict[str, str]:
    """Settings for the secured broker listener and the TLS Redis (from ``dev/stack up --secure``)."""
    env_file = stack_env_file().with_name("secure.env")
    if not env_file.exists():
        stack_up(SECURED, "--secure")
    try:
        values = parse_env(env_file.read_text())
    except OSError as exc:
        unavailable(SECURED, f"{env_file} is unreadable ({exc})")
    if values.get("KAFKA_SECURITY_PROTOCOL") != "SASL_SSL" or not values.get("REDIS_URL", "").startswith("rediss://"):
        unavailable(SECURED, f"{env_file} does not describe a SASL_SSL broker and a TLS Redis")
    return values


@pytest.fixture(scope="session")
def redis_cluster() -> str:
    """Seed URL of the real Redis Cluster (``dev/stack up --cluster``), every slot served."""
    url = os.environ.get("REDIS_CLUSTER_URL", "").strip()
    if not url:
        url = parse_env(read_or_empty(stack_env_file())).get("REDIS_CLUSTER_URL", "")
    if not url:
        url = parse_env(stack_up(REDIS_CLUSTER, "--cluster")).get("REDIS_CLUSTER_URL", "")
    if not url:
        unavailable(REDIS_CLUSTER, "dev/stack up --cluster wrote no REDIS_CLUSTER_URL")
    import redis.cluster

    timeouts = {"socket_connect_timeout": 5, "socket_timeout": 5}
    services.check_cluster(REDIS_CLUSTER, url, lambda: redis.cluster.RedisCluster.from_url(url, **timeouts))
    return url


@pytest.fixture(scope="session")
def secure_cluster_env(secure_env: dict[str, str]) -> dict[str, str]:
    """Settings for the TLS-only Redis Cluster with its ACL user (``dev/stack up --secure --cluster``)."""
    url = secure_env.get("REDIS_CLUSTER_URL", "")
    if not url:
        stack_up(SECURED_CLUSTER, "--secure", "--cluster")
        url = parse_env(read_or_empty(stack_env_file().with_name("secure.env"))).get("REDIS_CLUSTER_URL", "")
    if not url.startswith("rediss://"):
        unavailable(SECURED_CLUSTER, "dev/stack up --secure --cluster wrote no rediss:// REDIS_CLUSTER_URL")
    values = {name: value for name, value in secure_env.items() if name != "REDIS_CLUSTER_URL"}
    values |= {"REDIS_URL": url, "REDIS_CLUSTER": "true"}
    from activeusers.connections import redis_client
    from activeusers.settings import Settings

    services.check_cluster(SECURED_CLUSTER, url, lambda: redis_client(Settings.from_env(values)))
    return values


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
    from activeusers.connections import redis_client
    from activeusers.settings import Settings

    client = redis_client(Settings.from_env(secure_cluster_env))
    try:
        with _fresh_prefix(client) as prefix:
            yield prefix
    finally:
        client.close()


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    """A session-wide kafka-python admin client for the broker."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="tests-admin")
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
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A sync ``redis.Redis`` for the Redis server, answering ``str`` (``decode_responses=True``)."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
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
def module_redis_prefix(redis_url: str) -> Iterator[str]:
    """``redis_prefix`` for a module's shared fixtures: its keys are deleted after the module."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with _fresh_prefix(client) as prefix:
            yield prefix
    finally:
        client.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs a real service (uses one of ``SERVICE_FIXTURES``, even indirectly) as
    ``integration``."""
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _services_only_in_integration_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that reached a service without the ``integration`` marker: one that asks for it through
    ``request.getfixturevalue`` (which collection cannot see) would otherwise run among the unit tests."""
    yield
    reached = SERVICE_FIXTURES.intersection(request.fixturenames)
    if reached and request.node.get_closest_marker("integration") is None:
        pytest.fail(
            f"{request.node.nodeid} reached {', '.join(sorted(reached))} through request.getfixturevalue but is"
            " not marked integration: add `pytestmark = pytest.mark.integration` to its module",
            pytrace=False,
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One loud line when a missing service skipped tests (under CI they failed instead)."""
    reasons = [report.longrepr[2] for report in terminalreporter.stats.get("skipped", ()) if _skip_tuple(report)]
    line = services.skipped_line(reasons)
    if line:
        terminalreporter.write_sep("!", line, red=True, bold=True)


def _skip_tuple(report: pytest.TestReport) -> bool:
    return isinstance(report.longrepr, tuple) and len(report.longrepr) == 3
