"""The questions the API's routes ask, answered for one process: :class:`Activity`.

One ``Activity`` per app, built in its cleanup context (:mod:`api.app`) around the Redis reader, with the
process' cache, the settings and the clock. Handlers validate a request, ask it, and shape its answer; nothing
below a handler looks at the request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from activeusers.coalescer import Pending
from activeusers.days import clip_days, day_of
from activeusers.erasure import Erased, Eraser
from activeusers.keys import MaskKind
from activeusers.periods import Period
from activeusers.reader import ActivityReader
from activeusers.settings import Retained, Settings
from api.cohorts import Cohort, Cohorts, Plan, plan
from api.dates import day_range
from api.daycache import DayCache
from api.indexreads import IndexReads, Versions
from api.points import DayPoints
from api.retention import CohortRow
from api.segments import Segments, ValueRow, segment_parts
from api.userlists import UserLists
from api.windows import DayPoint


@dataclass(frozen=True, slots=True)
class ConsumerHealth:
    """What the consumers' heartbeats say: how many members beat, and the age of the freshest beat."""

    members: int
    age_s: float | None


class Activity:
    """Counts, unions, id lists and summary points of the index's days and hours, kept in ``cache`` under the
    index versions of the days they come from; the days a range can hold, on ``clock`` in the configured zone."""

    def __init__(
        self, reader: ActivityReader, cache: DayCache, settings: Settings, clock: Callable[[], float], eraser: Eraser
    ) -> None:
        self.reader = reader
        self.eraser = eraser
        self.cache = cache
        self.settings = settings
        self._clock = clock
        self._reads = IndexReads(reader, cache)
        self._lists = UserLists(reader, cache)
        self._points = DayPoints(self._reads)
        self._cohorts = Cohorts(self._reads)
        self._segments = Segments(self._reads)

    def now_ms(self) -> int:
        """The clock's current instant in epoch milliseconds."""
        return int(self._clock() * 1000)

    def today(self) -> date:
        """Today, in the configured zone."""
        return day_of(self.now_ms(), self.settings.zone)

    def requested_days(self, start: str, end: str) -> tuple[date, date]:
        """The local days of a ``start..end`` range of instants (possibly reversed, possibly far outside the
        data)."""
        return day_range(start, end, self.settings.zone)

    def stored_days(self, first: date, last: date, data: Retained = "days") -> list[date]:
        """The days of ``first..last`` that can hold ``data`` now (inside its retention, not in the future), oldest
        first."""
        return clip_days(first, last, self.now_ms(), self.settings.zone, self.settings.retention(data))

    def versions_soon(self, days: Sequence[date]) -> Pending[Versions]:
        """The index versions of ``days``, queued with this turn's other small reads (one round trip)."""
        return self._reads.day_versions_soon(days)

    async def day_counts(self, days: Sequence[date], versions: Versions) -> dict[date, int]:
        """Distinct users active on each day (0 for a day without data)."""
        return await self._reads.day_counts(days, versions)

    async def new_user_counts(self, days: Sequence[date], versions: Versions) -> dict[date, int]:
        """How many users were created on each day (0 for a day without data)."""
        return await self._reads.new_user_counts(days, versions)

    async def hour_counts(self, hours: Sequence[tuple[date, int]], versions: Versions) -> dict[tuple[date, int], int]:
        """Distinct users of each local hour ``(day, hour)`` (0 without data)."""
        return await self._reads.hour_counts(hours, versions)

    async def hour_union_counts(self, groups: Sequence[Sequence[tuple[date, int]]], versions: Versions) -> list[int]:
        """Distinct users of each group of local hours."""
        return await self._reads.hour_union_counts(groups, versions)

    async def day_elements(self, days: Sequence[date], versions: Versions) -> dict[date, bytes]:
        """Active-users' encoded element of each day of ``days`` that had active users (its ids and count)."""
        return await self._lists.day_fragments(days, versions, growing=self.today())

    def indexes(self, segment: str) -> bool:
        """Whether a ``segment`` parameter names a property and value, the property indexed (else a 400)."""
        parts = segment_parts(segment)
        return parts is not None and parts[0] in self.settings.indexed_properties

    async def active_kind(self, segment: str | None) -> MaskKind:
        """What "active" means for a question with this ``segment`` parameter (validated): active, or active in
        that segment."""
        if segment is None:
            return "day"
        name, _, value = segment.partition(":")
        return await self._segments.segment(name, value)

    async def breakdown(self, name: str, days: Sequence[date], versions: Versions) -> list[ValueRow]:
        """The values of indexed property ``name`` with users on ``days``, each with its distinct users and DAU."""
        return await self._segments.breakdown(name, days, versions)

    async def summary_points(
        self, feed: Sequence[date], days: Sequence[date], versions: Versions, kind: MaskKind = "day"
    ) -> tuple[list[DayPoint], int]:
        """The DAU/WAU/MAU points of ``days`` and their distinct users (active in a segment: ``kind``); ``feed``:
        the days their windows read."""
        return await self._points.points(feed, days, versions, kind)

    def retention_plan(self, start: str, end: str, period: Period, periods: int) -> tuple[Plan, list[date]]:
        """The cohort periods of a ``start..end`` range (its days that can hold data) reporting up to ``periods``
        periods later, and the days that can hold data of every period the answer looks at."""
        stored = self.stored_days(*self.requested_days(start, end))
        found = plan(stored[0], stored[-1], period, periods, self.today()) if stored else Plan([], [])
        if found.first is None or found.last is None:
            return found, []
        return found, self.stored_days(found.first, found.last)

    async def retention(
        self, found: Plan, period: Period, cohort: Cohort, asked: tuple[Sequence[date], Versions], kind: MaskKind
    ) -> list[CohortRow]:
        """Each cohort period of ``found`` with its members and how many came back in each period after (active:
        ``kind``); ``asked``: the days read and their versions."""
        return await self._cohorts.retention(found, period, cohort, *asked, kind)

    async def stickiness(
        self, days: Sequence[date], versions: Versions, kind: MaskKind = "day"
    ) -> tuple[int, list[int]]:
        """The distinct users of ``days`` and how many were active (``kind``) on exactly 1, 2, ... of them."""
        return await self._cohorts.stickiness(days, versions, kind)

    async def kept_answer(self, key: Hashable, version: Hashable, make: Callable[[], Awaitable[bytes]]) -> bytes:
        """A whole answer's body, kept under ``version`` (what it depends on): made again only when that changed."""
        body: bytes | None = self.cache.get(key, version)
        if body is None:
            body = await make()
            self.cache.put(key, version, body, len(body))
        return body

    async def forget(self, user_ids: Sequence[str]) -> Erased:
        """Erase ``user_ids`` from the index for good; returns once every API process' next read goes without them
        (their days have new versions, under which nothing cached before is used)."""
        return await self.eraser.forget(user_ids)

    async def consumer_health(self) -> ConsumerHealth:
        """The consumers' heartbeats (Redis answering, else :class:`~activeusers.errors.StoreUnavailable`)."""
        await self.reader.ping()
        beats: dict[str, dict[str, Any]] = await self.reader.heartbeats()
        stamps = [beat["ts_ms"] for beat in beats.values() if isinstance(beat.get("ts_ms"), int | float)]
        age = max(0.0, (self.now_ms() - max(stamps)) / 1000) if stamps else None
        return ConsumerHealth(len(beats), age)
