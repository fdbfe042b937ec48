"""Whether the member's Redis works, and its heartbeat there (what the API's ``/readyz`` counts)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from activeusers.errors import StoreUnavailable
from activeusers.heartbeats import Heartbeats
from activeusers.settings import Settings
from consumer.assignment import Assignment, labels
from consumer.metrics import ConsumerMetrics

log = logging.getLogger(__name__)


class Liveness:
    """Writes the member's heartbeat every ``CONSUMER_HEARTBEAT`` and keeps the Redis-up flag, which the store
    worker's reports and the heartbeat's own success set."""

    def __init__(
        self,
        settings: Settings,
        heartbeats: Heartbeats,
        assignment: Assignment,
        metrics: ConsumerMetrics,
        member_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._heartbeats = heartbeats
        self._assignment = assignment
        self._metrics = metrics
        self._member_id = member_id
        self._clock = clock
        self._last_beat = -float("inf")
        self.redis_ok = True

    def beat_if_due(self, newest_event_ms: int) -> None:
        """Write the heartbeat once ``CONSUMER_HEARTBEAT`` has passed since the last one."""
        now = time.monotonic()
        if now - self._last_beat < self._settings.consumer_heartbeat_s:
            return
        self._last_beat = now
        now_ms = int(self._clock() * 1000)
        state: dict[str, object] = {
            "ts_ms": now_ms,
            "group": self._settings.kafka_group_id,
            "partitions": labels(self._assignment.owned),
            "lastEventMs": newest_event_ms,
        }
        try:
            self._heartbeats.beat(self._member_id, state, now_ms)
        except StoreUnavailable as exc:
            self.set_redis(ok=False)
            log.warning("heartbeat failed", extra={"error": str(exc)})
        else:
            self.set_redis(ok=True)

    def set_redis(self, *, ok: bool) -> None:
        """Record whether Redis accepted the last write (logged on change)."""
        if ok != self.redis_ok:
            log.info("redis recovered" if ok else "redis unavailable")
        self.redis_ok = ok
        self._metrics.redis_up.set(1 if ok else 0)

    def forget(self) -> None:
        """Withdraw this member's heartbeat (best effort, on a clean stop)."""
        try:
            self._heartbeats.forget(self._member_id)
        except StoreUnavailable as exc:
            log.warning("could not remove heartbeat", extra={"error": str(exc)})
