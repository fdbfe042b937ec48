"""The Redis key schema. This module is the only place that builds key names.

Layout (``P`` is the configured prefix, ``Z`` the activity time zone name):

- ``Pday:Z:YYYY-MM-DD``: SET of user ids active on that local day.
- ``Phour:Z:YYYY-MM-DDTHH``: SET of user ids active in that local hour (a repeated DST hour is one bucket).
- ``Pnew:Z:YYYY-MM-DD``: SET of user ids created on that local day (``user.created`` events).
- ``Ptokens``: HASH of base64(SHA-256(token)) -> JSON record (user id, permissions, creation time, id).
- ``Pheartbeat:<member>``: STRING, one consumer's JSON heartbeat (time, last stored event time, assignment),
  written with a time to live (``CONSUMER_STALE``), so a consumer that died stops counting when it expires.
- ``Pheartbeats``: ZSET of consumer member ids scored by their heartbeat's expiry (epoch ms), so readers find
  the heartbeat keys without SCAN; writers prune members whose heartbeat expired long ago.
- ``Pratelimit:<user>:<window>``: counter for the optional API rate limit.

The zone is part of the bucket names, so a deployment that changes ``ACTIVITY_TIMEZONE`` starts new buckets
instead of mixing days of two zones (a replay rebuilds them). Keys are independent, so a Redis Cluster can
spread them over slots: no command ever touches two bucket keys at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, slots=True)
class KeySchema:
    """Builds every Redis key for one prefix and one activity time zone."""

    prefix: str
    zone_name: str

    def day(self, day: date) -> str:
        """Set of users active on ``day``."""
        return f"{self.prefix}day:{self.zone_name}:{day.isoformat()}"

    def hour(self, day: date, hour: int) -> str:
        """Set of users active during local ``hour`` (0-23) of ``day``."""
        return f"{self.prefix}hour:{self.zone_name}:{day.isoformat()}T{hour:02d}"

    def new_users(self, day: date) -> str:
        """Set of users created on ``day``."""
        return f"{self.prefix}new:{self.zone_name}:{day.isoformat()}"

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
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)
        return escaped + "*"
