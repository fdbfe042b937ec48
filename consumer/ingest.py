"""Turning one polled batch of Kafka records into bucket writes, dead letters and skip counts.

This is the pure core of the consumer: no I/O, ``now_ms`` is a parameter. The loop stores what it returns and
commits ``next_offsets`` only after every effect of the batch is stored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from operator import attrgetter
from typing import Any, NamedTuple, Protocol

from activeusers.days import Bucketer, day_expiry_s
from activeusers.errors import MalformedEvent
from activeusers.events import ACTIVE_TYPES, CREATED_TYPE, decode_fields, only_anonymous
from activeusers.settings import Settings
from activeusers.store import Buckets


class Record(Protocol):
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


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot be ingested, with the reason it is set aside."""

    record: Record
    reason: str
    detail: str


@dataclass(slots=True)
class Outcome:
    """What classifying the record values of one poll yields, before anything is stored.

    Dead letters are ``(partition index, record index, reason, detail)``: positions in the values that were
    classified, so that a process holding only the values can say which records to set aside.
    """

    buckets: Buckets = field(default_factory=Buckets)
    dead: list[tuple[int, int, str, str]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    stored_events: int = 0
    records: int = 0


@dataclass(slots=True)
class Batch:
    """Everything one poll produced: writes, dead letters, skip counts and the offsets to commit after."""

    buckets: Buckets = field(default_factory=Buckets)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    stored_events: int = 0
    records: int = 0
    next_offsets: dict[Any, int] = field(default_factory=dict)


def batch_from(polled: Mapping[Any, Sequence[Record]], outcome: Outcome) -> Batch:
    """Join an :class:`Outcome` with the records it was computed from (same partition order)."""
    partitions = [(tp, records) for tp, records in polled.items() if records]
    return Batch(
        buckets=outcome.buckets,
        dead_letters=[DeadLetter(partitions[p][1][i], reason, detail) for p, i, reason, detail in outcome.dead],
        skipped=outcome.skipped,
        stored_events=outcome.stored_events,
        records=outcome.records,
        next_offsets={tp: records[-1].offset + 1 for tp, records in partitions},
    )


class RecordSlice(NamedTuple):
    """One partition's records of a poll, as plain lists: what the store worker needs, cheap to pickle."""

    topic: str
    partition: int
    offsets: Sequence[int]
    keys: list[bytes | None]
    values: list[bytes | None]


class PlainRecord(NamedTuple):
    """A record rebuilt from a :class:`RecordSlice` (for dead letters, which need its origin and bytes)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def slices_of(polled: Mapping[Any, Sequence[Record]]) -> list[RecordSlice]:
    """The records of a poll per non-empty partition, in the order :func:`batch_from` expects."""
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


def dead_letters_of(slices: Sequence[RecordSlice], outcome: Outcome) -> list[DeadLetter]:
    """The dead letters of an outcome computed from these slices' values."""
    letters = []
    for index, position, reason, detail in outcome.dead:
        part = slices[index]
        record = PlainRecord(
            part.topic, part.partition, part.offsets[position], part.keys[position], part.values[position]
        )
        letters.append(DeadLetter(record, reason, detail))
    return letters


def values_of(polled: Mapping[Any, Sequence[Record]]) -> list[list[bytes | None]]:
    """The record values of a poll, per non-empty partition, in the order :func:`batch_from` expects."""
    return [[r.value for r in records] for records in polled.values() if records]


class Classifier:
    """Decodes, validates and buckets records with the settings' zone, retention and limits.

    An event older than ``RETENTION_DAYS`` (the index's retention, the longest) is ``too_old``; one that is only
    past ``MEMBER_RETENTION_DAYS`` is stored, and the writer leaves its day set out (expired keys are not
    written)."""

    def __init__(self, settings: Settings) -> None:
        self._bucketer = Bucketer(settings.zone)
        self._zone = settings.zone
        self._max_bytes = settings.max_event_bytes
        self._skew_ms = int(settings.max_future_skew_s * 1000)
        self._retention_days = settings.retention_days
        self._expiry_ms: dict[date, int] = {}

    def classify(self, polled: Mapping[Any, Sequence[Record]], now_ms: int) -> Batch:
        """Sort every record of a poll (``{TopicPartition: [records]}``) into the batch's outcomes."""
        return batch_from(polled, self.classify_values(values_of(polled), now_ms))

    def classify_values(self, partitions: Sequence[Sequence[bytes | None]], now_ms: int) -> Outcome:
        """Sort the record values of each partition of a poll into an :class:`Outcome`."""
        outcome = Outcome()
        for index, values in enumerate(partitions):
            self._classify_values(index, values, now_ms, outcome)
            outcome.records += len(values)
        return outcome

    def _classify_values(self, index: int, values: Sequence[bytes | None], now_ms: int, outcome: Outcome) -> None:
        # The per-record hot path of the consumer: locals instead of attribute lookups, no per-event objects.
        buckets = outcome.buckets
        days, hours, created = buckets.days, buckets.hours, buckets.created
        bucket = self._bucketer.bucket
        expired = self._expired
        max_bytes = self._max_bytes
        latest_ms = now_ms + self._skew_ms
        skipped = outcome.skipped
        dead = outcome.dead
        newest_ms = buckets.newest_event_ms
        stored = 0
        for position, value in enumerate(values):
            try:
                kind, user_id, ts_ms, roles = decode_fields(value, max_bytes)
            except MalformedEvent as exc:
                dead.append((index, position, exc.reason, exc.detail))
                continue
            if ts_ms > latest_ms:
                dead.append((index, position, "future_ts", f"ts is {(ts_ms - now_ms) // 1000} s ahead of the clock"))
                continue
            if kind not in ACTIVE_TYPES and kind != CREATED_TYPE:
                skipped["unknown_type"] += 1
                continue
            if roles and only_anonymous(roles):
                skipped["anonymous"] += 1
                continue
            day, hour = bucket(ts_ms)
            if expired(day, now_ms):
                skipped["too_old"] += 1
                continue
            if kind == CREATED_TYPE:
                created[day].add(user_id)
            else:
                days[day].add(user_id)
                hours[(day, hour)].add(user_id)
            if ts_ms > newest_ms:
                newest_ms = ts_ms
            stored += 1
        buckets.newest_event_ms = newest_ms
        outcome.stored_events += stored

    def _expired(self, day: date, now_ms: int) -> bool:
        expiry_ms = self._expiry_ms.get(day)
        if expiry_ms is None:
            if len(self._expiry_ms) > 10_000:
                self._expiry_ms.clear()
            expiry_ms = day_expiry_s(day, self._zone, self._retention_days) * 1000
            self._expiry_ms[day] = expiry_ms
        return expiry_ms <= now_ms
