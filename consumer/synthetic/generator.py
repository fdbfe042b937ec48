"""A deterministic model of a user population's login and activity events, for demos, tests and benchmarks.

Pure: no I/O, no clock, no global random state. The same :class:`Profile`, ``seed`` and ``now_ms`` always
yield the same records in the same order. What makes the stream look like a real chat server's:

- ``users`` users with Rocket.Chat-like 17-character ids; most exist before the window, a share
  (``new_user_share``) is created during it, each with a ``user.created`` event, and is active only afterwards,
  so the number of active users grows over the window;
- a weekly rhythm (weekend days get ``weekend_factor`` of a weekday's traffic) and a daily curve (quiet nights,
  a morning and an afternoon peak) in the local hours of ``timezone``;
- a share of heavy users (``heavy_share``) who send ``heavy_factor`` times as many events as the others;
- a user's first event of a local day is a ``login``, later ones ``activity``, some ``logout``;
- a few bots, admins and anonymous visitors (the latter are not counted by the service);
- optionally a share of malformed records (``malformed_share``), which the consumer dead-letters;
- optionally (``platforms``) a ``properties.platform`` on every counted event: each user has a platform from
  :data:`PLATFORM_MIX`, and a share (:data:`SECOND_PLATFORM_SHARE`) a second one that some of its events carry.

Records come in time order. Every timestamp lies in ``[now_ms - days, now_ms)``.
"""

from __future__ import annotations

import bisect
import itertools
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

import orjson

from activeusers.days import DAY_MS, HOUR_MS
from activeusers.events import CREATED_TYPE
from activeusers.isotime import format_iso

ID_ALPHABET: Final = string.ascii_letters + string.digits

# Relative traffic per local hour of the day: quiet nights, a morning peak, a lunch dip, an afternoon peak.
DAILY_CURVE: Final = (
    0.10, 0.06, 0.04, 0.04, 0.05, 0.10, 0.25, 0.55, 0.90, 1.00, 1.00, 0.95,
    0.75, 0.85, 1.00, 0.95, 0.85, 0.65, 0.45, 0.35, 0.30, 0.25, 0.18, 0.12,
)  # fmt: skip

# The platforms of a chat server's users, with their shares: 5 values, as the benchmarks' indexed property has.
PLATFORM_MIX: Final = (("web", 0.45), ("desktop", 0.2), ("android", 0.18), ("ios", 0.15), ("linux", 0.02))
# Users with a second platform (a phone beside the desktop), and the share of their events sent from it.
SECOND_PLATFORM_SHARE: Final = 0.15
SECOND_PLATFORM_TENTHS: Final = 3

# Malformed record values, each of which the consumer rejects for a different reason.
MALFORMED_VALUES: Final = (
    b"{not json",
    b"\xff\xfe\x00garbage",
    b"[1,2,3]",
    b'{"userId":"u1","ts":"2024-01-01T00:00:00.000Z"}',
    b'{"type":"login","ts":"2024-01-01T00:00:00.000Z"}',
    b'{"type":"login","userId":"","ts":"2024-01-01T00:00:00.000Z"}',
    b'{"type":"login","userId":"u1"}',
    b'{"type":"login","userId":"u1","ts":"yesterday"}',
    b'{"type":"login","userId":"u1","ts":"2024-01-01T00:00:00.000Z","roles":"admin"}',
)


@dataclass(frozen=True, slots=True)
class Profile:
    """The population and its habits. Shares are fractions in ``[0, 1]``."""

    users: int = 2000
    days: int = 30
    heavy_share: float = 0.1
    heavy_factor: float = 8.0
    new_user_share: float = 0.2
    weekend_factor: float = 0.35
    logout_share: float = 0.05
    bot_share: float = 0.01
    admin_share: float = 0.02
    anonymous_share: float = 0.02
    malformed_share: float = 0.0
    timezone: str = "UTC"
    platforms: bool = False

    def problems(self) -> list[str]:
        """Every out-of-range parameter, as messages."""
        found = []
        if self.users < 1:
            found.append("users must be at least 1")
        if self.days < 1:
            found.append("days must be at least 1")
        if self.heavy_factor < 1:
            found.append("heavy_factor must be at least 1")
        if self.weekend_factor < 0:
            found.append("weekend_factor must not be negative")
        for name in ("heavy_share", "new_user_share", "logout_share", "bot_share", "admin_share",
                     "anonymous_share", "malformed_share"):  # fmt: skip
            if not 0.0 <= getattr(self, name) <= 1.0:
                found.append(f"{name} must be between 0 and 1")
        if self.bot_share + self.admin_share + self.anonymous_share > 1.0:
            found.append("bot_share + admin_share + anonymous_share must not exceed 1")
        return found


@dataclass(frozen=True, slots=True)
class User:
    """One member of the population."""

    id: str
    created_ms: int | None  # None: existed before the window
    weight: float
    roles: tuple[str, ...]
    platforms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GeneratedRecord:
    """One Kafka record: the partition key (the user id) and either an event object or malformed bytes."""

    key: str
    value: dict[str, object] | bytes

    @property
    def malformed(self) -> bool:
        """Whether the value is deliberately not a valid event."""
        return isinstance(self.value, bytes)

    def encoded(self) -> bytes:
        """The record value as sent to Kafka."""
        return self.value if isinstance(self.value, bytes) else orjson.dumps(self.value)


def population(profile: Profile, seed: int, now_ms: int) -> list[User]:
    """The users, sorted by creation time (pre-existing users first)."""
    rng = random.Random(f"population:{seed}")
    # Platforms come from a stream of their own: a population without them is the same as before they existed.
    devices = random.Random(f"platforms:{seed}")
    start_ms = now_ms - profile.days * DAY_MS
    # At least one user exists from the start, so every moment of the window has someone to be active.
    new_count = min(round(profile.users * profile.new_user_share), profile.users - 1)
    ids: set[str] = set()
    users: list[User] = []
    for index in range(profile.users):
        user_id = "".join(rng.choices(ID_ALPHABET, k=17))
        while user_id in ids:
            user_id = "".join(rng.choices(ID_ALPHABET, k=17))
        ids.add(user_id)
        created = start_ms + rng.randrange(profile.days * DAY_MS) if index < new_count else None
        weight = profile.heavy_factor if rng.random() < profile.heavy_share else 1.0
        platforms = _platforms(devices) if profile.platforms else ()
        users.append(User(user_id, created, weight, _roles(rng, profile), platforms))
    users.sort(key=lambda u: -1 if u.created_ms is None else u.created_ms)
    return users


def generate(profile: Profile, seed: int, now_ms: int, count: int) -> Iterator[GeneratedRecord]:
    """``count`` records in time order over the ``profile.days`` days before ``now_ms``.

    The ``user.created`` events of users created in the window come first from the budget (as many as fit),
    the rest are logins, activity and logouts spread by the weekly rhythm and the daily curve.
    """
    problems = profile.problems()
    if problems or count < 0:
        raise ValueError("; ".join(problems or ["count must not be negative"]))
    rng = random.Random(f"events:{seed}")
    users = population(profile, seed, now_ms)
    start_ms = now_ms - profile.days * DAY_MS
    created = [u for u in users if u.created_ms is not None][:count]
    creations = sorted((u.created_ms, u.id) for u in created if u.created_ms is not None)
    # Eligibility by creation time: the users created at or before ``ts`` are a prefix of ``users``.
    created_at = [-1 if u.created_ms is None else u.created_ms for u in users]
    cumulative = list(itertools.accumulate(u.weight for u in users))
    zone = ZoneInfo(profile.timezone)
    slots = [start_ms + i * HOUR_MS for i in range(profile.days * 24)]
    per_slot = _allocate(count - len(creations), [_slot_weight(profile, s, zone) for s in slots])
    last_day: dict[str, int] = {}
    next_creation = 0
    for slot_start, events in zip(slots, per_slot, strict=True):
        for ts in sorted(slot_start + rng.randrange(HOUR_MS) for _ in range(events)):
            while next_creation < len(creations) and creations[next_creation][0] <= ts:
                created_ms, user_id = creations[next_creation]
                next_creation += 1
                yield _maybe_malformed(
                    rng, profile, GeneratedRecord(user_id, _event(CREATED_TYPE, user_id, created_ms))
                )
            eligible = bisect.bisect_right(created_at, ts)
            user = users[bisect.bisect_right(cumulative, rng.random() * cumulative[eligible - 1], 0, eligible - 1)]
            yield _maybe_malformed(
                rng, profile, GeneratedRecord(user.id, _activity(rng, profile, user, ts, zone, last_day))
            )
    for created_ms, user_id in creations[next_creation:]:
        yield _maybe_malformed(rng, profile, GeneratedRecord(user_id, _event(CREATED_TYPE, user_id, created_ms)))


def _roles(rng: random.Random, profile: Profile) -> tuple[str, ...]:
    draw = rng.random()
    if draw < profile.bot_share:
        return ("bot",)
    if draw < profile.bot_share + profile.admin_share:
        return ("user", "admin")
    if draw < profile.bot_share + profile.admin_share + profile.anonymous_share:
        return ("anonymous",)
    return ("user",)


def _platforms(rng: random.Random) -> tuple[str, ...]:
    names = [name for name, _ in PLATFORM_MIX]
    first = rng.choices(names, [share for _, share in PLATFORM_MIX])[0]
    if rng.random() >= SECOND_PLATFORM_SHARE:
        return (first,)
    return (first, rng.choice([name for name in names if name != first]))


def _slot_weight(profile: Profile, slot_start: int, zone: ZoneInfo) -> float:
    local = datetime.fromtimestamp(slot_start / 1000, tz=UTC).astimezone(zone)
    weekday = profile.weekend_factor if local.weekday() >= 5 else 1.0
    return weekday * DAILY_CURVE[local.hour]


def _allocate(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` into integer shares proportional to ``weights`` (largest remainder, deterministic)."""
    if total <= 0:
        return [0] * len(weights)
    whole = sum(weights)
    if whole <= 0:
        weights, whole = [1.0] * len(weights), float(len(weights))
    exact = [total * w / whole for w in weights]
    shares = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (shares[i] - exact[i], i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _activity(
    rng: random.Random, profile: Profile, user: User, ts: int, zone: ZoneInfo, last_day: dict[str, int]
) -> dict[str, object]:
    local_day = datetime.fromtimestamp(ts / 1000, tz=UTC).astimezone(zone).toordinal()
    if last_day.get(user.id) != local_day:
        last_day[user.id] = local_day
        kind = "login"
    elif rng.random() < profile.logout_share:
        kind = "logout"
    else:
        kind = "activity"
    event = _event(kind, user.id, ts)
    event["roles"] = list(user.roles)
    if user.platforms:
        # The millisecond of an event is uniform: it picks the device without a draw that would shift the stream.
        second = len(user.platforms) > 1 and ts % 10 < SECOND_PLATFORM_TENTHS
        event["properties"] = {"platform": user.platforms[1 if second else 0]}
    return event


def _event(kind: str, user_id: str, ts: int) -> dict[str, object]:
    return {"type": kind, "userId": user_id, "ts": format_iso(ts)}


def _maybe_malformed(rng: random.Random, profile: Profile, record: GeneratedRecord) -> GeneratedRecord:
    if profile.malformed_share and rng.random() < profile.malformed_share:
        return GeneratedRecord(record.key, MALFORMED_VALUES[rng.randrange(len(MALFORMED_VALUES))])
    return record
