"""A progress bar for long-running commands (replay, produce) on standard error."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


class ProgressBar:
    """A one-line progress bar on a terminal; periodic plain lines when the output is not a terminal."""

    def __init__(
        self, total: int, out: TextIO, clock: Callable[[], float] = time.monotonic, unit: str = "records"
    ) -> None:
        self._unit = unit
        self._total = total
        self._out = out
        self._clock = clock
        self._started = clock()
        self._last = -1.0
        self._tty = out.isatty()

    def update(self, done: int, *, final: bool = False) -> None:
        """Show ``done`` of the total (throttled: at most 10 times a second on a terminal, every 2 s otherwise)."""
        now = self._clock()
        if not final and now - self._last < (0.1 if self._tty else 2.0):
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        share = min(done / self._total, 1.0) if self._total else 1.0
        filled = int(share * 30)
        line = (
            f"[{'#' * filled}{'.' * (30 - filled)}] {share:6.1%} {done}/{self._total} {self._unit} "
            f"{done / elapsed:,.0f}/s {elapsed:,.1f}s"
        )
        if self._tty:
            self._out.write("\r" + line + ("\n" if final else ""))
        else:
            self._out.write(line + "\n")
        self._out.flush()
