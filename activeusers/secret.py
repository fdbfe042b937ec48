"""Secret settings (passwords): values that ``repr`` and ``str`` never show."""

from __future__ import annotations

import hmac


class Secret:
    """A secret setting: ``repr`` and ``str`` never show it (``***``, or nothing when empty); :meth:`reveal`
    gives the value to the one client call that needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself (pass it to a client; never log or format it)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, len(self._value)))

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    def __str__(self) -> str:
        return "***" if self._value else ""

    def __getstate__(self) -> str:
        return self._value

    def __setstate__(self, state: str) -> None:
        self._value = state


NO_SECRET = Secret()
