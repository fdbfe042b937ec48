"""Turning one polled batch of Kafka records into the user sets to write, dead letters and skip counts.

This is the pure core of the consumer: no I/O, ``now_ms`` is a parameter. A poll becomes :class:`RecordSlice`
lists once, on the member process (:func:`slices_of`); the store worker (and the replay) classify those into a
:class:`Batch` and store it; the member commits only after every effect of the batch is stored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from operator import attrgetter
from typing import Any, Final, NamedTuple, Protocol

from activeusers.days import LocalHours, day_expiry_s
from activeusers.errors import MalformedEvent
from activeusers.events import (
    ACTIVE_TYPES,
    CREATED_TYPE,
    MAX_VALUE_CHARS,
    MalformedReason,
    decode_fields,
    only_anonymous,
)
from activeusers.settings import Settings
from activeusers.usersets import UserSets

# What ``dict.get`` answers for a property an event does not carry (None is a value: JSON null, ignored and counted).
_ABSENT: Final = object()


class SkipReason(StrEnum):
    """Why a valid event is deliberately not stored (a metric label)."""

    UNKNOWN_TYPE = "unknown_type"
    ANONYMOUS = "anonymous"
    TOO_OLD = "too_old"


class ConsumedRecord(Protocol):
    """The fields of a kafka-python ``ConsumerRecord`` that ingestion reads."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class RecordSlice(NamedTuple):
    """One partition's records of a poll as plain lists: the one form a batch takes on its way to the store
    worker (cheap to pickle) and the input of :meth:`Classifier.classify`."""

    topic: str
    partition: int
    offsets: Sequence[int]
    keys: list[bytes | None]
    values: list[bytes | None]


def slices_of(polled: Mapping[Any, Sequence[ConsumedRecord]]) -> list[RecordSlice]:
    """The records of a poll (``{TopicPartition: [records]}``) per non-empty partition."""
    # This runs on the member process, whose core kafka-python's fetching already fills: C-level getters, and
    # a range instead of a list of offsets when they are consecutive (the usual case: no compaction, no
    # transaction markers), keep the hand-off cheap to build and to pickle.
    slices = []
    for records in polled.values():
        if not records:
            continue
        first, last = records[0].offset, records[-1].offset
        offsets: Sequence[int] = (
            range(first, last + 1) if last - first + 1 == len(records) else list(map(_offset, records))
        )
        slices.append(
            RecordSlice(
                records[0].topic, records[0].partition, offsets, list(map(_key, records)), list(map(_value, records))
            )
        )
    return slices


_offset = attrgetter("offset")
_key = attrgetter("key")
_value = attrgetter("value")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot be ingested: where it was read, its bytes, and the reason it is set aside."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str


@dataclass(slots=True)
class Batch:
    """What classifying one poll yields: the user sets to write, the dead letters and the skip counts."""

    user_sets: UserSets = field(default_factory=UserSets)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    stored_events: int = 0
    records: int = 0
    # Indexed properties' values that were not strings of 1..64 characters (ignored; their events still count).
    ignored_values: int = 0


class Classifier:
    """Decodes and validates records and sorts them into user sets with the settings' zone, retention and limits.

    An event older than ``RETENTION_DAYS`` (the index's retention, the longest) is ``too_old``; one that is only
    past ``HOUR_RETENTION_DAYS`` is stored, and the writer leaves its hour bitmap out (expired keys are not
    written)."""

    def __init__(self, settings: Settings) -> None:
        self._hours = LocalHours(settings.zone)
        self._zone = settings.zone
        self._max_bytes = settings.max_event_bytes
        self._skew_ms = int(settings.max_future_skew_s * 1000)
        self._retention_days = settings.retention("days")
        self._expiry_ms: dict[date, int] = {}
        self._indexed = settings.indexed_properties

    def classify(self, slices: Sequence[RecordSlice], now_ms: int) -> Batch:
        """Sort every record of a poll (see :func:`slices_of`) into the batch's writes, dead letters and skips."""
        batch = Batch()
        # The batch's day and hour sets per local (day, hour), empty for a day past retention: now_ms
        # is the batch's, so one lookup per event answers both.
        targets: dict[tuple[date, int], tuple[set[str], ...]] = {}
        for part in slices:
            self._classify_slice(part, now_ms, batch, targets)
            batch.records += len(part.values)
        return batch

    def _classify_slice(
        self, part: RecordSlice, now_ms: int, batch: Batch, targets: dict[tuple[date, int], tuple[set[str], ...]]
    ) -> None:
        # The per-record hot path of the consumer: locals instead of attribute lookups, no per-event objects.
        sets = batch.user_sets
        days, hours, created = sets.days, sets.hours, sets.created
        hour_of = self._hours.hour_of
        expired = self._expired
        max_bytes = self._max_bytes
        latest_ms = now_ms + self._skew_ms
        skipped = batch.skipped
        dead = batch.dead_letters.append
        topic, partition, offsets, keys = part.topic, part.partition, part.offsets, part.keys
        newest_ms, stored, ignored = sets.newest_event_ms, 0, 0
        indexed, segments = self._indexed, sets.segments
        for position, value in enumerate(part.values):
            try:
                kind, user_id, ts_ms, roles, properties = decode_fields(value, max_bytes)
            except MalformedEvent as exc:
                dead(DeadLetter(topic, partition, offsets[position], keys[position], value, exc.reason, exc.detail))
                continue
            if ts_ms > latest_ms:
                dead(_ahead(part, position, (ts_ms - now_ms) // 1000))
                continue
            if kind not in ACTIVE_TYPES and kind != CREATED_TYPE:
                skipped[SkipReason.UNKNOWN_TYPE] += 1
                continue
            if roles and only_anonymous(roles):
                skipped[SkipReason.ANONYMOUS] += 1
                continue
            day_hour = hour_of(ts_ms)
            if kind == CREATED_TYPE:
                if expired(day_hour[0], now_ms):
                    skipped[SkipReason.TOO_OLD] += 1
                    continue
                created[day_hour[0]].add(user_id)
            else:
                target = targets.get(day_hour)
                if target is None:
                    target = targets[day_hour] = (
                        () if expired(day_hour[0], now_ms) else (days[day_hour[0]], hours[day_hour])
                    )
                if not target:
                    skipped[SkipReason.TOO_OLD] += 1
                    continue
                target[0].add(user_id)
                target[1].add(user_id)
                if properties:  # inlined: a call per event would cost a tenth of the rest
                    for name in indexed:
                        found = properties.get(name, _ABSENT)
                        if type(found) is str and 0 < len(found) <= MAX_VALUE_CHARS:
                            segments[(day_hour[0], name, found)].add(user_id)
                        elif found is not _ABSENT:
                            ignored += 1
            if ts_ms > newest_ms:
                newest_ms = ts_ms
            stored += 1
        sets.newest_event_ms = newest_ms
        batch.stored_events += stored
        batch.ignored_values += ignored

    def _expired(self, day: date, now_ms: int) -> bool:
        expiry_ms = self._expiry_ms.get(day)
        if expiry_ms is None:
            if len(self._expiry_ms) > 10_000:
                self._expiry_ms.clear()
            expiry_ms = day_expiry_s(day, self._zone, self._retention_days) * 1000
            self._expiry_ms[day] = expiry_ms
        return expiry_ms <= now_ms


def _ahead(part: RecordSlice, position: int, seconds: int) -> DeadLetter:
    """The dead letter of the record at ``position`` of ``part``, ``seconds`` ahead of the consumer's clock."""
    detail = f"ts is {seconds} s ahead of the clock"
    value = part.values[position]
    return DeadLetter(
        part.topic,
        part.partition,
        part.offsets[position],
        part.keys[position],
        value,
        MalformedReason.FUTURE_TS,
        detail,
    )
