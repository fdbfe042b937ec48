"""The event contract producers follow, and the decoder that turns Kafka record values into event fields.

A record value is a UTF-8 JSON object ``{"type": ..., "userId": ..., "ts": ..., "roles": [...], "properties":
{...}}``; see docs/events.md. Decoding never raises anything but :class:`MalformedEvent`, whose ``reason`` is a
stable code used for dead-letter headers and metric labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

import orjson

from activeusers.errors import MalformedEvent
from activeusers.isotime import EPOCH

ACTIVE_TYPES: Final = frozenset({"login", "activity", "logout"})
CREATED_TYPE: Final = "user.created"
MAX_USER_ID_CHARS: Final = 128
# An indexed property's value: a string of 1 to 64 characters, compared exactly.
MAX_VALUE_CHARS: Final = 64
# The value every value past SEGMENT_MAX_VALUES of a property counts as.
OTHER_VALUE: Final = "(other)"
# Accepted instants: 1970-01-01 .. 9999-12-31, the range JavaScript's toISOString and Redis day keys can express.
_MIN_MS: Final = 0
_MAX_MS: Final = 253_402_300_799_999


class MalformedReason(StrEnum):
    """Why a record is not an event: a stable code, used as a dead-letter header and a metric label."""

    EMPTY = "empty"
    OVERSIZED = "oversized"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_TYPE = "missing_type"
    INVALID_TYPE = "invalid_type"
    MISSING_USER_ID = "missing_user_id"
    INVALID_USER_ID = "invalid_user_id"
    MISSING_TS = "missing_ts"
    INVALID_TS = "invalid_ts"
    INVALID_ROLES = "invalid_roles"
    INVALID_PROPERTIES = "invalid_properties"
    # Decoding never says this one: the consumer does, against its clock.
    FUTURE_TS = "future_ts"


def only_anonymous(roles: Sequence[str] | None) -> bool:
    """Whether a user with these roles is anonymous only (not counted, as in Rocket.Chat); no roles: False."""
    if not roles:
        return False
    return all(r == "anonymous" for r in roles)


_MISSING: Final = object()
_fromisoformat = datetime.fromisoformat
_ONE_MS: Final = timedelta(milliseconds=1)


def parse_ts(value: object) -> int:
    """Epoch milliseconds from an ISO-8601 string with ``Z`` or an offset, or from integer epoch milliseconds.

    Digits past the millisecond are cut off (as JavaScript's ``Date`` does), never rounded up: an event at
    ``23:59:59.9999`` belongs to the day it happened on.
    """
    if type(value) is str:
        # One C call and exact integer arithmetic: a backfill's timestamps differ in every minute and millisecond,
        # so memoising parts of them does not pay.
        if not 16 <= len(value) <= 40 or ("T" not in value and "t" not in value):
            raise MalformedEvent(MalformedReason.INVALID_TS, f"ts {value[:40]!r} is not an ISO-8601 date-time")
        try:
            parsed = _fromisoformat(value)
        except ValueError:
            stripped = value.strip()  # tolerated, but kept off the common path
            if stripped != value:
                return parse_ts(stripped)
            raise MalformedEvent(
                MalformedReason.INVALID_TS, f"ts {value[:40]!r} is not an ISO-8601 date-time"
            ) from None
        if parsed.tzinfo is None:
            raise MalformedEvent(MalformedReason.INVALID_TS, f"ts {value[:40]!r} has no Z or UTC offset")
        epoch_ms: int = (parsed - EPOCH) // _ONE_MS
    elif type(value) is int:  # not isinstance: a JSON true/false is a bool, and bools are ints
        epoch_ms = value
    else:
        raise MalformedEvent(MalformedReason.INVALID_TS, "ts must be an ISO-8601 string or integer epoch milliseconds")
    if not _MIN_MS <= epoch_ms <= _MAX_MS:
        raise MalformedEvent(MalformedReason.INVALID_TS, f"ts {epoch_ms} ms is outside 1970-01-01..9999-12-31")
    return epoch_ms


def decode_fields(
    value: bytes | None, max_bytes: int
) -> tuple[str, str, int, list[str] | None, dict[str, object] | None]:
    """Decode one record value into ``(type, user_id, ts_ms, roles, properties)``; raise :class:`MalformedEvent`
    if invalid (``properties`` not an object included; its values are the classifier's to judge).

    This is the consumer's per-record hot path, so it returns a plain tuple.
    """
    if not value:
        raise MalformedEvent(MalformedReason.EMPTY, "record has no value")
    if len(value) > max_bytes:
        raise MalformedEvent(MalformedReason.OVERSIZED, f"value is {len(value)} bytes, the limit is {max_bytes}")
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(MalformedReason.NOT_JSON, f"value is not UTF-8 JSON: {exc}") from None
    if type(body) is not dict:
        raise MalformedEvent(MalformedReason.NOT_OBJECT, f"value is a JSON {type(body).__name__}, not an object")
    kind = body.get("type")
    user_id = body.get("userId")
    if type(kind) is not str or not kind:
        if kind is None:
            raise MalformedEvent(MalformedReason.MISSING_TYPE, "field 'type' is missing")
        raise MalformedEvent(MalformedReason.INVALID_TYPE, "field 'type' must be a non-empty string")
    if type(user_id) is not str or not 0 < len(user_id) <= MAX_USER_ID_CHARS:
        if user_id is None:
            raise MalformedEvent(MalformedReason.MISSING_USER_ID, "field 'userId' is missing")
        raise MalformedEvent(
            MalformedReason.INVALID_USER_ID, f"field 'userId' must be a string of 1..{MAX_USER_ID_CHARS} chars"
        )
    ts = body.get("ts", _MISSING)
    if ts is _MISSING:
        raise MalformedEvent(MalformedReason.MISSING_TS, "field 'ts' is missing")
    ts_ms = parse_ts(ts)
    roles = body.get("roles")
    if roles is not None and (type(roles) is not list or not all(type(r) is str for r in roles)):
        raise MalformedEvent(MalformedReason.INVALID_ROLES, "field 'roles' must be a list of strings")
    properties = body.get("properties")
    if properties is not None and type(properties) is not dict:
        raise MalformedEvent(MalformedReason.INVALID_PROPERTIES, "field 'properties' must be a JSON object")
    return kind, user_id, ts_ms, roles, properties
