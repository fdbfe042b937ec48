"""The event contract producers follow, and the decoder that turns Kafka record values into events.

A record value is a UTF-8 JSON object ``{"type": ..., "userId": ..., "ts": ..., "roles": [...]}``; see the
README's "Event contract". Decoding never raises anything but :class:`MalformedEvent`, whose ``reason`` is a
stable code used for dead-letter headers and metric labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import orjson

from activeusers.errors import MalformedEvent

ACTIVE_TYPES: Final = frozenset({"login", "activity", "logout"})
CREATED_TYPE: Final = "user.created"
MAX_USER_ID_CHARS: Final = 128
# Accepted instants: 1970-01-01 .. 9999-12-31, the range JavaScript's toISOString and Redis day keys can express.
_MIN_MS: Final = 0
_MAX_MS: Final = 253_402_300_799_999

MALFORMED_REASONS: Final = (
    "empty",
    "oversized",
    "not_json",
    "not_object",
    "missing_type",
    "invalid_type",
    "missing_user_id",
    "invalid_user_id",
    "missing_ts",
    "invalid_ts",
    "invalid_roles",
    "future_ts",
)


@dataclass(frozen=True, slots=True)
class Event:
    """One decoded event: what happened, to whom, when (epoch ms), and the user's roles if the producer sent them."""

    type: str
    user_id: str
    ts_ms: int
    roles: tuple[str, ...] | None = None

    @property
    def marks_active(self) -> bool:
        """Whether the event makes its user active on its day and hour."""
        return self.type in ACTIVE_TYPES

    @property
    def anonymous(self) -> bool:
        """Whether the user's only role is ``anonymous`` (such users are not counted, as in Rocket.Chat)."""
        return self.roles is not None and len(self.roles) > 0 and all(r == "anonymous" for r in self.roles)

    def to_json(self) -> bytes:
        """Encode the event in the contract's wire form (``ts`` as ISO-8601 UTC with milliseconds)."""
        body: dict[str, object] = {"type": self.type, "userId": self.user_id, "ts": format_ts(self.ts_ms)}
        if self.roles is not None:
            body["roles"] = list(self.roles)
        return orjson.dumps(body)


def format_ts(epoch_ms: int) -> str:
    """``YYYY-MM-DDTHH:mm:ss.sssZ`` for an instant, exactly as JavaScript's ``toISOString`` writes it."""
    seconds, millis = divmod(epoch_ms, 1000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


def parse_ts(value: object) -> int:
    """Epoch milliseconds from an ISO-8601 string with ``Z`` or an offset, or from integer epoch milliseconds."""
    if isinstance(value, bool):
        raise MalformedEvent("invalid_ts", "ts must be an ISO-8601 string or integer epoch milliseconds")
    if isinstance(value, int):
        epoch_ms = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) < 16 or len(text) > 40 or "T" not in text.upper():
            raise MalformedEvent("invalid_ts", f"ts {value[:40]!r} is not an ISO-8601 date-time")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise MalformedEvent("invalid_ts", f"ts {value[:40]!r} is not an ISO-8601 date-time") from None
        if parsed.tzinfo is None:
            raise MalformedEvent("invalid_ts", f"ts {value[:40]!r} has no Z or UTC offset")
        epoch_ms = round(parsed.timestamp() * 1000)
    else:
        raise MalformedEvent("invalid_ts", "ts must be an ISO-8601 string or integer epoch milliseconds")
    if not _MIN_MS <= epoch_ms <= _MAX_MS:
        raise MalformedEvent("invalid_ts", f"ts {epoch_ms} ms is outside 1970-01-01..9999-12-31")
    return epoch_ms


def decode(value: bytes | None, max_bytes: int) -> Event:
    """Decode one record value into an :class:`Event`, or raise :class:`MalformedEvent` with the reason."""
    if not value:
        raise MalformedEvent("empty", "record has no value")
    if len(value) > max_bytes:
        raise MalformedEvent("oversized", f"value is {len(value)} bytes, the limit is {max_bytes}")
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent("not_json", f"value is not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedEvent("not_object", f"value is a JSON {type(body).__name__}, not an object")
    kind = body.get("type")
    if kind is None:
        raise MalformedEvent("missing_type", "field 'type' is missing")
    if not isinstance(kind, str) or not kind:
        raise MalformedEvent("invalid_type", "field 'type' must be a non-empty string")
    user_id = body.get("userId")
    if user_id is None:
        raise MalformedEvent("missing_user_id", "field 'userId' is missing")
    if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_USER_ID_CHARS:
        raise MalformedEvent("invalid_user_id", f"field 'userId' must be a string of 1..{MAX_USER_ID_CHARS} chars")
    if "ts" not in body:
        raise MalformedEvent("missing_ts", "field 'ts' is missing")
    ts_ms = parse_ts(body["ts"])
    roles = body.get("roles")
    if roles is None:
        return Event(kind, user_id, ts_ms)
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise MalformedEvent("invalid_roles", "field 'roles' must be a list of strings")
    return Event(kind, user_id, ts_ms, tuple(roles))
