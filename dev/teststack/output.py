"""What the user sees: progress lines on stderr, failures as :class:`StackError`, a service log's tail."""

from __future__ import annotations

import sys
from pathlib import Path

LOG_TAIL_LINES = 40


class StackError(Exception):
    """A failure with a message meant for the user; ``main`` prints it and exits non-zero."""


def progress(message: str) -> None:
    """Print a progress line on stderr (stdout stays for results)."""
    print(f"[stack] {message}", file=sys.stderr, flush=True)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``path`` (empty when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def with_log_tail(message: str, log: Path) -> str:
    """``message`` followed by the tail of ``log``, for failures."""
    body = tail(log)
    if not body:
        return f"{message}\n(log {log} is empty or missing)"
    return f"{message}\n--- last {LOG_TAIL_LINES} lines of {log} ---\n{body}\n--- end of {log} ---"
