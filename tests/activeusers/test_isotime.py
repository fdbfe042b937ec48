"""The ``toISOString`` form (:mod:`activeusers.isotime`): written as JavaScript writes it, and parsed exactly when
JavaScript's round trip keeps it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activeusers.events import parse_ts
from activeusers.isotime import format_iso, parse_iso

MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
TS_MS = 1_710_074_096_789


@pytest.mark.parametrize(
    ("epoch_ms", "iso"),
    [
        # what JavaScript's new Date(ms).toISOString() returns
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (999, "1970-01-01T00:00:00.999Z"),
        (1000, "1970-01-01T00:00:01.000Z"),
        (1_234_567_890_123, "2009-02-13T23:31:30.123Z"),
        (TS_MS, "2024-03-10T12:34:56.789Z"),
        (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
        (1_709_251_200_000, "2024-03-01T00:00:00.000Z"),
        (951_782_400_050, "2000-02-29T00:00:00.050Z"),
        (MAX_MS, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_format_iso_writes_what_javascript_writes(epoch_ms: int, iso: str) -> None:
    assert format_iso(epoch_ms) == iso
    assert parse_ts(iso) == epoch_ms


@settings(max_examples=200, deadline=None)
@given(st.integers(0, MAX_MS))
def test_format_iso_matches_datetime(epoch_ms: int) -> None:
    text = format_iso(epoch_ms)
    assert len(text) == 24
    expected = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC).replace(microsecond=epoch_ms % 1000 * 1000)
    assert text == expected.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def test_epoch_values():
    assert parse_iso("1970-01-01T00:00:00.000Z") == 0
    assert parse_iso("0000-01-01T00:00:00.000Z") == -62_167_219_200_000  # JS: Date.parse("0000-01-01T...")
    assert parse_iso("9999-12-31T23:59:59.999Z") == 253_402_300_799_999
    assert parse_iso("2026-03-15T12:00:00.123Z") == 1_773_576_000_123


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
    assert parse_iso(value) == reference_ms(value)
