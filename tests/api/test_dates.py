"""The date validator against the contract's examples and a reference of JavaScript's toISOString round trip."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activeusers.isotime import parse_iso
from api.dates import (
    DATE_PARAMS,
    Param,
    day_range,
    is_iso_instant,
    local_day,
    query_pairs,
    validate_query,
    validated,
)
from api.errors import ValidationError


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
    assert (parse_iso(value) is not None) is valid


_VALID = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)).map(
    lambda t: f"{t.year:04d}-{t:%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z"
)


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
    assert local_day(parse_iso("9999-12-31T23:59:59.999Z") or 0, kiritimati).year == 9999
    assert local_day(parse_iso("0000-01-01T00:00:00.000Z") or 0, ZoneInfo("Etc/GMT+12")).year == 1
