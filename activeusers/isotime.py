"""Instants as JavaScript's ``toISOString`` writes them (``YYYY-MM-DDTHH:mm:ss.sssZ``): the one form the API's
date parameters take and the event generator writes, formatted and parsed exactly.

A string is one exactly when JavaScript's ``new Date(value).toISOString() === value``: a real proleptic-Gregorian
date (year 0000 included, which Python's ``date`` cannot hold, hence the own calendar arithmetic).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ISO: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{3})Z")


def format_iso(epoch_ms: int) -> str:
    """The instant as JavaScript's ``toISOString`` writes it (years 1-9999: every day this service can store)."""
    moment = EPOCH + timedelta(milliseconds=epoch_ms)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}Z"


def parse_iso(value: str) -> int | None:
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
