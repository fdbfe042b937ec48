"""How a consumer process ends: on request within a bounded time, or on its own with a distinct exit code.

A stop request (SIGTERM, SIGINT, or the consumer itself after a fetch it cannot decode) starts one time budget
that every blocking step on the way out shares: finishing the batches in flight, the final commit, leaving the
group, stopping the store worker. Should the clean path still overrun (kafka-python blocked in a call that
does not return), a watchdog ends the process at ``STOP_DEADLINE_S`` after the request. Nothing is lost
either way: offsets are committed only for stored records.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

log = logging.getLogger(__name__)

# A stop request to the end of the process, at most (the watchdog's bound).
STOP_DEADLINE_S = 9.0
# The part of it the clean path may use; the rest is margin for noticing the request (a poll returns within
# half a second) and for the interpreter's own exit.
GRACE_S = 7.0

# Exit codes of `active-users consume` besides 0 (stopped on request) and 2 (invalid configuration).
EXIT_UNDECODABLE = 3  # a fetch the client cannot decode: unsupported codec, corrupt batch
EXIT_STOP_OVERRUN = 4  # the clean stop overran STOP_DEADLINE_S and the watchdog ended the process


class StopRequest(threading.Event):
    """An event set to ask for a stop, which remembers when it was first set so that the steps of the way out
    share one time budget (``remaining``). With ``deadline_s``, setting it also arms the watchdog."""

    def __init__(self, grace_s: float = GRACE_S, deadline_s: float | None = None) -> None:
        super().__init__()
        self._grace_s = grace_s
        self._deadline_s = deadline_s
        self._requested_at: float | None = None
        self._lock = threading.Lock()

    def set(self) -> None:
        """Request the stop (idempotent; the first request starts the budget and the watchdog)."""
        with self._lock:
            first = self._requested_at is None
            if first:
                self._requested_at = time.monotonic()
        super().set()
        if first and self._deadline_s is not None:
            watchdog = threading.Timer(self._deadline_s, _overrun, args=(self._deadline_s,))
            watchdog.name = "stop-watchdog"
            watchdog.daemon = True
            watchdog.start()

    def remaining(self, reserve_s: float = 0.0) -> float:
        """Seconds of the grace budget left for a step, keeping ``reserve_s`` for the steps after it (the whole
        budget before any request)."""
        with self._lock:
            requested_at = self._requested_at
        spent = 0.0 if requested_at is None else time.monotonic() - requested_at
        return max(0.0, self._grace_s - spent - reserve_s)


def _overrun(deadline_s: float) -> None:
    # Offsets are committed only after their records are stored, so ending here loses nothing; the group hands
    # this member's partitions on after its session times out, since it cannot leave cleanly.
    log.error("stop overran its deadline; exiting now", extra={"deadlineSeconds": deadline_s})
    sys.stderr.flush()
    os._exit(EXIT_STOP_OVERRUN)
