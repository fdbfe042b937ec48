"""Settings from the environment: defaults, parsing, and errors that name every bad variable."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activeusers.envvalues import parse_duration
from activeusers.errors import ActiveUsersError, ConfigError
from activeusers.secret import NO_SECRET, Secret
from activeusers.settings import (
    RETIRED_VARIABLES,
    Settings,
    retired_variables,
    variable_names,
)

DEFAULTS = {
    "kafka_bootstrap_servers": "127.0.0.1:9092",
    "kafka_topic": "user-activity",
    "kafka_dlq_topic": "user-activity.dlq",
    "kafka_group_id": "active-users",
    "kafka_session_timeout_s": 45.0,
    "kafka_isolation_level": "read_committed",
    "kafka_security_protocol": "PLAINTEXT",
    "kafka_sasl_mechanism": "PLAIN",
    "kafka_sasl_username": "",
    "kafka_sasl_password": NO_SECRET,
    "kafka_ssl_cafile": "",
    "kafka_ssl_certfile": "",
    "kafka_ssl_keyfile": "",
    "kafka_ssl_key_password": NO_SECRET,
    "kafka_ssl_check_hostname": True,
    "redis_url": "redis://127.0.0.1:6379/0",
    "redis_cluster": False,
    "redis_username": "",
    "redis_password": NO_SECRET,
    "redis_ssl_ca_file": "",
    "redis_ssl_cert_file": "",
    "redis_ssl_key_file": "",
    "redis_ssl_key_password": NO_SECRET,
    "redis_ssl_check_hostname": True,
    "redis_key_prefix": "au:",
    "redis_timeout_s": 2.0,
    "redis_pool_size": 32,
    "redis_pool_wait_s": 1.0,
    "activity_timezone": "UTC",
    "retention_days": 400,
    "hour_retention_days": 90,
    "user_buckets": 16,
    "max_future_skew_s": 300.0,
    "max_event_bytes": 16384,
    "segment_properties": "platform",
    "segment_max_values": 100,
    "batch_size": 50000,
    "consumer_metrics_host": "127.0.0.1",
    "consumer_metrics_port": 9464,
    "consumer_heartbeat_s": 5.0,
    "consumer_stale_s": 60.0,
    "api_host": "127.0.0.1",
    "api_port": 8080,
    "api_rate_limit": 0,
    "api_rate_limit_window_s": 60.0,
    "api_cache_bytes": 268_435_456,
    "api_cache_ttl_s": 600.0,
    "api_max_in_flight": 1024,
    "rocketchat_url": "",
    "rocketchat_ca_file": "",
    "rocketchat_timeout_s": 5.0,
    "rocketchat_auth_ttl_s": 60.0,
    "log_level": "INFO",
}

# (variable, raw value, field, parsed value): one row per setting
ENV_CASES = [
    ("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092", "kafka_bootstrap_servers", "k1:9092,k2:9092"),
    ("KAFKA_TOPIC", "events", "kafka_topic", "events"),
    ("KAFKA_DLQ_TOPIC", "events.dead", "kafka_dlq_topic", "events.dead"),
    ("KAFKA_GROUP_ID", "g2", "kafka_group_id", "g2"),
    ("KAFKA_SESSION_TIMEOUT", "10s", "kafka_session_timeout_s", 10.0),
    ("KAFKA_ISOLATION_LEVEL", "read_uncommitted", "kafka_isolation_level", "read_uncommitted"),
    ("REDIS_URL", "rediss://cache:6380/0", "redis_url", "rediss://cache:6380/0"),
    ("REDIS_CLUSTER", "true", "redis_cluster", True),
    ("REDIS_KEY_PREFIX", "x:", "redis_key_prefix", "x:"),
    ("REDIS_TIMEOUT", "250ms", "redis_timeout_s", 0.25),
    ("REDIS_POOL_SIZE", "8", "redis_pool_size", 8),
    ("REDIS_POOL_WAIT", "250ms", "redis_pool_wait_s", 0.25),
    ("ACTIVITY_TIMEZONE", "Asia/Kathmandu", "activity_timezone", "Asia/Kathmandu"),
    ("RETENTION_DAYS", "30", "retention_days", 30),
    ("HOUR_RETENTION_DAYS", "7", "hour_retention_days", 7),
    ("USER_BUCKETS", "256", "user_buckets", 256),
    ("MAX_FUTURE_SKEW", "5m", "max_future_skew_s", 300.0),
    ("MAX_EVENT_BYTES", "1024", "max_event_bytes", 1024),
    ("SEGMENT_PROPERTIES", "platform,country", "segment_properties", "platform,country"),
    ("SEGMENT_MAX_VALUES", "5", "segment_max_values", 5),
    ("BATCH_SIZE", "100", "batch_size", 100),
    ("CONSUMER_METRICS_HOST", "0.0.0.0", "consumer_metrics_host", "0.0.0.0"),
    ("CONSUMER_METRICS_PORT", "0", "consumer_metrics_port", 0),
    ("CONSUMER_HEARTBEAT", "2s", "consumer_heartbeat_s", 2.0),
    ("CONSUMER_STALE", "1h", "consumer_stale_s", 3600.0),
    ("API_HOST", "::", "api_host", "::"),
    ("API_PORT", "9000", "api_port", 9000),
    ("API_RATE_LIMIT", "10", "api_rate_limit", 10),
    ("API_RATE_LIMIT_WINDOW", "2d", "api_rate_limit_window_s", 172800.0),
    ("API_CACHE_BYTES", "1048576", "api_cache_bytes", 1_048_576),
    ("API_CACHE_TTL", "30s", "api_cache_ttl_s", 30.0),
    ("API_MAX_IN_FLIGHT", "64", "api_max_in_flight", 64),
    ("ROCKETCHAT_URL", "http://chat:3000", "rocketchat_url", "http://chat:3000"),
    ("ROCKETCHAT_TIMEOUT", "800ms", "rocketchat_timeout_s", 0.8),
    ("ROCKETCHAT_AUTH_TTL", "5m", "rocketchat_auth_ttl_s", 300.0),
    ("LOG_LEVEL", "debug", "log_level", "debug"),
]


# A readable file for the settings that name certificate and key files (only readability is checked here).
READABLE = str(Path(__file__).resolve())

# (variable, raw value, field, parsed value): the connection-security settings, which are only valid together.
SECURITY_CASES = [
    ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL", "kafka_security_protocol", "SASL_SSL"),
    ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", "kafka_sasl_mechanism", "SCRAM-SHA-512"),
    ("KAFKA_SASL_USERNAME", "svc", "kafka_sasl_username", "svc"),
    ("KAFKA_SASL_PASSWORD", "k p w", "kafka_sasl_password", Secret("k p w")),
    ("KAFKA_SSL_CAFILE", READABLE, "kafka_ssl_cafile", READABLE),
    ("KAFKA_SSL_CERTFILE", READABLE, "kafka_ssl_certfile", READABLE),
    ("KAFKA_SSL_KEYFILE", READABLE, "kafka_ssl_keyfile", READABLE),
    ("KAFKA_SSL_KEY_PASSWORD", "kkey", "kafka_ssl_key_password", Secret("kkey")),
    ("KAFKA_SSL_CHECK_HOSTNAME", "false", "kafka_ssl_check_hostname", False),
    ("REDIS_USERNAME", "app", "redis_username", "app"),
    ("REDIS_PASSWORD", "rpw", "redis_password", Secret("rpw")),
    ("REDIS_SSL_CA_FILE", READABLE, "redis_ssl_ca_file", READABLE),
    ("REDIS_SSL_CERT_FILE", READABLE, "redis_ssl_cert_file", READABLE),
    ("REDIS_SSL_KEY_FILE", READABLE, "redis_ssl_key_file", READABLE),
    ("REDIS_SSL_KEY_PASSWORD", "rkey", "redis_ssl_key_password", Secret("rkey")),
    ("REDIS_SSL_CHECK_HOSTNAME", "no", "redis_ssl_check_hostname", False),
    ("ROCKETCHAT_CA_FILE", READABLE, "rocketchat_ca_file", READABLE),
]
SECURE_ENV = {variable: raw for variable, raw, _, _ in SECURITY_CASES} | {
    "REDIS_URL": "rediss://cache:6380/0",
    "ROCKETCHAT_URL": "https://chat.example.com/",
}


def config_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert isinstance(caught.value, ActiveUsersError)
    return str(caught.value)


# -------------------------------------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    built = Settings.from_env({})
    assert dataclasses.asdict(built) == DEFAULTS
    assert built == Settings()
    assert Settings().problems() == []


def test_defaults_table_lists_every_field() -> None:
    assert {f.name for f in dataclasses.fields(Settings)} == set(DEFAULTS)


def test_indexed_properties_are_the_names_in_order_without_repeats() -> None:
    assert Settings().indexed_properties == ("platform",)
    assert Settings(segment_properties=" country ,platform,country").indexed_properties == ("country", "platform")


@pytest.mark.parametrize("value", ["none", " NONE ", "None"])
def test_none_indexes_no_property(value: str) -> None:
    assert Settings.from_env({"SEGMENT_PROPERTIES": value}).indexed_properties == ()


def test_zone_property() -> None:
    assert Settings().zone == ZoneInfo("UTC")
    assert Settings(activity_timezone="Europe/Berlin").zone.key == "Europe/Berlin"


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().retention_days = 1  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------ every variable


def test_env_cases_cover_every_field() -> None:
    assert {case[2] for case in ENV_CASES + SECURITY_CASES} == set(DEFAULTS)


@pytest.mark.parametrize(("variable", "raw", "field", "expected"), ENV_CASES)
def test_each_variable_is_read(variable: str, raw: str, field: str, expected: object) -> None:
    assert variable == field.upper().removesuffix("_S")
    built = Settings.from_env({variable: raw})
    assert getattr(built, field) == expected
    assert type(getattr(built, field)) is type(DEFAULTS[field])
    others = {k: v for k, v in dataclasses.asdict(built).items() if k != field}
    assert others == {k: v for k, v in DEFAULTS.items() if k != field}


def test_all_variables_at_once() -> None:
    built = Settings.from_env({variable: raw for variable, raw, _, _ in ENV_CASES})
    assert dataclasses.asdict(built) == DEFAULTS | {field: expected for _, _, field, expected in ENV_CASES}


def test_security_variables_are_read_together() -> None:
    built = Settings.from_env(SECURE_ENV)
    for variable, _, field, expected in SECURITY_CASES:
        assert variable == field.upper()
        assert getattr(built, field) == expected, variable
        assert type(getattr(built, field)) is type(DEFAULTS[field]), variable


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("1", True), ("Yes", True), ("off", False), ("0", False)]
)
def test_booleans(raw: str, expected: bool) -> None:
    assert Settings.from_env({"REDIS_SSL_CHECK_HOSTNAME": raw}).redis_ssl_check_hostname is expected


# ------------------------------------------------------------------------------------------------------- secrets


def test_secrets_are_never_shown() -> None:
    built = Settings.from_env(
        SECURE_ENV | {"REDIS_URL": "rediss://app:url-pw@cache:6380/0", "REDIS_PASSWORD": "", "REDIS_USERNAME": ""}
    )
    for text in (repr(built), str(built), repr(built.kafka_sasl_password), str(built.redis_ssl_key_password)):
        for secret in ("k p w", "kkey", "rkey", "url-pw"):
            assert secret not in text
    assert "kafka_sasl_password=Secret('***')" in repr(built)
    assert "redis_url='rediss://app:***@cache:6380/0'" in repr(built)
    assert repr(Settings().redis_password) == "Secret('')" and str(Secret("x")) == "***"
    assert built.kafka_sasl_password.reveal() == "k p w"


def test_settings_with_secrets_survive_pickling() -> None:
    built = Settings.from_env(SECURE_ENV)  # the consumer's store worker receives its settings pickled
    again = pickle.loads(pickle.dumps(built))
    assert again == built and again.redis_password.reveal() == "rpw"
    assert Secret("a") != Secret("b") and Secret("a") != "a" and hash(Secret("a")) == hash(Secret("a"))


@pytest.mark.parametrize("variable", ["KAFKA_SASL_PASSWORD", "KAFKA_SSL_KEY_PASSWORD", "REDIS_PASSWORD"])
def test_a_secret_from_a_file(variable: str, tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(" two words \n")  # one trailing newline, as secret files usually end, is not part of it
    env = {k: v for k, v in SECURE_ENV.items() if k != variable} | {f"{variable}_FILE": str(path)}
    assert getattr(Settings.from_env(env), variable.lower()) == Secret(" two words ")


def test_every_secret_has_a_file_form() -> None:
    names = variable_names()
    for variable in ("KAFKA_SASL_PASSWORD", "KAFKA_SSL_KEY_PASSWORD", "REDIS_PASSWORD", "REDIS_SSL_KEY_PASSWORD"):
        assert {variable, variable + "_FILE"} <= names
    assert "REDIS_URL_FILE" not in names and "KAFKA_SESSION_TIMEOUT" in names


def test_secret_file_errors_name_the_variable_and_never_the_secret(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    both = config_error({"REDIS_PASSWORD": "hunter2", "REDIS_PASSWORD_FILE": str(empty)})
    assert "REDIS_PASSWORD and REDIS_PASSWORD_FILE are both set" in both and "hunter2" not in both
    missing = config_error({"REDIS_PASSWORD_FILE": str(tmp_path / "nope")})
    assert f"REDIS_PASSWORD_FILE={str(tmp_path / 'nope')!r}: cannot read it" in missing
    assert "the file is empty" in config_error({"REDIS_PASSWORD_FILE": str(empty)})
    unrelated = config_error({"KAFKA_SASL_PASSWORD": "s3cret", "RETENTION_DAYS": "0"})
    assert "s3cret" not in unrelated and "KAFKA_SASL_USERNAME" in unrelated


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SECURITY_PROTOCOL": "sasl_ssl"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_PASSWORD"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
             "KAFKA_SASL_MECHANISM": "GSSAPI"},
            "KAFKA_SASL_MECHANISM",
        ),
        ({"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_USERNAME"),
        ({"KAFKA_SSL_CAFILE": READABLE}, "KAFKA_SSL_CAFILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CAFILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEYFILE": READABLE}, "KAFKA_SSL_KEYFILE"),
        ({"KAFKA_SSL_CHECK_HOSTNAME": "maybe"}, "KAFKA_SSL_CHECK_HOSTNAME"),
        ({"REDIS_SSL_CA_FILE": READABLE}, "REDIS_SSL_CA_FILE"),
        ({"REDIS_URL": "rediss://h:6380/0", "REDIS_SSL_CERT_FILE": "/nonexistent"}, "REDIS_SSL_CERT_FILE"),
        ({"REDIS_URL": "redis://:pw@h:6379/0", "REDIS_PASSWORD": "pw2"}, "REDIS_PASSWORD"),
        ({"REDIS_URL": "redis://u:pw@h:6379/0", "REDIS_USERNAME": "u"}, "REDIS_USERNAME"),
        ({"REDIS_USERNAME": "app"}, "REDIS_USERNAME"),
    ],
)  # fmt: skip
def test_inconsistent_security_names_the_variable(env: dict[str, str], variable: str) -> None:
    assert variable in config_error(env)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("unix:///run/redis.sock", "REDIS_CLUSTER needs a redis:// or rediss:// REDIS_URL"),
        ("redis://node1:7000/3", "REDIS_URL names database 3, but a Redis Cluster has database 0 only"),
    ],
)
def test_a_cluster_needs_a_tcp_seed_node_and_database_0(url: str, problem: str) -> None:
    assert problem in config_error({"REDIS_CLUSTER": "true", "REDIS_URL": url})
    assert Settings.from_env({"REDIS_URL": url}).redis_cluster is False  # a single server may use either


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"ROCKETCHAT_URL": "http://chat:3000", "ROCKETCHAT_CA_FILE": READABLE}, "does not use TLS (https://)"),
        ({"ROCKETCHAT_CA_FILE": READABLE}, "does not use TLS (https://)"),
        ({"ROCKETCHAT_URL": "https://chat", "ROCKETCHAT_CA_FILE": "/nonexistent/ca.pem"}, "is not a readable file"),
    ],
)
def test_the_rocketchat_ca_file_needs_https_and_a_readable_file(env: dict[str, str], problem: str) -> None:
    message = config_error(env)
    assert "ROCKETCHAT_CA_FILE" in message and problem in message


def test_a_cluster_takes_no_encrypted_client_key(tmp_path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    env = {
        "REDIS_URL": "rediss://node1:7000/0",
        "REDIS_SSL_CERT_FILE": str(tmp_path / "cert.pem"),
        "REDIS_SSL_KEY_FILE": str(tmp_path / "key.pem"),
        "REDIS_SSL_KEY_PASSWORD": "secret-pw",
    }
    assert Settings.from_env(env).redis_ssl_key_password  # a single server opens an encrypted key
    problem = config_error({**env, "REDIS_CLUSTER": "true"})
    assert "REDIS_SSL_KEY_PASSWORD is not supported with REDIS_CLUSTER" in problem and "secret-pw" not in problem


@pytest.mark.parametrize("url", ["redis://node1:7000", "redis://node1:7000/", "rediss://u:pw@node1:7000/0"])
def test_cluster_seed_urls_that_are_valid(url: str) -> None:
    assert Settings.from_env({"REDIS_CLUSTER": "yes", "REDIS_URL": url}).redis_cluster is True


def test_secured_configurations_that_are_valid() -> None:
    assert Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SSL"}).kafka_ssl_cafile == ""  # the system's CAs
    plain_sasl = {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}
    assert Settings.from_env(plain_sasl).kafka_sasl_mechanism == "PLAIN"
    assert Settings.from_env({"REDIS_URL": "redis://u:pw@h:6379/0"}).redis_username == ""  # credentials in the URL
    assert Settings.from_env({"REDIS_PASSWORD": "pw"}).redis_password == Secret("pw")  # the default user


@pytest.mark.parametrize("variable", ["REDIS_TIMEOUT_S", "CONSUMER_HEARTBEAT_S", "redis_timeout", "RetentionDays"])
def test_other_spellings_are_ignored(variable: str) -> None:
    assert Settings.from_env({variable: "7"}) == Settings()


def test_empty_strings_mean_default() -> None:
    assert Settings.from_env({variable: "" for variable, _, _, _ in ENV_CASES}) == Settings()


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"PATH": "/bin", "HOME": "/root", "REDIS": "x"}) == Settings()


def test_values_are_stripped() -> None:
    built = Settings.from_env({"KAFKA_TOPIC": " t ", "RETENTION_DAYS": " 12 ", "REDIS_TIMEOUT": " 3 s "})
    assert (built.kafka_topic, built.retention_days, built.redis_timeout_s) == ("t", 12, 3.0)


# ------------------------------------------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("300", 300.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("250ms", 0.25),
        ("2d", 172_800.0),
        ("1.5h", 5400.0),
        ("0", 0.0),
        ("0.5", 0.5),
        (" 5 m ", 300.0),
        ("1000ms", 1.0),
    ],
)
def test_parse_duration(raw: str, seconds: float) -> None:
    assert parse_duration(raw) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize("raw", ["", "abc", "-5", "+5", "5x", "5 mm", "1e3", "5M", "1h30m", "s", ".5", "5.", "1,5"])
def test_parse_duration_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(raw)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**9), st.sampled_from([("", 1.0), ("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]))
def test_parse_duration_units(number: int, unit: tuple[str, float]) -> None:
    suffix, factor = unit
    assert parse_duration(f"{number}{suffix}") == pytest.approx(number * factor)


@pytest.mark.parametrize(
    ("variable", "raw", "seconds"),
    [
        ("MAX_FUTURE_SKEW", "300", 300.0),
        ("MAX_FUTURE_SKEW", "30s", 30.0),
        ("REDIS_TIMEOUT", "250ms", 0.25),
        ("REDIS_TIMEOUT", "1m", 60.0),
        ("CONSUMER_STALE", "1h", 3600.0),
        ("API_RATE_LIMIT_WINDOW", "2d", 172_800.0),
    ],
)
def test_durations_in_the_environment(variable: str, raw: str, seconds: float) -> None:
    field = variable.lower() + "_s"
    assert getattr(Settings.from_env({variable: raw}), field) == pytest.approx(seconds)


# ------------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("variable", "raw", "expected"),
    [
        ("RETENTION_DAYS", "ten", "expected a whole number"),
        ("RETENTION_DAYS", "1.5", "expected a whole number"),
        ("API_PORT", "http", "expected a whole number"),
        ("BATCH_SIZE", "1e3", "expected a whole number"),
        ("REDIS_TIMEOUT", "fast", "expected a duration"),
        ("MAX_FUTURE_SKEW", "-1", "expected a duration"),
        ("CONSUMER_HEARTBEAT", "5 minutes", "expected a duration"),
    ],
)
def test_unparseable_value(variable: str, raw: str, expected: str) -> None:
    message = config_error({variable: raw})
    assert f"{variable}={raw!r}" in message
    assert expected in message


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("RETENTION_DAYS", "0"),
        ("HOUR_RETENTION_DAYS", "0"),
        ("MAX_EVENT_BYTES", "63"),
        ("SEGMENT_PROPERTIES", "platform,"),
        ("SEGMENT_PROPERTIES", "plat form"),
        ("SEGMENT_PROPERTIES", "platform:os"),
        ("SEGMENT_PROPERTIES", "x" * 65),
        ("SEGMENT_PROPERTIES", "{platform}"),
        ("SEGMENT_MAX_VALUES", "0"),
        ("SEGMENT_MAX_VALUES", "10001"),
        ("BATCH_SIZE", "0"),
        ("BATCH_SIZE", "100001"),
        ("REDIS_TIMEOUT", "0"),
        ("REDIS_TIMEOUT", "0ms"),
        ("CONSUMER_HEARTBEAT", "0"),
        ("API_PORT", "65536"),
        ("API_PORT", "-1"),
        ("CONSUMER_METRICS_PORT", "70000"),
        ("API_RATE_LIMIT", "-1"),
        ("API_RATE_LIMIT_WINDOW", "0s"),
        ("API_CACHE_BYTES", "-1"),
        ("API_CACHE_TTL", "0"),
        ("REDIS_POOL_SIZE", "0"),
        ("REDIS_POOL_SIZE", "10001"),
        ("REDIS_POOL_WAIT", "0"),
        ("REDIS_POOL_WAIT", "61s"),
        ("API_MAX_IN_FLIGHT", "0"),
        ("API_MAX_IN_FLIGHT", "1000001"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("REDIS_URL", "127.0.0.1:6379"),
        ("LOG_LEVEL", "verbose"),
        ("LOG_LEVEL", "critical"),
        ("KAFKA_ISOLATION_LEVEL", "committed"),
        ("KAFKA_ISOLATION_LEVEL", "read_committed,read_uncommitted"),
        ("ROCKETCHAT_URL", "chat.example.com"),
        ("ROCKETCHAT_URL", "ftp://chat.example.com"),
        ("ROCKETCHAT_URL", "https://"),
        ("ROCKETCHAT_URL", "https://chat.example.com/?x=1"),
        ("ROCKETCHAT_URL", "https://[::1"),
        ("ROCKETCHAT_URL", "https://chat:port"),
        ("ROCKETCHAT_TIMEOUT", "0"),
        ("ROCKETCHAT_TIMEOUT", "61s"),
        ("ROCKETCHAT_AUTH_TTL", "2d"),
    ],
)
def test_out_of_range_value_names_the_variable(variable: str, raw: str) -> None:
    assert variable in config_error({variable: raw})


@pytest.mark.parametrize(
    ("variable", "raw", "field", "expected"),
    [
        ("MAX_EVENT_BYTES", "64", "max_event_bytes", 64),
        ("SEGMENT_MAX_VALUES", "1", "segment_max_values", 1),
        ("SEGMENT_MAX_VALUES", "10000", "segment_max_values", 10_000),
        ("SEGMENT_PROPERTIES", " platform , app.v2,os_name ", "segment_properties", "platform , app.v2,os_name"),
        ("BATCH_SIZE", "1", "batch_size", 1),
        ("BATCH_SIZE", "100000", "batch_size", 100_000),
        ("API_PORT", "65535", "api_port", 65535),
        ("RETENTION_DAYS", "1", "retention_days", 1),
        ("MAX_FUTURE_SKEW", "0", "max_future_skew_s", 0.0),
        ("API_CACHE_BYTES", "0", "api_cache_bytes", 0),
        ("REDIS_POOL_SIZE", "1", "redis_pool_size", 1),
        ("REDIS_POOL_SIZE", "10000", "redis_pool_size", 10_000),
        ("REDIS_POOL_WAIT", "60s", "redis_pool_wait_s", 60.0),
        ("API_MAX_IN_FLIGHT", "1", "api_max_in_flight", 1),
        ("REDIS_URL", "unix:///run/redis.sock", "redis_url", "unix:///run/redis.sock"),
        ("LOG_LEVEL", "Warning", "log_level", "Warning"),
        ("KAFKA_ISOLATION_LEVEL", "READ_COMMITTED", "kafka_isolation_level", "READ_COMMITTED"),
        ("ROCKETCHAT_URL", "https://chat.example.com/rocket", "rocketchat_url", "https://chat.example.com/rocket"),
        ("ROCKETCHAT_TIMEOUT", "60s", "rocketchat_timeout_s", 60.0),
        ("ROCKETCHAT_AUTH_TTL", "0", "rocketchat_auth_ttl_s", 0.0),
    ],
)
def test_boundary_values_are_accepted(variable: str, raw: str, field: str, expected: object) -> None:
    assert getattr(Settings.from_env({variable: raw}), field) == expected


@pytest.mark.parametrize("zone", ["Mars/Base", "utc", "America", "Europe/", "../etc/passwd", "/etc/localtime", "UTC+1"])
def test_bad_time_zone(zone: str) -> None:
    message = config_error({"ACTIVITY_TIMEZONE": zone})
    assert f"ACTIVITY_TIMEZONE={zone!r}" in message
    assert "IANA" in message


@pytest.mark.parametrize("zone", ["UTC", "America/Santiago", "Australia/Lord_Howe", "Etc/GMT-14"])
def test_good_time_zones(zone: str) -> None:
    assert Settings.from_env({"ACTIVITY_TIMEZONE": zone}).zone.key == zone


def test_every_bad_variable_is_listed_at_once() -> None:
    message = config_error(
        {
            "RETENTION_DAYS": "abc",
            "BATCH_SIZE": "1.5",
            "REDIS_TIMEOUT": "fast",
            "API_PORT": "99999",
            "ACTIVITY_TIMEZONE": "Mars/Base",
            "LOG_LEVEL": "loud",
            "KAFKA_TOPIC": "good-topic",
        }
    )
    for variable in ("RETENTION_DAYS", "BATCH_SIZE", "REDIS_TIMEOUT", "API_PORT", "ACTIVITY_TIMEZONE", "LOG_LEVEL"):
        assert variable in message, variable
    assert "KAFKA_TOPIC" not in message


def test_every_range_violation_is_listed_at_once() -> None:
    message = config_error({"RETENTION_DAYS": "0", "BATCH_SIZE": "0", "API_RATE_LIMIT": "-5"})
    for variable in ("RETENTION_DAYS", "BATCH_SIZE", "API_RATE_LIMIT"):
        assert variable in message, variable


def test_problems_lists_every_violation() -> None:
    problems = Settings(retention_days=0, api_port=-1, activity_timezone="Nowhere/Land").problems()
    assert len(problems) == 3
    for variable, problem in zip(("ACTIVITY_TIMEZONE", "RETENTION_DAYS", "API_PORT"), problems, strict=True):
        assert problem.startswith(variable), problem


# ----------------------------------------------------------------------------------------------------- retired


def test_retired_variables_name_member_retention_days_with_its_reason() -> None:
    assert set(RETIRED_VARIABLES) == {"MEMBER_RETENTION_DAYS"}
    reason = RETIRED_VARIABLES["MEMBER_RETENTION_DAYS"]
    assert "RETENTION_DAYS" in reason and "day sets" in reason  # says what replaced it
    assert set(RETIRED_VARIABLES).isdisjoint(variable_names())  # no field reads it any more
    assert not any(field.name.startswith("member") for field in dataclasses.fields(Settings))


@pytest.mark.parametrize(
    ("env", "retired"),
    [
        ({}, set()),
        ({"MEMBER_RETENTION_DAYS": "45"}, {"MEMBER_RETENTION_DAYS"}),
        ({"MEMBER_RETENTION_DAYS": "0", "RETENTION_DAYS": "30"}, {"MEMBER_RETENTION_DAYS"}),
        ({"MEMBER_RETENTION_DAYS": "not even a number"}, {"MEMBER_RETENTION_DAYS"}),
        ({"MEMBER_RETENTION_DAYS": ""}, set()),  # empty means unset, as for every variable
        ({"member_retention_days": "45"}, set()),  # other spellings are not read, as for every variable
        ({"RETENTION_DAYS": "30", "KAFKA_TOPIC": "t"}, set()),
    ],
)
def test_retired_variables_set_in_the_environment(env: dict[str, str], retired: set[str]) -> None:
    found = retired_variables(env)
    assert set(found) == retired
    assert all(found[name] == RETIRED_VARIABLES[name] for name in found)


@pytest.mark.parametrize("raw", ["20", "401", "-1", "forever"])
def test_a_retired_variable_never_stops_the_settings(raw: str) -> None:
    # Once a validated variable (negative, or above RETENTION_DAYS, was an error): now ignored, whatever it holds.
    built = Settings.from_env({"MEMBER_RETENTION_DAYS": raw, "RETENTION_DAYS": "30"})
    assert built.retention_days == 30
    assert built.problems() == []
    assert built == Settings.from_env({"RETENTION_DAYS": "30"})


# ------------------------------------------------------------------------------------------------- cross-field


@pytest.mark.parametrize(("raw", "ok"), [("1", True), ("16384", True), ("0", False), ("16385", False)])
def test_user_buckets_range(raw: str, ok: bool) -> None:
    if ok:
        assert Settings.from_env({"USER_BUCKETS": raw}).user_buckets == int(raw)
    else:
        assert "USER_BUCKETS must be between 1 and 16384" in config_error({"USER_BUCKETS": raw})


@pytest.mark.parametrize("prefix", ["{au}:", "a{", "b}:"])
def test_the_prefix_carries_no_hash_tag(prefix: str) -> None:
    assert "REDIS_KEY_PREFIX must not contain { or }" in config_error({"REDIS_KEY_PREFIX": prefix})


def test_dlq_topic_must_differ_from_topic() -> None:
    assert "KAFKA_DLQ_TOPIC" in config_error({"KAFKA_TOPIC": "t", "KAFKA_DLQ_TOPIC": "t"})
    assert "KAFKA_DLQ_TOPIC" in config_error({"KAFKA_DLQ_TOPIC": "user-activity"})
    assert Settings.from_env({"KAFKA_TOPIC": "t", "KAFKA_DLQ_TOPIC": "t.dlq"}).kafka_dlq_topic == "t.dlq"


@pytest.mark.parametrize(("heartbeat", "stale"), [("5s", "5s"), ("10s", "5s"), ("1m", "59s"), ("2h", "1h")])
def test_stale_must_exceed_heartbeat(heartbeat: str, stale: str) -> None:
    message = config_error({"CONSUMER_HEARTBEAT": heartbeat, "CONSUMER_STALE": stale})
    assert "CONSUMER_STALE" in message
    assert "CONSUMER_HEARTBEAT" in message


def test_stale_just_above_heartbeat_is_accepted() -> None:
    built = Settings.from_env({"CONSUMER_HEARTBEAT": "5s", "CONSUMER_STALE": "5001ms"})
    assert built.consumer_stale_s > built.consumer_heartbeat_s
    assert "CONSUMER_STALE" in config_error({"CONSUMER_HEARTBEAT": "2m"})  # against the default stale of 60 s


def test_whitespace_topic_is_empty() -> None:
    assert "KAFKA_TOPIC" in config_error({"KAFKA_TOPIC": "   "})


def test_retention_names_the_setting_of_each_kind_of_data():
    settings = Settings(retention_days=400, hour_retention_days=90)
    assert settings.retention("days") == 400
    assert settings.retention("hours") == 90
