"""Retrying an action with capped exponential backoff until it succeeds or shutdown is requested."""

from __future__ import annotations

import random
from collections.abc import Callable

BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0


def backoff_delays(first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_MAX_S) -> Callable[[], float]:
    """A callable returning the next delay of a capped exponential backoff with +-20% jitter."""
    state = {"next": first}

    def delay() -> float:
        current = state["next"]
        state["next"] = min(cap, current * 2)
        return current * random.uniform(0.8, 1.2)

    return delay


def until_done(
    attempt: Callable[[], None],
    retry_on: tuple[type[BaseException], ...],
    wait_for_stop: Callable[[float], bool],
    on_failure: Callable[[BaseException], None],
    delays: Callable[[], float] | None = None,
) -> bool:
    """Call ``attempt`` until it returns (True) or ``wait_for_stop(delay)`` says to stop (False).

    Only the ``retry_on`` exceptions are retried; each failure is passed to ``on_failure`` first. Anything else
    propagates: a bug must not turn into an endless retry loop.
    """
    next_delay = delays or backoff_delays()
    while True:
        try:
            attempt()
        except retry_on as exc:
            on_failure(exc)
        else:
            return True
        if wait_for_stop(next_delay()):
            return False
