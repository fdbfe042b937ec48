"""Structured logging: one JSON object per line on standard error, one line per significant event."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Renders a record as ``{"ts":..., "level":..., "logger":..., "event":..., <extra fields>}``."""

    def format(self, record: logging.LogRecord) -> str:
        """Format one record as a compact JSON line."""
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                line.setdefault(key, value)  # an extra never replaces a core field
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class Throttle(logging.Filter):
    """Lets through at most one record per logger and level every ``interval_s`` seconds, counting the rest.

    kafka-python logs every failed reconnect, several per second per connection, while a broker is down; one
    line per interval says the same without drowning the service's own lines.
    """

    def __init__(self, interval_s: float = 30.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[tuple[str, int], float] = {}
        self._suppressed: dict[tuple[str, int], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether the record is the first of its logger and level in the current interval."""
        key = (record.name, record.levelno)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            record.suppressed = suppressed
        return True


def configure(level: str) -> None:
    """Send every logger's records, as JSON lines, to standard error at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kafka-python logs every connection attempt at INFO and every failed one at ERROR; our own lines say
    # what matters, its warnings and errors are kept but throttled.
    kafka = logging.getLogger("kafka")
    kafka.setLevel(max(logging.WARNING, root.level))
    kafka.filters[:] = [Throttle()]
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
