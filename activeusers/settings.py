"""The service's settings: one frozen dataclass, read from the environment once per entry point.

Secrets (passwords) are :class:`Secret` values, shown as ``***`` by ``repr`` and ``str``; each may also be given
as ``NAME_FILE=/path`` (the container convention, e.g. Docker secrets), read once when the settings are built.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from activeusers.envvalues import parse_value, secret_from
from activeusers.errors import ConfigError
from activeusers.secret import NO_SECRET, Secret

_PROPERTY = re.compile(r"\s*[A-Za-z0-9_.-]{1,64}\s*")
_NAMES = "must be property names (1 to 64 letters, digits, _ . -) separated by commas, or none"
# SEGMENT_PROPERTIES that indexes no property (an empty variable means the default, as for every other one).
NO_PROPERTIES: Final = "none"
# read_committed skips the records of aborted transactions and waits for open ones; read_uncommitted reads all.
ISOLATION_LEVELS = ("read_committed", "read_uncommitted")

# Variables an earlier version read, with why they are ignored now: a process that finds one set says so once
# (retired_variables) and starts, so an upgrade never fails on an old deployment's environment.
RETIRED_VARIABLES: Mapping[str, str] = {
    "MEMBER_RETENTION_DAYS": "the day sets of ids are gone: active-users lists ids from the index for every day "
    "of RETENTION_DAYS",
}

# USER_BUCKETS when unset, and the buckets of a key schema built without settings.
DEFAULT_BUCKETS: Final = 16

# The kinds of indexed data with a retention of their own: "days" for the day and new-user bitmaps (and the
# counters beside them), "hours" for the hour bitmaps.
Retained = Literal["days", "hours"]

KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with the defaults documented in docs/operations.md's configuration table."""

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic: str = "user-activity"
    kafka_dlq_topic: str = "user-activity.dlq"
    kafka_group_id: str = "active-users"
    kafka_session_timeout_s: float = 45.0
    kafka_isolation_level: str = "read_committed"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret = NO_SECRET
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    kafka_ssl_key_password: Secret = NO_SECRET
    kafka_ssl_check_hostname: bool = True
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: bool = False
    redis_username: str = ""
    redis_password: Secret = NO_SECRET
    redis_ssl_ca_file: str = ""
    redis_ssl_cert_file: str = ""
    redis_ssl_key_file: str = ""
    redis_ssl_key_password: Secret = NO_SECRET
    redis_ssl_check_hostname: bool = True
    redis_key_prefix: str = "au:"
    redis_timeout_s: float = 2.0
    redis_pool_size: int = 32
    redis_pool_wait_s: float = 1.0
    activity_timezone: str = "UTC"
    retention_days: int = 400
    hour_retention_days: int = 90
    user_buckets: int = DEFAULT_BUCKETS
    max_future_skew_s: float = 300.0
    max_event_bytes: int = 16384
    segment_properties: str = "platform"
    segment_max_values: int = 100
    batch_size: int = 50000
    consumer_metrics_host: str = "127.0.0.1"
    consumer_metrics_port: int = 9464
    consumer_heartbeat_s: float = 5.0
    consumer_stale_s: float = 60.0
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_rate_limit: int = 0
    api_rate_limit_window_s: float = 60.0
    api_cache_bytes: int = 268_435_456
    api_cache_ttl_s: float = 600.0
    api_max_in_flight: int = 1024
    rocketchat_url: str = ""
    rocketchat_ca_file: str = ""
    rocketchat_timeout_s: float = 5.0
    rocketchat_auth_ttl_s: float = 60.0
    log_level: str = "INFO"

    def __repr__(self) -> str:
        # Secrets show as ***; so does a password inside REDIS_URL (redis://user:password@host).
        shown = ", ".join(
            f"{f.name}={redacted_url(value)!r}" if f.name == "redis_url" else f"{f.name}={value!r}"
            for f in fields(self)
            for value in [getattr(self, f.name)]
        )
        return f"Settings({shown})"

    @property
    def zone(self) -> ZoneInfo:
        """The configured activity time zone (validated when the settings were built)."""
        return ZoneInfo(self.activity_timezone)

    def retention(self, data: Retained) -> int:
        """Days a day's ``data`` is kept: ``RETENTION_DAYS`` (day bitmaps), ``HOUR_RETENTION_DAYS`` (hour ones)."""
        return self.retention_days if data == "days" else self.hour_retention_days

    @property
    def indexed_properties(self) -> tuple[str, ...]:
        """The event properties indexed for breakdowns and segments (``SEGMENT_PROPERTIES``), in their order; none
        for ``none``."""
        if self.segment_properties.strip().lower() == NO_PROPERTIES:
            return ()
        return tuple(dict.fromkeys(name.strip() for name in self.segment_properties.split(",")))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raise :class:`ConfigError` naming every bad variable."""
        values: dict[str, object] = {}
        problems: list[str] = []
        for f in fields(cls):
            name = variable_name(f.name)
            if f.type in (Secret, "Secret"):
                try:
                    found = secret_from(name, env)
                except ValueError as exc:
                    problems.append(str(exc))
                else:
                    if found:
                        values[f.name] = found
                continue
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = parse_value(f.name, f.type, raw)
            except ValueError as exc:
                problems.append(f"{name}={raw!r}: {exc}")
        # Range and cross-field rules are checked too (unparseable variables keep their defaults meanwhile), so
        # one error lists every bad variable.
        built = cls(**values)  # type: ignore[arg-type]
        problems.extend(built.problems())
        if not problems:
            return built
        raise ConfigError("invalid configuration: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Every violated range or cross-field rule, as messages naming the variables."""
        found: list[str] = []
        try:
            ZoneInfo(self.activity_timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # OSError: a directory name such as "America" makes zoneinfo raise IsADirectoryError.
            found.append(f"ACTIVITY_TIMEZONE={self.activity_timezone!r} is not an IANA time zone name")
        checks = [
            (self.retention_days >= 1, "RETENTION_DAYS must be at least 1"),
            (self.hour_retention_days >= 1, "HOUR_RETENTION_DAYS must be at least 1"),
            (1 <= self.user_buckets <= 16384, "USER_BUCKETS must be between 1 and 16384"),
            (
                "{" not in self.redis_key_prefix and "}" not in self.redis_key_prefix,
                "REDIS_KEY_PREFIX must not contain { or } (the index keys carry their own Redis Cluster hash tag)",
            ),
            (self.max_future_skew_s >= 0, "MAX_FUTURE_SKEW must not be negative"),
            (self.max_event_bytes >= 64, "MAX_EVENT_BYTES must be at least 64"),
            (
                not self.indexed_properties or all(map(_PROPERTY.fullmatch, self.segment_properties.split(","))),
                "SEGMENT_PROPERTIES " + _NAMES,
            ),
            (1 <= self.segment_max_values <= 10_000, "SEGMENT_MAX_VALUES must be between 1 and 10000"),
            (1 <= self.batch_size <= 100_000, "BATCH_SIZE must be between 1 and 100000"),
            (self.redis_timeout_s > 0, "REDIS_TIMEOUT must be positive"),
            (1 <= self.redis_pool_size <= 10_000, "REDIS_POOL_SIZE must be between 1 and 10000"),
            (0 < self.redis_pool_wait_s <= 60, "REDIS_POOL_WAIT must be positive and at most 60s"),
            (6 <= self.kafka_session_timeout_s <= 300, "KAFKA_SESSION_TIMEOUT must be between 6s and 300s"),
            (
                self.kafka_isolation_level.lower() in ISOLATION_LEVELS,
                "KAFKA_ISOLATION_LEVEL must be read_committed or read_uncommitted",
            ),
            (self.consumer_heartbeat_s > 0, "CONSUMER_HEARTBEAT must be positive"),
            (self.consumer_stale_s > self.consumer_heartbeat_s, "CONSUMER_STALE must exceed CONSUMER_HEARTBEAT"),
            (0 <= self.api_port <= 65535, "API_PORT must be a TCP port"),
            (0 <= self.consumer_metrics_port <= 65535, "CONSUMER_METRICS_PORT must be a TCP port"),
            (self.api_rate_limit >= 0, "API_RATE_LIMIT must not be negative"),
            (self.api_rate_limit_window_s > 0, "API_RATE_LIMIT_WINDOW must be positive"),
            (self.api_cache_bytes >= 0, "API_CACHE_BYTES must not be negative"),
            (self.api_cache_ttl_s > 0, "API_CACHE_TTL must be positive"),
            (1 <= self.api_max_in_flight <= 1_000_000, "API_MAX_IN_FLIGHT must be between 1 and 1000000"),
            (
                bool(self.kafka_topic) and bool(self.kafka_dlq_topic),
                "KAFKA_TOPIC and KAFKA_DLQ_TOPIC must not be empty",
            ),
            (self.kafka_topic != self.kafka_dlq_topic, "KAFKA_DLQ_TOPIC must differ from KAFKA_TOPIC"),
            (
                self.redis_url.startswith(("redis://", "rediss://", "unix://")),
                "REDIS_URL must start with redis://, rediss:// or unix://",
            ),
            (self.log_level.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"}, "LOG_LEVEL must be a level name"),
        ]
        found.extend(message for ok, message in checks if not ok)
        found.extend(self._kafka_security_problems())
        found.extend(self._redis_security_problems())
        found.extend(self._redis_cluster_problems())
        found.extend(self._rocketchat_problems())
        return found

    def _kafka_security_problems(self) -> list[str]:
        protocol = self.kafka_security_protocol
        if protocol not in KAFKA_SECURITY_PROTOCOLS:
            return [f"KAFKA_SECURITY_PROTOCOL={protocol!r} must be one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}"]
        found: list[str] = []
        if protocol.startswith("SASL_"):
            if self.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
                choices = ", ".join(KAFKA_SASL_MECHANISMS)
                found.append(f"KAFKA_SASL_MECHANISM={self.kafka_sasl_mechanism!r} must be one of {choices}")
            if not self.kafka_sasl_username or not self.kafka_sasl_password:
                found.append(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        elif self.kafka_sasl_username or self.kafka_sasl_password:
            # Credentials that would silently not be sent are a configuration mistake, not a default.
            found.append(
                f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL={protocol} uses no SASL"
            )
        tls_files = {
            "KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
        }
        if protocol.endswith("SSL"):
            found.extend(_tls_file_problems(tls_files, "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"))
        elif any(tls_files.values()) or self.kafka_ssl_key_password:
            named = ", ".join(name for name, value in tls_files.items() if value) or "KAFKA_SSL_KEY_PASSWORD"
            found.append(f"{named} set but KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS (SSL or SASL_SSL)")
        return found

    def _redis_security_problems(self) -> list[str]:
        found: list[str] = []
        in_url = _url_credentials(self.redis_url)
        if in_url[0] and self.redis_username:
            found.append("REDIS_URL carries a username and REDIS_USERNAME is set too: give one")
        if in_url[1] and self.redis_password:
            found.append("REDIS_URL carries a password and REDIS_PASSWORD is set too: give one")
        if self.redis_username and not (self.redis_password or in_url[1]):
            found.append("REDIS_USERNAME needs REDIS_PASSWORD (or REDIS_PASSWORD_FILE)")
        tls_files = {
            "REDIS_SSL_CA_FILE": self.redis_ssl_ca_file,
            "REDIS_SSL_CERT_FILE": self.redis_ssl_cert_file,
            "REDIS_SSL_KEY_FILE": self.redis_ssl_key_file,
        }
        if self.redis_url.startswith("rediss://"):
            found.extend(_tls_file_problems(tls_files, "REDIS_SSL_CERT_FILE", "REDIS_SSL_KEY_FILE"))
        elif any(tls_files.values()) or self.redis_ssl_key_password:
            named = ", ".join(name for name, value in tls_files.items() if value) or "REDIS_SSL_KEY_PASSWORD"
            found.append(f"{named} set but REDIS_URL does not use TLS (rediss://)")
        return found

    def _rocketchat_problems(self) -> list[str]:
        """Rocket.Chat is asked over HTTP(S) within a bounded time; its CA file only makes sense with https."""
        found: list[str] = []
        try:
            url = urllib.parse.urlsplit(self.rocketchat_url)
            valid = url.scheme in ("http", "https") and bool(url.hostname) and not url.query and url.port != 0
        except ValueError:  # an unclosed IPv6 bracket or a port that is not a number
            url, valid = urllib.parse.urlsplit(""), False
        if self.rocketchat_url and not valid:
            found.append("ROCKETCHAT_URL must be an http:// or https:// URL of the server, without a query")
        if self.rocketchat_ca_file and url.scheme != "https":
            found.append("ROCKETCHAT_CA_FILE set but ROCKETCHAT_URL does not use TLS (https://)")
        elif self.rocketchat_ca_file and not _readable(self.rocketchat_ca_file):
            found.append(f"ROCKETCHAT_CA_FILE={self.rocketchat_ca_file!r} is not a readable file")
        if not 0 < self.rocketchat_timeout_s <= 60:
            found.append("ROCKETCHAT_TIMEOUT must be positive and at most 60s")
        if not 0 <= self.rocketchat_auth_ttl_s <= 86400:
            found.append("ROCKETCHAT_AUTH_TTL must be between 0 and 1d")
        return found

    def _redis_cluster_problems(self) -> list[str]:
        """A Redis Cluster is reached over TCP and has one database only (number 0); redis-py's asyncio cluster
        client (the API's) cannot open an encrypted client key."""
        if not self.redis_cluster:
            return []
        if self.redis_url.startswith("unix://"):
            return ["REDIS_CLUSTER needs a redis:// or rediss:// REDIS_URL naming a seed node, not a unix socket"]
        found: list[str] = []
        database = urllib.parse.urlsplit(self.redis_url).path.strip("/")
        if database not in ("", "0"):
            found.append(f"REDIS_URL names database {database}, but a Redis Cluster has database 0 only")
        if self.redis_ssl_key_password:
            found.append(
                "REDIS_SSL_KEY_PASSWORD is not supported with REDIS_CLUSTER (redis-py's asyncio cluster client "
                "takes no key password): give REDIS_SSL_KEY_FILE an unencrypted key"
            )
        return found


def variable_name(field_name: str) -> str:
    """The environment variable of a settings field: upper case, without the ``_s`` of durations."""
    return field_name.upper().removesuffix("_S") if field_name.endswith("_s") else field_name.upper()


def retired_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The retired variables set in ``env`` (not empty), with why each is ignored."""
    return {name: why for name, why in RETIRED_VARIABLES.items() if env.get(name)}


def variable_names() -> set[str]:
    """Every environment variable the settings read, ``*_FILE`` forms of the secrets included."""
    names = set()
    for f in fields(Settings):
        names.add(variable_name(f.name))
        if f.type in (Secret, "Secret"):
            names.add(variable_name(f.name) + "_FILE")
    return names


def _tls_file_problems(files: Mapping[str, str], cert: str, key: str) -> list[str]:
    found = [f"{name}={path!r} is not a readable file" for name, path in files.items() if path and not _readable(path)]
    if files[key] and not files[cert]:
        found.append(f"{key} needs {cert} (the client certificate the key belongs to)")
    return found


def _readable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)


def redacted_url(url: str) -> str:
    """``url`` without the password it may carry (``redis://user:***@host:port/db``)."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" not in netloc:
        return url
    credentials, _, host = netloc.rpartition("@")
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user + ':' if user else ''}***@{host}{slash}{path}"


def _url_credentials(url: str) -> tuple[bool, bool]:
    """Whether a Redis URL carries a username and a password (``redis://user:password@host``)."""
    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    if "@" not in netloc:
        return False, False
    user, _, password = netloc.rpartition("@")[0].partition(":")
    return bool(user), bool(password)
