"""The start-up check of the Redis settings: which setting a refusal names, and a server merely down (no
raise); on the real cluster and single server."""

from __future__ import annotations

import socket

import pytest
import redis

from activeusers.errors import ConfigError
from activeusers.redischeck import check_redis, redis_config_problem
from activeusers.settings import Settings


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _cluster(url: str) -> Settings:
    return Settings(redis_url=url, redis_cluster=True, redis_timeout_s=5)


@pytest.mark.parametrize(
    ("error", "setting"),
    [
        (redis.AuthenticationError("invalid username-password pair"), "REDIS_USERNAME/REDIS_PASSWORD"),
        (redis.ResponseError("NOAUTH Authentication required."), "REDIS_PASSWORD"),
        (redis.ConnectionError("[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate"), "REDIS_SSL_CA_FILE"),
        (redis.ConnectionError("[SSL: CERTIFICATE_VERIFY_FAILED] Hostname mismatch"), "REDIS_SSL_CHECK_HOSTNAME"),
        (redis.ConnectionError("[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED]"), "REDIS_SSL_CERT_FILE/REDIS_SSL_KEY_FILE"),
    ],
)  # fmt: skip
def test_refusals_name_the_setting(error: Exception, setting: str) -> None:
    settings = Settings(redis_url="rediss://:secret-pw@cache.invalid:6380/0")
    problem = redis_config_problem(settings, error)
    assert problem is not None and problem.startswith(setting + ":")
    assert "secret-pw" not in problem and "rediss://***@cache.invalid:6380/0" in problem


def test_plaintext_on_a_tls_port_and_a_server_that_is_down() -> None:
    plain = Settings(redis_url="redis://cache.invalid:6380/0")
    reset = redis.ConnectionError("Error while reading from cache.invalid:6380 : (104, 'Connection reset by peer')")
    assert (redis_config_problem(plain, reset) or "").startswith("REDIS_URL:")
    refused = redis.ConnectionError("Error 111 connecting to cache.invalid:6380. Connection refused.")
    assert redis_config_problem(plain, refused) is None  # merely down: the caller's retries wait for it
    check_redis(Settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0", redis_timeout_s=0.2))  # no raise


def test_check_redis_on_the_cluster(redis_cluster: str, redis_url: str) -> None:
    check_redis(_cluster(redis_cluster))  # no raise
    bad = _cluster(redis_cluster.replace("redis://", "redis://nobody:wrong@"))
    with pytest.raises(ConfigError, match="REDIS_USERNAME/REDIS_PASSWORD"):
        check_redis(bad)
    with pytest.raises(ConfigError, match=r"^REDIS_CLUSTER: .* is not a Redis Cluster node"):
        check_redis(_cluster(redis_url))
