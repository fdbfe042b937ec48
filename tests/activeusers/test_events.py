"""The event contract: :func:`activeusers.events.decode_fields`, timestamps and the wire form."""

from __future__ import annotations

import calendar
import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activeusers.errors import ActiveUsersError, MalformedEvent
from activeusers.events import (
    ACTIVE_TYPES,
    CREATED_TYPE,
    MAX_USER_ID_CHARS,
    MalformedReason,
    decode_fields,
    only_anonymous,
    parse_ts,
)
from activeusers.isotime import format_iso

LIMIT = 16_384
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
TS = "2024-03-10T12:34:56.789Z"
TS_MS = 1_710_074_096_789


def body(**fields: object) -> bytes:
    base: dict[str, object] = {"type": "login", "userId": "u1", "ts": TS}
    for key, value in fields.items():
        if value is _DROP:
            base.pop(key, None)
        else:
            base[key] = value
    return orjson.dumps(base)


_DROP = object()


def reason_of(value: bytes | None, max_bytes: int = LIMIT) -> str:
    with pytest.raises(MalformedEvent) as caught:
        decode_fields(value, max_bytes)
    assert isinstance(caught.value, ActiveUsersError)
    assert str(caught.value).startswith(caught.value.reason + ": ")
    assert caught.value.detail
    return caught.value.reason


# ------------------------------------------------------------------------------------------------ valid records


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2024-03-10T12:34:56.789Z", TS_MS),
        ("2024-03-10T12:34:56Z", TS_MS - 789),
        ("2024-03-10T14:34:56.789+02:00", TS_MS),
        ("2024-03-10T14:34:56+02:00", TS_MS - 789),
        ("2024-03-10T07:04:56.789-05:30", TS_MS),
        ("2024-03-10T12:34:56.789+00:00", TS_MS),
        ("2024-03-10t12:34:56.789Z", TS_MS),
        (" 2024-03-10T12:34:56.789Z ", TS_MS),
        ("2024-03-10T12:34:56.789923Z", TS_MS),  # digits past the millisecond are cut off
        (TS_MS, TS_MS),
        (0, 0),
        (MAX_MS, MAX_MS),
        ("1970-01-01T00:00:00.000Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("9999-12-31T23:59:59.999Z", MAX_MS),
        ("2024-02-29T23:59:59.999Z", 1_709_251_199_999),
        ("2000-02-29T00:00:00Z", 951_782_400_000),
    ],
)
def test_decode_accepts_every_ts_form(ts: object, expected: int) -> None:
    assert decode_fields(body(ts=ts), LIMIT) == ("login", "u1", expected, None, None)


def test_decode_keeps_type_user_and_roles() -> None:
    raw = orjson.dumps({"type": "activity", "userId": "alice", "ts": TS, "roles": ["user", "admin"], "extra": 1})
    assert decode_fields(raw, LIMIT) == ("activity", "alice", TS_MS, ["user", "admin"], None)


@pytest.mark.parametrize(
    "properties",
    [{}, {"platform": "ios"}, {"platform": 7, "country": "DE"}, {"platform": None}, {"platform": "x" * 65}],
)
def test_decode_keeps_a_properties_object_whatever_its_values(properties: dict[str, object]) -> None:
    # The values are judged by the classifier (an invalid one is ignored, its event still counts).
    assert decode_fields(body(properties=properties), LIMIT)[4] == properties


def test_null_properties_are_no_properties() -> None:
    assert decode_fields(body(properties=None), LIMIT)[4] is None


@pytest.mark.parametrize(
    ("roles", "expected"), [(None, None), ([], []), (["anonymous"], ["anonymous"]), (["a", "a"], ["a", "a"])]
)
def test_decode_roles(roles: object, expected: list[str] | None) -> None:
    assert decode_fields(body(roles=roles), LIMIT)[3] == expected


def test_decode_accepts_any_non_empty_type_and_a_max_length_user_id() -> None:
    user = "é" * MAX_USER_ID_CHARS  # characters, not bytes, are counted
    kind, user_id, _, _, _ = decode_fields(body(type="user.created", userId=user), LIMIT)
    assert kind == CREATED_TYPE
    assert user_id == user
    assert decode_fields(body(type="something-else"), LIMIT)[0] == "something-else"


def test_decode_accepts_exactly_max_bytes() -> None:
    raw = body()
    assert decode_fields(raw, len(raw))[1] == "u1"
    assert reason_of(raw, len(raw) - 1) == "oversized"


def test_decode_accepts_bytes_like_values() -> None:
    assert decode_fields(bytearray(body()), LIMIT)[2] == TS_MS  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- malformed records

MALFORMED_CASES: list[tuple[str, bytes | None]] = [
    ("empty", None),
    ("empty", b""),
    ("oversized", body(userId="x" * 100) + b" " * LIMIT),
    ("not_json", b"\xff\xfe{}"),
    ("not_json", b'{"type": "login", "userId": "\xc3\x28", "ts": 0}'),  # invalid UTF-8 inside a string
    ("not_json", b"{not json"),
    ("not_json", b'{"type": "login"'),
    ("not_json", b"NaN"),
    ("not_json", b'{"userId": "\\ud800"}'),  # lone surrogate escape
    ("not_json", b" "),
    ("not_object", b"[]"),
    ("not_object", b'[{"type": "login", "userId": "u1", "ts": 0}]'),
    ("not_object", b"42"),
    ("not_object", b'"login"'),
    ("not_object", b"null"),
    ("not_object", b"true"),
    ("missing_type", body(type=_DROP)),
    ("missing_type", body(type=None)),
    ("invalid_type", body(type="")),
    ("invalid_type", body(type=1)),
    ("invalid_type", body(type=["login"])),
    ("invalid_type", body(type=True)),
    ("missing_user_id", body(userId=_DROP)),
    ("missing_user_id", body(userId=None)),
    ("invalid_user_id", body(userId="")),
    ("invalid_user_id", body(userId="x" * (MAX_USER_ID_CHARS + 1))),
    ("invalid_user_id", body(userId=42)),
    ("invalid_user_id", body(userId=["u1"])),
    ("invalid_user_id", body(userId={"id": "u1"})),
    ("invalid_user_id", body(userId=False)),
    ("missing_ts", body(ts=_DROP)),
    ("invalid_ts", body(ts=None)),
    ("invalid_ts", body(ts=1_710_074_096_789.0)),
    ("invalid_ts", body(ts=1.5)),
    ("invalid_ts", body(ts=True)),
    ("invalid_ts", body(ts=False)),
    ("invalid_ts", body(ts=-1)),
    ("invalid_ts", body(ts=MAX_MS + 1)),
    ("invalid_ts", b'{"type": "login", "userId": "u1", "ts": 100000000000000000000000000000}'),
    ("invalid_ts", body(ts="2024-03-10T12:34:56")),  # naive
    ("invalid_ts", body(ts="2024-03-10T12:34:56.789")),  # naive with millis
    ("invalid_ts", body(ts="2024-03-10")),  # date only
    ("invalid_ts", body(ts="2024-03-10Z")),
    ("invalid_ts", body(ts="1710074096789")),  # digits in a string
    ("invalid_ts", body(ts="2024-03-10 12:34:56Z")),  # no T
    ("invalid_ts", body(ts="not a timestamp at all, no")),
    ("invalid_ts", body(ts="2024-13-10T12:34:56Z")),
    ("invalid_ts", body(ts="2023-02-29T12:00:00Z")),  # not a leap year
    ("invalid_ts", body(ts="1900-02-29T12:00:00Z")),
    ("invalid_ts", body(ts="1969-12-31T23:59:59.999Z")),  # before 1970
    ("invalid_ts", body(ts="1970-01-01T00:59:59.999+01:00")),  # before 1970 in UTC
    ("invalid_ts", body(ts="10000-01-01T00:00:00Z")),
    ("invalid_ts", body(ts="2024-03-10T12:34:56.789Z" + " " * 30 + "x")),
    ("invalid_ts", body(ts=[TS])),
    ("invalid_ts", body(ts={"iso": TS})),
    ("invalid_roles", body(roles="admin")),
    ("invalid_roles", body(roles={"admin": True})),
    ("invalid_roles", body(roles=1)),
    ("invalid_roles", body(roles=["user", 1])),
    ("invalid_roles", body(roles=["user", None])),
    ("invalid_roles", body(roles=[["user"]])),
    ("invalid_properties", body(properties="ios")),
    ("invalid_properties", body(properties=["platform", "ios"])),
    ("invalid_properties", body(properties=1)),
    ("invalid_properties", body(properties=True)),
]


@pytest.mark.parametrize(("reason", "value"), MALFORMED_CASES)
def test_decode_reports_the_reason(reason: str, value: bytes | None) -> None:
    assert reason in set(MalformedReason)
    assert reason_of(value) == reason


def test_every_decode_reason_is_covered() -> None:
    # future_ts is applied by the consumer against its clock, not by decode
    assert {reason for reason, _ in MALFORMED_CASES} == set(MalformedReason) - {"future_ts"}
    assert len({reason.value for reason in MalformedReason}) == len(MalformedReason.__members__)


def test_checks_run_in_contract_order() -> None:
    # the first problem wins, so the reason is stable whatever else is wrong
    assert reason_of(b"x" * 100, 64) == "oversized"
    assert reason_of(orjson.dumps({"userId": 1, "ts": 1.5})) == "missing_type"
    assert reason_of(orjson.dumps({"type": "login", "ts": 1.5, "roles": 1})) == "missing_user_id"
    assert reason_of(orjson.dumps({"type": "login", "userId": "u", "roles": 1})) == "missing_ts"
    assert reason_of(orjson.dumps({"type": "login", "userId": "u", "ts": 1.5, "roles": 1})) == "invalid_ts"


def test_oversize_detail_names_both_sizes() -> None:
    with pytest.raises(MalformedEvent) as caught:
        decode_fields(b"{" + b" " * 99 + b"}", 64)
    assert caught.value.detail == "value is 101 bytes, the limit is 64"


@pytest.mark.parametrize("value", [True, 1.0, None, "2024", [], {}])
def test_parse_ts_rejects_non_instants(value: object) -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse_ts(value)
    assert caught.value.reason == "invalid_ts"


# ------------------------------------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    ("roles", "anonymous"),
    [
        (("anonymous",), True),
        (("anonymous", "anonymous"), True),
        (("anonymous", "user"), False),
        (("user", "anonymous"), False),
        (("user",), False),
        (("Anonymous",), False),
        ((), False),
        (None, False),
    ],
)
def test_only_anonymous(roles: tuple[str, ...] | None, anonymous: bool) -> None:
    assert only_anonymous(roles) is anonymous


@pytest.mark.parametrize(
    ("kind", "active"),
    [("login", True), ("activity", True), ("logout", True), ("user.created", False), ("Login", False), ("x", False)],
)
def test_active_types(kind: str, active: bool) -> None:
    assert (kind in ACTIVE_TYPES) is active


# ----------------------------------------------------------------------------------------------- wire form


Fields = tuple[str, str, int, list[str] | None]


def wire(fields: Fields) -> bytes:
    """The contract's wire form of decoded fields, as a producer writes it (``ts`` in JavaScript's ISO form)."""
    kind, user_id, ts_ms, roles = fields
    value: dict[str, object] = {"type": kind, "userId": user_id, "ts": format_iso(ts_ms)}
    if roles is not None:
        value["roles"] = roles
    return orjson.dumps(value)


@pytest.mark.parametrize(
    "fields",
    [
        ("login", "u1", TS_MS, None),
        ("logout", "ü" * MAX_USER_ID_CHARS, 0, []),
        ("user.created", "u:1\n", MAX_MS, ["anonymous"]),
        ("activity", '"quoted"\\', 1, ["a", "b", "a"]),
    ],
)
def test_the_wire_form_round_trips(fields: Fields) -> None:
    assert decode_fields(wire(fields), LIMIT) == (*fields, None)


events = st.tuples(
    st.text(min_size=1, max_size=20),
    st.text(min_size=1, max_size=MAX_USER_ID_CHARS),
    st.integers(0, MAX_MS),
    st.none() | st.lists(st.text(max_size=10), max_size=5),
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_any_valid_event_round_trips(fields: Fields) -> None:
    value = wire(fields)
    assert decode_fields(value, len(value)) == (*fields, None)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_decode_raises_only_malformed_event(raw: bytes) -> None:
    try:
        fields = decode_fields(raw, 150)
    except MalformedEvent as exc:
        assert exc.reason in set(MalformedReason)
        assert exc.reason != "future_ts"
    else:
        assert [type(field) for field in fields[:3]] == [str, str, int]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-05T13:22:11.123Z", 1_793_884_931_123),
        ("2026-11-05t13:22:11.123Z", 1_793_884_931_123),
        ("2026-11-05T13:22:11,123Z", 1_793_884_931_123),  # ISO 8601's other decimal sign
        ("2026-11-05T13:22:11.1239Z", 1_793_884_931_123),  # cut off, not rounded up
        ("2026-11-05T23:59:59.999999Z", 1_793_923_199_999),  # stays in its day
        ("9999-12-31T23:59:59.999999Z", MAX_MS),
        ("2024-02-29T23:59:59.999Z", 1_709_251_199_999),
        ("1970-01-01T00:00:00.000Z", 0),
        ("9999-12-31T23:59:59.999Z", MAX_MS),
        ("2023-02-29T10:00:00.000Z", None),
        ("2026-11-05T24:00:00.000Z", None),
        ("2026-11-05T13:60:00.000Z", None),
        ("2026-11-05T13:22:60.000Z", None),
        ("2026-11-05T13:22:1a.123Z", None),
        ("2026-11-05T13:22:+1.123Z", None),
        ("2026-11-05T13:22:11.+23Z", None),
        ("2026-11-05T13:22:1 .123Z", None),
        ("2026-1\uff11-05T13:22:11.123Z", None),
        ("1969-12-31T23:59:59.999Z", None),
        ("9999-12-31T23:59:59.999-00:01", None),
        ("2026-11-05T13:22:11.123z", None),
        ("2026-11-05T13:22:\uff11\uff11.123Z", None),
        ("2026-11-05T13:22:11.12\uff13Z", None),
        ("2026-11-05T13:22;11.123Z", None),
        ("2026-11-05T13:22:11.123+", None),
    ],
)
def test_parse_ts_reads_the_to_iso_string_form_and_refuses_its_near_misses(value: str, expected: int | None) -> None:
    """The 24-character ``toISOString`` form producers send, its variants ISO 8601 allows, and near misses
    (impossible dates and times, non-ASCII digits, signs, spaces, other separators, instants out of range)."""
    if expected is None:
        with pytest.raises(MalformedEvent) as caught:
            parse_ts(value)
        assert caught.value.reason == "invalid_ts"
    else:
        assert parse_ts(value) == expected
        assert expected == calendar.timegm(
            time.strptime(value[:19].replace("t", "T"), "%Y-%m-%dT%H:%M:%S")
        ) * 1000 + int(value[20:23])
