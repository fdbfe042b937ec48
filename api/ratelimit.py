"""The optional per-user rate limit: a fixed window counted in Redis (INCR + expiry), like Rocket.Chat's."""

from __future__ import annotations

import math
from dataclasses import dataclass

from activeusers.connections import REDIS_ERRORS, AsyncClient, leased
from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema

_SKEW_MARGIN_MS = 60_000


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one counted request: allowed or not, and the ``X-RateLimit-*`` headers to send."""

    allowed: bool
    limit: int
    remaining: int
    reset_ms: int
    wait_s: int

    def headers(self) -> dict[str, str]:
        """Rocket.Chat's headers; ``X-RateLimit-Reset`` is the window's end in epoch milliseconds."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_ms),
        }


class RateLimiter:
    """Counts each user's requests per fixed window of ``window_s`` seconds; ``limit`` 0 disables it."""

    def __init__(self, client: AsyncClient, keys: KeySchema, limit: int, window_s: float) -> None:
        self._client = client
        self._keys = keys
        self.limit = limit
        self._window_ms = max(1, round(window_s * 1000))

    @property
    def enabled(self) -> bool:
        """Whether requests are limited at all."""
        return self.limit > 0

    async def hit(self, user_id: str, now_ms: int) -> RateDecision:
        """Count one request of ``user_id`` at ``now_ms`` and decide whether it may proceed."""
        window = now_ms // self._window_ms
        reset_ms = (window + 1) * self._window_ms
        key = self._keys.rate_limit(user_id, window)
        try:
            async with leased(self._client), self._client.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                # Relative expiry: the counter must outlive its window whatever Redis' own clock says; the
                # margin covers clock skew between API replicas.
                pipe.pexpire(key, reset_ms - now_ms + _SKEW_MARGIN_MS)
                count, _ = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis rate-limit update failed: {exc}") from exc
        return RateDecision(
            allowed=int(count) <= self.limit,
            limit=self.limit,
            remaining=max(self.limit - int(count), 0),
            reset_ms=reset_ms,
            wait_s=math.ceil((reset_ms - now_ms) / 1000),
        )
