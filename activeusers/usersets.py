"""The user sets of one batch of events: distinct user ids per local day, hour, day of creation and segment, as the
consumer classifies them and the writer stores them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date


@dataclass(slots=True)
class UserSets:
    """Distinct user ids per local day, per local hour and per day of creation, accumulated from one batch of
    events, ready to be written at once."""

    days: defaultdict[date, set[str]] = field(default_factory=lambda: defaultdict(set))
    hours: defaultdict[tuple[date, int], set[str]] = field(default_factory=lambda: defaultdict(set))
    created: defaultdict[date, set[str]] = field(default_factory=lambda: defaultdict(set))
    # (day, indexed property, value) -> the users active that day with an event carrying that value.
    segments: defaultdict[tuple[date, str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    newest_event_ms: int = -1

    def add_active(self, day: date, hour: int, user_id: str, ts_ms: int) -> None:
        """Record ``user_id`` as active on ``day`` and in its ``hour`` (as the classifier does, for seeding tools)."""
        self.days[day].add(user_id)
        self.hours[(day, hour)].add(user_id)
        self.newest_event_ms = max(self.newest_event_ms, ts_ms)

    def add_segment(self, day: date, user_id: str, name: str, value: str) -> None:
        """Record that ``user_id``, active on ``day`` (:meth:`add_active`), had an event with property ``name`` =
        ``value``."""
        self.segments[(day, name, value)].add(user_id)

    def add_created(self, day: date, user_id: str, ts_ms: int) -> None:
        """Record that ``user_id`` was created on ``day``."""
        self.created[day].add(user_id)
        self.newest_event_ms = max(self.newest_event_ms, ts_ms)

    def __bool__(self) -> bool:
        return bool(self.days or self.created)

    def members(self, *, hours: bool = True) -> set[str]:
        """Every user of the batch (of its days and creations, which hold its segments' too; and of its hours when
        ``hours``)."""
        groups = [*self.days.values(), *self.created.values(), *(self.hours.values() if hours else ())]
        return set().union(*groups)

    def only(self, users: set[str], *, keep: bool = True) -> UserSets:
        """The batch with only ``users`` (``keep``), or without them; a set that needs no change is shared, not
        copied.

        Both take time in proportion to ``users`` per set, not to the batch: a batch is written without its
        forgotten users every time it has one (``&`` and ``isdisjoint`` walk the smaller set)."""
        kept = UserSets(newest_event_ms=self.newest_event_ms)
        pairs = ((self.days, kept.days), (self.hours, kept.hours), (self.created, kept.created))
        for source, target in (*pairs, (self.segments, kept.segments)):
            for group, members in source.items():
                if keep:
                    chosen = members & users
                elif members.isdisjoint(users):
                    chosen = members
                else:
                    chosen = members - users
                if chosen:
                    target[group] = chosen  # type: ignore[index]
        return kept
