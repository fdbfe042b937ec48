"""The Redis key schema. This module is the only place that builds key names.

Layout (``P`` is the configured prefix, ``Z`` the activity time zone name, ``N`` the ``USER_BUCKETS`` setting and
``b`` a user's bucket, :func:`bucket_of`; ``{N.b}`` is a Redis Cluster hash tag, see ``docs/keys.md``):

- ``P{N.b}:ids``: HASH of user id -> the user's number in bucket ``b`` (dense, from 0, never reused).
- ``P{N.b}:names``: LIST of user ids, element ``n`` the id of user number ``n`` of bucket ``b``: the way back from
  a bit to its user, appended to by the script that numbers (append-only, like the numbering).
- ``P{N.b}:namesmade``: STRING, when the names list was begun (Redis' ``TIME``), set by the script that began it.
- ``P{N.b}:unlisted``: HASH of number -> id of the users numbered while the names list was behind (an upgrade),
  until ``active-users reindex`` lists them (then it is gone).
- ``P{N.b}:forgotten``: bitmap, bit ``n`` set when user number ``n`` of bucket ``b`` was forgotten (its number
  retired for good: no writer sets its bits again). A forgotten id's field in the ids hash is replaced by its
  tombstone, ``"\\0f:"`` and the SHA-1 of the id, with the same number (``"\\0r:<SHA-1>:<n>"`` once restored), so
  the hash keeps its size, and its names list element becomes ``""``.
- ``P{N.b}:day:Z:YYYY-MM-DD``: bitmap, bit ``n`` set when user number ``n`` of bucket ``b`` was active that day.
- ``P{N.b}:hour:Z:YYYY-MM-DDTHH``: bitmap of the users active in that local hour (a repeated DST hour is one).
- ``P{N.b}:new:Z:YYYY-MM-DD``: bitmap of the users created on that local day (``user.created`` events).
- ``P{N.b}:counts:Z:YYYY-MM-DD``: 26 unsigned 32-bit big-endian counters (``BITFIELD u32 #i``): the bits set in
  that day's hour bitmaps (``#0``-``#23``), day bitmap (``#24``, :data:`DAY_SLOT`) and new-user bitmap (``#25``,
  :data:`NEW_SLOT`), kept by the same script that sets the bits, so counts need no ``BITCOUNT``.
- ``P{N.b}:firstday:Z``: STRING of u16, ``#n`` the local day number (:func:`day_number`) of user ``n``'s first active
  day ever recorded (0: none), moved only earlier, never expiring (kept as long as the numbering).
- ``P{N.b}:first:Z:YYYY-MM-DD``: bitmap of the users whose first active day is that day (a user's bit moves to an
  earlier day's bitmap with the number above), with the day bitmaps' retention.
- ``Pvalues:<property>``: HASH of an indexed property's value -> its id (1, 2, ... dense, at most
  ``SEGMENT_MAX_VALUES``, first come first served; 0, never stored, is ``(other)``), shared by every writer.
- ``P{N.b}:seg:Z:<property>:<id>:YYYY-MM-DD``: bitmap of the users active that day with an event whose property
  has the value of that id, with the day bitmaps' retention.
- ``P{N.b}:segcounts:Z:<property>:YYYY-MM-DD``: u32 counters (``#id``): the bits set in that day's bitmaps of
  each value of the property, kept by the script that sets them (a breakdown's DAU needs no ``BITCOUNT``).
- ``P{N.b}:scratch``: a union of the bucket's bitmaps, made and deleted inside one reader's script call.
- ``P{N.b}:union:Z:YYYY-MM-DD:YYYY-MM-DD``: bitmap, the union of the bucket's day bitmaps of those days (a
  segment's: ``union:Z:seg:<property>:<id>:...``), kept by the API (a day, ``UNION_TTL_S``) for the unions that
  include them, with ``P{N.b}:unionof:Z:...`` (a STRING: the digest of the days' versions it was made from, and
  whether it is empty), so it is made again when one changes.
- ``Pversions:N:Z``: HASH of YYYY-MM-DD -> a token the writer replaces after every acknowledged write of that
  day's bitmaps and counters, so an API process knows which of its cached masks and counters still hold.
- ``Pderived:N:Z``: HASH of ``point:YYYY-MM-DD`` -> "digest DAU WAU MAU" (the summary's counts of that day, valid
  while the digest of the versions of the 30 days they cover matches) and ``counters:YYYY-MM-DD`` -> "version
  HEX" (the day's 26 counters summed over the buckets, big-endian 32-bit numbers in hex), as API processes
  derived them, for each other.
- ``Ptokens``: HASH of base64(SHA-256(token)) -> JSON record (user id, permissions, creation time, id).
- ``Pheartbeat:<member>``: STRING, one consumer's JSON heartbeat (time, last stored event time, assignment),
  written with a time to live (``CONSUMER_STALE``), so a consumer that died stops counting when it expires.
- ``Pheartbeats``: ZSET of consumer member ids scored by their heartbeat's expiry (epoch ms), so readers find
  the heartbeat keys without SCAN; writers prune members whose heartbeat expired long ago.
- ``Pratelimit:<user>:<window>``: counter for the optional API rate limit.

Before the index, days, hours and new users were SETs of ids (``Pday:Z:YYYY-MM-DD``, ``Phour:Z:YYYY-MM-DDTHH``,
``Pnew:Z:YYYY-MM-DD``); only ``active-users reindex`` reads them (the ``old_*`` methods), to migrate them and delete
them.

The zone is part of the names, so a deployment that changes ``ACTIVITY_TIMEZONE`` starts new days instead of
mixing days of two zones (a replay rebuilds them). So is ``N``: another bucket count is another index. Every
multi-key command touches the keys of one bucket only, which share a hash tag and so a cluster slot.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal, NamedTuple

from activeusers.settings import DEFAULT_BUCKETS, Settings

# The counters of a day's counts key: hours 0-23 are their own slots.
DAY_SLOT: Final = 24
NEW_SLOT: Final = 25
SLOTS: Final = 26
# The per-day bitmaps of a bucket: its users active that day, created that day, and first active that day.
DayKind = Literal["day", "new", "first"]
# The id of "(other)" in every property's value registry: the values past SEGMENT_MAX_VALUES.
OTHER_ID: Final = 0


class Segment(NamedTuple):
    """The users of one value of an indexed property: the property's name and the value's id in its registry."""

    property: str
    value: int


# What a mask of a day can be of: its users active, created, first active, or active in a segment.
MaskKind = DayKind | Segment
# Day numbers of the first-day numbers (u16): 1 is 1970-01-01, so 0 means none and the last is in 2149.
_DAY_ZERO: Final = date(1969, 12, 31).toordinal()


def bucket_of(user_id: str, buckets: int) -> int:
    """The bucket of ``user_id``: CRC-32 of its UTF-8 bytes modulo ``buckets`` (stable across processes)."""
    return zlib.crc32(user_id.encode()) % buckets


def day_number(day: date) -> int:
    """The number of ``day`` in the first-day numbers (days since 1969-12-31, so 1970-01-01 is 1)."""
    return day.toordinal() - _DAY_ZERO


def day_of_number(number: int) -> date:
    """The day of a first-day number (:func:`day_number`'s inverse)."""
    return date.fromordinal(number + _DAY_ZERO)


@dataclass(frozen=True, slots=True)
class KeySchema:
    """Builds every Redis key for one prefix, one activity time zone and one number of user buckets."""

    prefix: str
    zone_name: str
    buckets: int = DEFAULT_BUCKETS

    @classmethod
    def of(cls, settings: Settings) -> KeySchema:
        """The schema of the settings' prefix, zone and ``USER_BUCKETS``."""
        return cls(settings.redis_key_prefix, settings.activity_timezone, settings.user_buckets)

    def tag(self, bucket: int) -> str:
        """The start shared by every key of ``bucket``, hash tag included."""
        return f"{self.prefix}{{{self.buckets}.{bucket}}}:"

    def ids(self, bucket: int) -> str:
        """Hash numbering the users of ``bucket``."""
        return f"{self.tag(bucket)}ids"

    def names(self, bucket: int) -> str:
        """List of the ids of ``bucket``'s users, element ``n`` the id of user number ``n``."""
        return f"{self.tag(bucket)}names"

    def names_made(self, bucket: int) -> str:
        """When ``bucket``'s names list was begun (Redis' clock, by the script that began it): a list lost and
        begun again has another, so a reader holding ids of the old one knows to read it again."""
        return f"{self.tag(bucket)}namesmade"

    def unlisted(self, bucket: int) -> str:
        """Hash of number -> id of ``bucket``'s users numbered while its names list was behind its numbering (an
        upgrade from a version without lists), until ``reindex`` lists them."""
        return f"{self.tag(bucket)}unlisted"

    def forgotten(self, bucket: int) -> str:
        """Bitmap of ``bucket``'s forgotten numbers (retired for good: writers refuse their bits)."""
        return f"{self.tag(bucket)}forgotten"

    def day_bits(self, day: date, bucket: int) -> str:
        """Bitmap of the users of ``bucket`` active on ``day``."""
        return self.tag(bucket) + self.day_part(day)

    def hour_bits(self, day: date, hour: int, bucket: int) -> str:
        """Bitmap of the users of ``bucket`` active during local ``hour`` (0-23) of ``day``."""
        return self.tag(bucket) + self.hour_part(day, hour)

    def new_bits(self, day: date, bucket: int) -> str:
        """Bitmap of the users of ``bucket`` created on ``day``."""
        return self.tag(bucket) + self.new_part(day)

    def counts(self, day: date, bucket: int) -> str:
        """The counters of ``day`` in ``bucket``: users of each hour, of the day, and created that day."""
        return self.tag(bucket) + self.counts_part(day)

    def first_days(self, bucket: int) -> str:
        """The first-day numbers of ``bucket``'s users: a u16 per user number, never expiring."""
        return f"{self.tag(bucket)}firstday:{self.zone_name}"

    def first_bits(self, day: date, bucket: int) -> str:
        """Bitmap of the users of ``bucket`` whose first active day ever recorded is ``day``."""
        return self.tag(bucket) + self.first_part(day)

    def first_part(self, day: date) -> str:
        """What follows the bucket's tag in :meth:`first_bits`."""
        return self.first_part_start() + day.isoformat()

    def kind_part(self, kind: MaskKind, day: date) -> str:
        """What follows the bucket's tag in ``day``'s bitmap of ``kind`` (:meth:`day_part`, :meth:`new_part`,
        :meth:`first_part` or :meth:`segment_part`)."""
        if isinstance(kind, Segment):
            return self.segment_part(kind, day)
        if kind == "new":
            return self.new_part(day)
        return self.first_part(day) if kind == "first" else self.day_part(day)

    def values(self, name: str) -> str:
        """Hash of the values of indexed property ``name`` -> their ids (shared by every writer and API process)."""
        return f"{self.prefix}values:{name}"

    def segment_bits(self, segment: Segment, day: date, bucket: int) -> str:
        """Bitmap of the users of ``bucket`` active on ``day`` with an event in ``segment``."""
        return self.tag(bucket) + self.segment_part(segment, day)

    def segment_part(self, segment: Segment, day: date) -> str:
        """What follows the bucket's tag in :meth:`segment_bits`."""
        return f"seg:{self.zone_name}:{segment.property}:{segment.value}:{day.isoformat()}"

    def segment_counts(self, name: str, day: date, bucket: int) -> str:
        """The counters of ``day`` in ``bucket`` of the values of property ``name`` (``#id``: that value's users)."""
        return self.tag(bucket) + self.segment_counts_part(name, day)

    def segment_counts_part(self, name: str, day: date) -> str:
        """What follows the bucket's tag in :meth:`segment_counts`."""
        return f"segcounts:{self.zone_name}:{name}:{day.isoformat()}"

    def first_part_start(self) -> str:
        """What precedes the date in :meth:`first_part`: the first-day script names other days' bitmaps with it."""
        return f"first:{self.zone_name}:"

    def scratch(self, bucket: int) -> str:
        """Scratch key of ``bucket`` for the readers' unions in Redis: written and deleted inside one script call."""
        return self.tag(bucket) + "scratch"

    def union_part(self, first: date, last: date, kind: MaskKind = "day") -> str:
        """What follows the bucket's tag in the kept union of its day bitmaps (or a segment's) of ``first..last``."""
        return f"union:{self.zone_name}:{_union_of(kind)}{first.isoformat()}:{last.isoformat()}"

    def union_label_part(self, first: date, last: date, kind: MaskKind = "day") -> str:
        """What follows the bucket's tag in the label of :meth:`union_part`: what the union was made from."""
        return f"unionof:{self.zone_name}:{_union_of(kind)}{first.isoformat()}:{last.isoformat()}"

    def day_part(self, day: date) -> str:
        """What follows the bucket's tag in :meth:`day_bits`."""
        return f"day:{self.zone_name}:{day.isoformat()}"

    def hour_part(self, day: date, hour: int) -> str:
        """What follows the bucket's tag in :meth:`hour_bits`."""
        return f"hour:{self.zone_name}:{day.isoformat()}T{hour:02d}"

    def new_part(self, day: date) -> str:
        """What follows the bucket's tag in :meth:`new_bits`."""
        return f"new:{self.zone_name}:{day.isoformat()}"

    def counts_part(self, day: date) -> str:
        """What follows the bucket's tag in :meth:`counts`."""
        return f"counts:{self.zone_name}:{day.isoformat()}"

    def versions(self) -> str:
        """Hash of day -> the index version of that day (:meth:`day_field`), replaced by the writer after
        every acknowledged write of the day's bitmaps (readers' caches check it)."""
        return f"{self.prefix}versions:{self.buckets}:{self.zone_name}"

    @staticmethod
    def day_field(day: date) -> str:
        """The field of ``day`` in :meth:`versions`."""
        return day.isoformat()

    def derived(self) -> str:
        """Hash of what API processes derived from a day's index data (:meth:`derived_field`), with what it was
        derived from, shared by them: a new process finds it instead of deriving it again."""
        return f"{self.prefix}derived:{self.buckets}:{self.zone_name}"

    @staticmethod
    def derived_field(kind: str, day: date) -> str:
        """The field of ``kind`` (``point``: the summary's DAU/WAU/MAU; ``counters``: the day's counters summed
        over the buckets) of ``day`` in :meth:`derived`."""
        return f"{kind}:{day.isoformat()}"

    def in_bucket(self, bucket: int, parts: list[str]) -> list[str]:
        """The keys of ``bucket`` for many parts at once (a reader's days; the parts built once for all buckets)."""
        tag = self.tag(bucket)
        return [tag + part for part in parts]

    def old_day(self, day: date) -> str:
        """The set of the ids of the users active on ``day`` that earlier versions kept (read by ``reindex`` only)."""
        return f"{self.prefix}day:{self.zone_name}:{day.isoformat()}"

    def old_hour(self, day: date, hour: int) -> str:
        """The pre-index set of users active during ``hour`` of ``day`` (read by ``reindex`` only)."""
        return f"{self.prefix}hour:{self.zone_name}:{day.isoformat()}T{hour:02d}"

    def old_new_users(self, day: date) -> str:
        """The pre-index set of users created on ``day`` (read by ``reindex`` only)."""
        return f"{self.prefix}new:{self.zone_name}:{day.isoformat()}"

    def old_day_pattern(self) -> str:
        """A SCAN pattern matching the day sets of earlier versions, of this prefix and zone."""
        return _escaped(f"{self.prefix}day:{self.zone_name}:") + "*"

    def old_hour_pattern(self) -> str:
        """A SCAN pattern matching the pre-index hour sets of this prefix and zone."""
        return _escaped(f"{self.prefix}hour:{self.zone_name}:") + "*"

    def old_new_users_pattern(self) -> str:
        """A SCAN pattern matching the pre-index new-user sets of this prefix and zone."""
        return _escaped(f"{self.prefix}new:{self.zone_name}:") + "*"

    def old_day_of(self, key: str) -> date | None:
        """The day of an earlier version's day set name (``None`` for any other key)."""
        return _parsed_day(_after(key, f"{self.prefix}day:{self.zone_name}:"))

    def old_hour_of(self, key: str) -> tuple[date, int] | None:
        """The (day, hour) of a pre-index hour set's name (``None`` for any other key)."""
        return _parsed_hour(_after(key, f"{self.prefix}hour:{self.zone_name}:"))

    def old_new_users_of(self, key: str) -> date | None:
        """The day of a pre-index new-user set's name (``None`` for any other key)."""
        return _parsed_day(_after(key, f"{self.prefix}new:{self.zone_name}:"))

    def tokens(self) -> str:
        """Hash of hashed API tokens."""
        return f"{self.prefix}tokens"

    def heartbeat(self, member: str) -> str:
        """One consumer's heartbeat record (expires by itself)."""
        return f"{self.prefix}heartbeat:{member}"

    def heartbeats(self) -> str:
        """Sorted set indexing the heartbeat records: member id scored by expiry."""
        return f"{self.prefix}heartbeats"

    def rate_limit(self, user_id: str, window: int) -> str:
        """Request counter of ``user_id`` in rate-limit window number ``window``."""
        return f"{self.prefix}ratelimit:{user_id}:{window}"

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this prefix (for tools and tests)."""
        return _escaped(self.prefix) + "*"


def _union_of(kind: MaskKind) -> str:
    """What names a kept union's bitmaps in its key: nothing for the day bitmaps, the segment for a segment's."""
    return f"seg:{kind.property}:{kind.value}:" if isinstance(kind, Segment) else ""


def _parsed_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


def _parsed_hour(text: str) -> tuple[date, int] | None:
    day_text, sep, hour_text = text.partition("T")
    day = _parsed_day(day_text)
    if day is None or not sep or len(hour_text) != 2 or not hour_text.isdigit() or int(hour_text) > 23:
        return None
    return day, int(hour_text)


def _escaped(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _after(key: str, start: str) -> str:
    return key[len(start) :] if key.startswith(start) else ""
