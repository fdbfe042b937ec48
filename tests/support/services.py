"""Finding the real services the integration tests need, each on its own: Redis, Kafka, the Redis Cluster and the
secured ones. A service that cannot be reached fails the test under CI and skips it otherwise; the skips are
counted per service for the one line the session ends with (:func:`skipped_line`)."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.support.environment import REPO_ROOT, in_ci

STACK_SCRIPT = REPO_ROOT / "dev" / "stack"
STACK_UP_TIMEOUT_S = 600  # the first run downloads the Kafka jars
START_COMMAND = "python3 dev/stack up"

REDIS = "Redis"
KAFKA = "Kafka"
REDIS_CLUSTER = "the Redis Cluster"
SECURED = "the secured services"
SECURED_CLUSTER = "the TLS Redis Cluster"
_SKIP_REASON = re.compile(r"^(?:Skipped: )?(?P<service>.+?) unavailable: ")


def unavailable(service: str, reason: str) -> NoReturn:
    """Fail the test under CI, skip it otherwise, saying which service is missing and why."""
    message = f"{service} unavailable: {reason}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def skipped_line(reasons: Iterable[str]) -> str | None:
    """The one line that says how many tests a missing service skipped and how to start it (None: none was)."""
    counts = Counter(match["service"] for reason in reasons if (match := _SKIP_REASON.match(reason)))
    if not counts:
        return None
    what = ", ".join(f"{n} needing {service}" for service, n in counts.most_common())
    return f"{sum(counts.values())} tests SKIPPED ({what}): start the services with `{START_COMMAND}`"


def stack_env_file() -> Path:
    """``$STACK_DIR/env`` (default ``.stack/env``), which ``dev/stack up`` writes."""
    override = os.environ.get("STACK_DIR")
    return (Path(override) if override else REPO_ROOT / ".stack") / "env"


def parse_env(text: str) -> dict[str, str]:
    """``NAME=value`` lines (comments and blank lines ignored, quotes stripped)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip("'\"")
    return values


def read_or_empty(path: Path) -> str:
    """The file's text, or nothing when it cannot be read."""
    try:
        return path.read_text()
    except OSError:
        return ""


def stack_up(service: str, *flags: str) -> str:
    """``dev/stack up FLAGS`` (it reuses what runs); its stdout (the env file), or ``service`` is unavailable."""
    try:
        return _stack_up(*flags)
    except RuntimeError as exc:
        unavailable(service, str(exc))


@functools.cache
def _stack_up(*flags: str) -> str:
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
        raise RuntimeError(f"{command} could not run: {exc}") from exc
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
        raise RuntimeError(f"{command} exited {result.returncode}:\n{output}")
    return result.stdout


def stack_setting(service: str, name: str) -> str:
    """Setting ``name`` from the environment, else from what ``dev/stack up`` printed (or its env file)."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    # `up` prints the env file; its stdout is used first (a concurrent `down` may remove the file).
    value = parse_env(stack_up(service)).get(name) or parse_env(read_or_empty(stack_env_file())).get(name, "")
    if not value:
        unavailable(service, f"dev/stack up printed no {name} (nor has {stack_env_file()} it)")
    return value


def check_redis(url: str) -> None:
    """Unavailable unless the Redis server at ``url`` answers a PING."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        unavailable(REDIS, f"Redis at {url} does not answer: {type(exc).__name__}: {exc}")


def check_kafka(bootstrap: str) -> None:
    """Unavailable unless the broker at ``bootstrap`` lists its topics."""
    from kafka.admin import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests-probe", request_timeout_ms=10_000)
        try:
            admin.list_topics()
        finally:
            admin.close()
    except Exception as exc:  # kafka-python raises many unrelated types (NoBrokersAvailable, timeouts, ...)
        unavailable(KAFKA, f"Kafka at {bootstrap} does not answer: {type(exc).__name__}: {exc}")


def check_cluster(service: str, url: str, connect: Callable[[], Any]) -> None:
    """Unavailable unless the cluster ``connect()`` reaches serves every slot (``cluster_state:ok``)."""
    import redis.cluster

    try:
        client = connect()
        try:
            state = client.cluster_info().get("cluster_state")
        finally:
            client.close()
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        unavailable(service, f"{url} does not answer: {type(exc).__name__}: {exc}")
    if state != "ok":
        unavailable(service, f"{url} reports cluster_state {state}")
