"""The date validator against the contract's examples and a reference of JavaScript's toISOString round trip."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.dates import (
    DATE_PARAMS,
    Param,
    day_range,
    is_iso_instant,
    local_day,
    parse_iso_ms,
    query_pairs,
    validate_query,
    validated,
)
from api.errors import ValidationError

# Year 0 shares year 2000's calendar (both start a 400-year Gregorian cycle), which Python's datetime lacks.
_CYCLE_SHIFT_YEARS = 2000
_CYCLE_SHIFT_MS = 730_485 * 86_400_000  # 5 cycles of 146097 days


def reference_ms(value: str) -> int | None:
    """What JavaScript does: parse, then keep the value only if ``toISOString`` writes it back unchanged."""
    shifted = value.startswith("0000")
    text = str(_CYCLE_SHIFT_YEARS) + value[4:] if shifted else value
    try:
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    # glibc's %Y does not zero-pad years below 1000; toISOString always writes four digits.
    written = f"{parsed.year:04d}-{parsed:%m-%dT%H:%M:%S}.{parsed.microsecond // 1000:03d}Z"
    if written != text:
        return None
    epoch_ms = (parsed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    return epoch_ms - _CYCLE_SHIFT_MS if shifted else epoch_ms


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2023-10-05T14:48:00.000Z", True),
        ("0000-01-01T00:00:00.000Z", True),
        ("0000-02-29T00:00:00.000Z", True),  # year 0 is a leap year in the proleptic Gregorian calendar
        ("9999-12-31T23:59:59.999Z", True),
        ("2024-02-29T12:00:00.000Z", True),
        ("2023-10-05T14:48:00Z", False),
        ("2023-10-05T14:48:00.000+00:00", False),
        ("2023-10-05", False),
        ("2023-02-30T00:00:00.000Z", False),
        ("2023-10-05T24:00:00.000Z", False),
        ("", False),
        ("2023-02-29T00:00:00.000Z", False),
        ("1900-02-29T00:00:00.000Z", False),
        ("2000-02-29T00:00:00.000Z", True),
        ("2023-10-05T14:48:00.000z", False),
        ("2023-10-05t14:48:00.000Z", False),
        (" 2023-10-05T14:48:00.000Z", False),
        ("2023-10-05T14:48:00.000Z\n", False),
        ("+002023-10-05T14:48:00.000Z", False),
        ("\u0662\u0660\u0662\u0663-10-05T14:48:00.000Z", False),
    ],
)
def test_contract_examples(value, valid):
    assert is_iso_instant(value) is valid
    assert (parse_iso_ms(value) is not None) is valid


def test_epoch_values():
    assert parse_iso_ms("1970-01-01T00:00:00.000Z") == 0
    assert parse_iso_ms("0000-01-01T00:00:00.000Z") == -62_167_219_200_000  # JS: Date.parse("0000-01-01T...")
    assert parse_iso_ms("9999-12-31T23:59:59.999Z") == 253_402_300_799_999
    assert parse_iso_ms("2026-03-15T12:00:00.123Z") == 1_773_576_000_123


_NEAR_VALID = st.builds(
    lambda y, mo, d, h, mi, s, ms, sep: f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}.{ms:03d}Z",
    st.integers(0, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.integers(0, 999),
    st.sampled_from(["T", "T", "T", "t", " "]),
)
_VALID = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)).map(
    lambda t: f"{t.year:04d}-{t:%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z"
)
_MUTATED = st.tuples(_VALID, st.integers(0, 23), st.text(max_size=2)).map(
    lambda v: v[0][: v[1]] + v[2] + v[0][v[1] + 1 :]
)


@given(st.one_of(_NEAR_VALID, _VALID, _MUTATED, st.text(max_size=30)))
def test_validator_matches_the_javascript_round_trip(value):
    assert parse_iso_ms(value) == reference_ms(value)


@given(_VALID)
def test_every_written_instant_is_valid(value):
    assert is_iso_instant(value)


V = "2026-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("end=bad", ("end", False)),
        (f"end={V}", ("start", True)),
        ("end=bad&start=bad", ("end", False)),
        ("", ("start", True)),
        (f"start={V}", ("end", True)),
        (f"start={V}&start={V}&end={V}", ("start", False)),
        ("start=%ZZ&end=x", ("start", False)),
    ],
)
def test_validate_query_error_order(query, error):
    with pytest.raises(ValidationError) as caught:
        validate_query(query_pairs(query), DATE_PARAMS)
    assert (caught.value.field, caught.value.missing) == error


@pytest.mark.parametrize(
    "query",
    [f"start={V}&end={V}", "end=bad&start=bad", "", f"start={V}&start={V}&end={V}", f"x={'y' * 300}&start={V}"],
)
def test_validated_remembers_exactly_what_validation_gives(query):
    def outcome() -> object:
        try:
            found = validated(query, DATE_PARAMS)
        except ValidationError as exc:
            return (exc.field, exc.missing)
        found["start"] = "changed by a caller"  # a copy: what is remembered stays as it was
        return found

    try:
        fresh: object = validate_query(query_pairs(query), DATE_PARAMS)
        fresh["start"] = "changed by a caller"  # type: ignore[index]
    except ValidationError as exc:
        fresh = (exc.field, exc.missing)
    assert outcome() == outcome() == outcome() == fresh


def test_validate_query_ignores_unknown_and_returns_values():
    pairs = query_pairs(f"x=1&start={V}&y&end={V}&format=csv")
    assert validate_query(pairs, DATE_PARAMS) == {"start": V, "end": V}
    params = (*DATE_PARAMS, Param("format", False, {"csv", "json"}.__contains__))
    assert validate_query(pairs, params)["format"] == "csv"


def test_day_range_truncates_in_the_zone():
    ny = ZoneInfo("America/New_York")
    assert day_range("2026-03-08T04:59:59.999Z", "2026-03-09T04:00:00.000Z", ny) == (date(2026, 3, 7), date(2026, 3, 9))
    assert day_range("2026-01-01T00:00:00.000Z", "2025-12-31T00:00:00.000Z", ZoneInfo("UTC")) == (
        date(2026, 1, 1),
        date(2025, 12, 31),
    )


def test_local_day_clamps_instants_python_cannot_hold():
    kiritimati = ZoneInfo("Pacific/Kiritimati")
    assert local_day(parse_iso_ms("9999-12-31T23:59:59.999Z") or 0, kiritimati).year == 9999
    assert local_day(parse_iso_ms("0000-01-01T00:00:00.000Z") or 0, ZoneInfo("Etc/GMT+12")).year == 1
