"""The service's settings: one frozen dataclass, read from the environment once per entry point."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from activeusers.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
# read_committed skips the records of aborted transactions and waits for open ones; read_uncommitted reads all.
ISOLATION_LEVELS = ("read_committed", "read_uncommitted")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with the defaults documented in the README's configuration table."""

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic: str = "user-activity"
    kafka_dlq_topic: str = "user-activity.dlq"
    kafka_group_id: str = "active-users"
    kafka_session_timeout_s: float = 45.0
    kafka_isolation_level: str = "read_committed"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = "au:"
    redis_timeout_s: float = 2.0
    activity_timezone: str = "UTC"
    retention_days: int = 400
    hour_retention_days: int = 90
    max_future_skew_s: float = 300.0
    max_event_bytes: int = 16384
    batch_size: int = 5000
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
    log_level: str = "INFO"

    @property
    def zone(self) -> ZoneInfo:
        """The configured activity time zone (validated when the settings were built)."""
        return ZoneInfo(self.activity_timezone)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raise :class:`ConfigError` naming every bad variable."""
        values: dict[str, object] = {}
        problems: list[str] = []
        for f in fields(cls):
            name = f.name.upper()
            if name.endswith("_S"):
                name = name[:-2]
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = _parse(f.name, f.type, raw)
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
            (self.max_future_skew_s >= 0, "MAX_FUTURE_SKEW must not be negative"),
            (self.max_event_bytes >= 64, "MAX_EVENT_BYTES must be at least 64"),
            (1 <= self.batch_size <= 100_000, "BATCH_SIZE must be between 1 and 100000"),
            (self.redis_timeout_s > 0, "REDIS_TIMEOUT must be positive"),
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
        return found


def parse_duration(raw: str) -> float:
    """Parse ``300``, ``300s``, ``5m``, ``1.5h``, ``2d`` or ``250ms`` into seconds."""
    match = _DURATION.match(raw)
    if match is None:
        raise ValueError("expected a duration such as 300, 30s, 5m, 1h or 250ms")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _parse(field_name: str, annotation: object, raw: str) -> object:
    if field_name.endswith("_s"):
        return parse_duration(raw)
    if annotation in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ValueError("expected a whole number") from None
    if annotation in (float, "float"):
        try:
            return float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
    return raw.strip()
