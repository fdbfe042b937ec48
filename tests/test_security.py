"""Secured Kafka and Redis, against the real ones (``dev/stack up --secure``): the pipeline end to end through the
broker's SASL_SSL listener (SCRAM-SHA-512, client certificates) and the TLS Redis with its ACL user, and the
misconfigurations that must stop the real CLI at start-up with one line naming the setting, never hanging (the
Redis ones also against the TLS Redis Cluster, ``--secure --cluster``). The ACL user may do what the service
does and nothing more."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from activeusers.settings import Settings
from consumer.kafka import security_config
from tests.support.environment import REPO_ROOT
from tests.support.network import free_port, http_get
from tests.support.pipeline import assert_pipeline_matches_oracle
from tests.support.processes import consumer_env, start_api

START_UP_BOUND_S = 30.0  # the checks answer in seconds; kafka-python alone would retry for minutes


def cli() -> list[str]:
    """The installed ``active-users`` entry point (the module with this interpreter when it is not installed)."""
    script = Path(sys.executable).parent / "active-users"
    return [str(script)] if script.exists() else [sys.executable, "-m", "activeusers.cli"]


def passwords(secure_env: dict[str, str]) -> list[str]:
    return [Path(secure_env[name]).read_text() for name in ("KAFKA_SASL_PASSWORD_FILE", "REDIS_PASSWORD_FILE")]


@pytest.fixture(scope="session")
def untrusted_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA certificate that signed neither the broker's nor Redis's certificate."""
    folder = tmp_path_factory.mktemp("other-ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=someone else",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "ca.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder / "ca.pem"


@pytest.fixture
def secure_consumer_env(stack, secure_env, topic, redis_prefix) -> dict[str, str]:
    """A consumer's environment for a fresh topic, through the secured listener and Redis.

    The Kafka password is given as a value, the Redis one as a file (``*_FILE``): both forms are exercised."""
    name = topic(3)
    env = consumer_env(stack, name, redis_prefix, f"g-{uuid.uuid4().hex[:8]}") | secure_env
    env["KAFKA_SASL_PASSWORD"] = Path(env.pop("KAFKA_SASL_PASSWORD_FILE")).read_text()
    return env


def test_pipeline_end_to_end_through_sasl_ssl_and_tls_redis(secure_consumer_env, secure_env, tmp_path):
    settings = Settings.from_env(secure_consumer_env)
    assert_pipeline_matches_oracle(secure_consumer_env, tmp_path, security_config(settings))
    logs = (tmp_path / "consumer.log").read_text() + (tmp_path / "api.log").read_text()
    for secret in passwords(secure_env):
        assert secret not in logs


def test_secrets_stay_out_of_readyz_metrics_logs_and_repr(secure_consumer_env, secure_env, tmp_path):
    env = dict(secure_consumer_env)
    env["REDIS_PASSWORD"] = Path(env.pop("REDIS_PASSWORD_FILE")).read_text()
    settings = Settings.from_env(env)
    api, base = start_api(env | {"LOG_LEVEL": "DEBUG"}, tmp_path / "api.log")
    try:
        bodies = [http_get(base + path)[1].decode() for path in ("/readyz", "/metrics", "/healthz")]
    finally:
        api.terminate()
        assert api.wait(timeout=15) == 0
    assert '"redis":{"ok":true' in bodies[0].replace(" ", "")  # it really reached the TLS Redis
    shown = [*bodies, (tmp_path / "api.log").read_text(), repr(settings), str(settings)]
    for secret in passwords(secure_env):
        assert all(secret not in text for text in shown)
    assert "Secret('***')" in repr(settings)


def _start_up_failure(command: str, env: dict[str, str]) -> tuple[int, list[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [*cli(), command], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=START_UP_BOUND_S * 2
    )
    return result.returncode, result.stderr.strip().splitlines(), time.monotonic() - started


KAFKA_CASES = [
    ("kafka wrong password", "consume", "KAFKA_SASL_PASSWORD"),
    ("kafka unknown user", "consume", "KAFKA_SASL_USERNAME"),
    ("kafka untrusted certificate", "consume", "KAFKA_SSL_CAFILE"),
    ("kafka plaintext client on the TLS port", "consume", "KAFKA_SECURITY_PROTOCOL"),
    ("kafka TLS client on the plaintext port", "produce", "KAFKA_SECURITY_PROTOCOL"),
    ("kafka without a client certificate", "produce", "KAFKA_SSL_CERTFILE"),
    ("kafka mechanism the listener lacks", "consume", "KAFKA_SASL_MECHANISM"),
]
# Each against the TLS Redis and against the TLS Redis Cluster (the same user, password and certificates).
REDIS_CASES = [
    ("redis wrong password", "serve", "REDIS_PASSWORD"),
    ("redis untrusted certificate", "serve", "REDIS_SSL_CA_FILE"),
    ("redis plaintext client on the TLS port", "serve", "REDIS_URL"),
    ("redis without credentials", "consume", "REDIS_PASSWORD"),
    ("redis without a client certificate", "consume", "REDIS_SSL_CERT_FILE"),
]
CASES = [
    *((*case, "single") for case in KAFKA_CASES),
    *((*case, store) for case in REDIS_CASES for store in ("single", "cluster")),
    ("redis cluster setting on a single server", "consume", "REDIS_CLUSTER", "single"),
]


@pytest.mark.parametrize(("case", "command", "setting", "store"), CASES)
def test_misconfiguration_stops_at_start_up_with_one_line(
    case, command, setting, store, stack, secure_env, secure_consumer_env, untrusted_ca, request
):
    env = dict(secure_consumer_env) | {"API_PORT": str(free_port())}
    if store == "cluster":
        env |= {name: request.getfixturevalue("secure_cluster_env")[name] for name in ("REDIS_URL", "REDIS_CLUSTER")}
    wrong = f"wrong-{uuid.uuid4().hex}"
    if case == "kafka wrong password":
        env["KAFKA_SASL_PASSWORD"] = wrong
    elif case == "kafka unknown user":
        env["KAFKA_SASL_USERNAME"] = "nobody"
    elif case == "kafka untrusted certificate":
        env["KAFKA_SSL_CAFILE"] = str(untrusted_ca)
    elif case == "kafka plaintext client on the TLS port":
        env = {k: v for k, v in env.items() if not k.startswith(("KAFKA_SSL", "KAFKA_SASL", "KAFKA_SECURITY"))}
    elif case == "kafka TLS client on the plaintext port":
        env["KAFKA_BOOTSTRAP_SERVERS"] = stack.kafka_bootstrap
    elif case == "kafka without a client certificate":
        del env["KAFKA_SSL_CERTFILE"], env["KAFKA_SSL_KEYFILE"]
    elif case == "kafka mechanism the listener lacks":
        env["KAFKA_SASL_MECHANISM"] = "SCRAM-SHA-256"
    elif case == "redis wrong password":
        del env["REDIS_PASSWORD_FILE"]
        env["REDIS_PASSWORD"] = wrong
    elif case == "redis untrusted certificate":
        env["REDIS_SSL_CA_FILE"] = str(untrusted_ca)
    elif case == "redis plaintext client on the TLS port":
        env = {k: v for k, v in env.items() if not k.startswith(("REDIS_SSL", "REDIS_USERNAME", "REDIS_PASSWORD"))}
        env["REDIS_URL"] = env["REDIS_URL"].replace("rediss://", "redis://")
    elif case == "redis without credentials":
        del env["REDIS_USERNAME"], env["REDIS_PASSWORD_FILE"]
    elif case == "redis without a client certificate":
        del env["REDIS_SSL_CERT_FILE"], env["REDIS_SSL_KEY_FILE"]
    elif case == "redis cluster setting on a single server":
        env["REDIS_CLUSTER"] = "true"

    code, lines, seconds = _start_up_failure(command, env)

    assert code == 2, lines
    assert len(lines) == 1, lines
    prefix = f"active-users {command}: "
    assert lines[0].startswith(prefix), lines
    assert setting in lines[0].removeprefix(prefix).split(":")[0], lines  # the line begins with the setting(s)
    assert seconds < START_UP_BOUND_S
    for secret in [wrong, *passwords(secure_env)]:
        assert secret not in lines[0]


@pytest.fixture(scope="session")
def encrypted_client_key(secure_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The test bed's client key encrypted (AES-256) with a password, and that password."""
    password = uuid.uuid4().hex
    path = tmp_path_factory.mktemp("encrypted-key") / "client-key.pem"
    subprocess.run(
        ["openssl", "pkey", "-in", secure_env["KAFKA_SSL_KEYFILE"], "-aes256", "-passout", f"pass:{password}",
         "-out", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return path, password


@pytest.mark.parametrize("right_password", [True, False])
def test_an_encrypted_client_key_with_its_password(secure_consumer_env, encrypted_client_key, right_password):
    key, password = encrypted_client_key
    given = password if right_password else "not-the-password"
    env = secure_consumer_env | {"KAFKA_SSL_KEYFILE": str(key), "REDIS_SSL_KEY_FILE": str(key)}
    env |= {"KAFKA_SSL_KEY_PASSWORD": given, "REDIS_SSL_KEY_PASSWORD": given}
    for argv, setting in (
        (["produce", "--count", "0"], "KAFKA_SSL_CERTFILE"),
        (["token", "list"], "REDIS_SSL_CERT_FILE"),
    ):
        result = subprocess.run([*cli(), *argv], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        if right_password:
            assert result.returncode == 0, result.stderr
        else:
            assert result.returncode == 2, result.stderr
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"active-users {argv[0]}: {setting}"), lines
            assert "not-the-password" not in result.stderr


@pytest.mark.parametrize("store", ["single", "cluster"])
def test_the_acl_user_may_do_what_the_service_does_and_nothing_more(store, secure_env, request):
    from activeusers.connections import redis_client

    env = secure_env if store == "single" else request.getfixturevalue("secure_cluster_env")
    client = redis_client(Settings.from_env(env))
    try:
        assert client.ping()  # the end-to-end tests run every other command the services send
        for command in (("FLUSHALL",), ("CONFIG", "GET", "maxmemory"), ("KEYS", "*"), ("EVAL", "return 1", "0")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
    finally:
        client.close()
