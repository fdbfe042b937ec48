"""Query validation with Rocket.Chat's rules and messages, and the day range a request covers.

A date is valid exactly when JavaScript's ``new Date(value).toISOString() === value`` (parsed by
:mod:`activeusers.isotime`). Errors follow Meteor's ``check``: present parameters in the
order they appear in the query string, first failure wins, then missing required ones in declaration order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Final
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from activeusers.days import day_of, representable
from activeusers.isotime import parse_iso
from api.errors import ValidationError


def is_iso_instant(value: str) -> bool:
    """Whether the value survives JavaScript's ``toISOString`` round trip unchanged."""
    return parse_iso(value) is not None


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
    return day_of(representable(epoch_ms), zone)


def iso_ms(value: str) -> int:
    """Epoch milliseconds of a valid date parameter; ``ValueError`` for anything :func:`is_iso_instant` refuses."""
    parsed = parse_iso(value)
    if parsed is None:
        raise ValueError(f"not a toISOString instant: {value[:40]!r}")
    return parsed


@lru_cache(maxsize=4096)
def day_range(start: str, end: str, zone: ZoneInfo) -> tuple[date, date]:
    """The local days of valid ``start`` and ``end`` parameters: the range both of whose end days count whole."""
    return local_day(iso_ms(start), zone), local_day(iso_ms(end), zone)
