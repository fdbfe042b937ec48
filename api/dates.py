"""Query validation with Rocket.Chat's rules and messages, and the day range a request covers.

A date is valid exactly when JavaScript's ``new Date(value).toISOString() === value``: the form
``YYYY-MM-DDTHH:mm:ss.sssZ`` with a real proleptic-Gregorian date (year 0000 included, which Python's ``date``
cannot hold, hence the own calendar arithmetic). Errors follow Meteor's ``check``: present parameters in the
order they appear in the query string, first failure wins, then missing required ones in declaration order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Final
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from activeusers.days import day_of
from api.errors import ValidationError

_ISO: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{3})Z")
_MS_PER_DAY: Final = 86_400_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Instants outside Python's date range (year 0000, or 9999-12-31 in zones east of UTC) are clamped just inside
# it before they become days; such days are far outside any retention window, so the clamp changes no answer.
_MIN_DAY_MS: Final = -62_135_510_400_000  # 0001-01-02T00:00:00.000Z
_MAX_DAY_MS: Final = 253_402_041_600_000  # 9999-12-29T00:00:00.000Z


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if _leap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic-Gregorian date (Howard Hinnant's algorithm, valid for year 0)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def parse_iso_ms(value: str) -> int | None:
    """Epoch milliseconds of a ``toISOString``-form instant, or ``None`` when the value is not exactly one."""
    match = _ISO.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, millis = map(int, match.groups())
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    seconds = ((_days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60 + second
    return seconds * 1000 + millis


def is_iso_instant(value: str) -> bool:
    """Whether the value survives JavaScript's ``toISOString`` round trip unchanged."""
    return parse_iso_ms(value) is not None


@dataclass(frozen=True, slots=True)
class Param:
    """One query parameter an endpoint checks: its name, whether it is required, and what values are valid."""

    name: str
    required: bool
    valid: Callable[[str], bool]


DATE_PARAMS: Final = (Param("start", True, is_iso_instant), Param("end", True, is_iso_instant))
# chat-busier's endpoints take only ``start``; an ``end`` there is an unknown parameter, ignored.
START_PARAMS: Final = DATE_PARAMS[:1]


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of a raw query string, in order, decoded like Rocket.Chat's parser does.

    Blank values are kept (``start=`` is present and invalid); malformed percent escapes stay literal and bytes
    that are not UTF-8 become U+FFFD, so no query string can make decoding fail.
    """
    return parse_qsl(raw_query, keep_blank_values=True, errors="replace")


def validate_query(pairs: Sequence[tuple[str, str]], params: Sequence[Param]) -> dict[str, str]:
    """The value of every declared parameter present, or :class:`ValidationError` for the first problem.

    Undeclared parameters are ignored; a declared one given twice is invalid (Rocket.Chat sees an array).
    """
    declared = {p.name: p for p in params}
    seen: dict[str, list[str]] = {}
    for name, value in pairs:
        if name in declared:
            seen.setdefault(name, []).append(value)
    for name, values in seen.items():
        if len(values) != 1 or not declared[name].valid(values[0]):
            raise ValidationError(name, missing=False)
    for param in params:
        if param.required and param.name not in seen:
            raise ValidationError(param.name, missing=True)
    return {name: values[0] for name, values in seen.items()}


# Query strings a process remembers the validation of (and the longest one it remembers: dashboards and scripts
# send the same few again and again; an odd long one is simply validated each time).
VALIDATED_QUERIES: Final = 4096
VALIDATED_CHARS: Final = 256
_VALIDATED: dict[tuple[str, Sequence[Param]], dict[str, str] | tuple[str, bool]] = {}


def validated(raw_query: str, params: Sequence[Param]) -> dict[str, str]:
    """``validate_query(query_pairs(raw_query), params)``, remembered per query string (a pure function of it):
    the parameters, or the same :class:`ValidationError`."""
    key = (raw_query, params)
    found = _VALIDATED.get(key)
    if found is None:
        try:
            found = validate_query(query_pairs(raw_query), params)
        except ValidationError as exc:
            found = (exc.field, exc.missing)
        if len(raw_query) <= VALIDATED_CHARS:
            if len(_VALIDATED) >= VALIDATED_QUERIES:
                _VALIDATED.clear()
            _VALIDATED[key] = found
    if isinstance(found, tuple):
        raise ValidationError(found[0], missing=found[1])
    return dict(found)


def local_day(epoch_ms: int, zone: ZoneInfo) -> date:
    """The local calendar day of an instant, for any instant a valid date parameter can name."""
    return day_of(min(max(epoch_ms, _MIN_DAY_MS), _MAX_DAY_MS), zone)


def iso_ms(value: str) -> int:
    """Epoch milliseconds of a valid date parameter; ``ValueError`` for anything :func:`is_iso_instant` refuses."""
    parsed = parse_iso_ms(value)
    if parsed is None:
        raise ValueError(f"not a toISOString instant: {value[:40]!r}")
    return parsed


def iso_string(epoch_ms: int) -> str:
    """The instant as JavaScript's ``toISOString`` writes it (years 1-9999: every day this service can store)."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}Z"


@lru_cache(maxsize=4096)
def day_range(start: str, end: str, zone: ZoneInfo) -> tuple[date, date]:
    """The local days of valid ``start`` and ``end`` parameters: the range both of whose end days count whole."""
    return local_day(iso_ms(start), zone), local_day(iso_ms(end), zone)
