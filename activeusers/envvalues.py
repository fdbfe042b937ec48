"""One environment variable's text made a settings value: durations, numbers, booleans, secrets (from the
variable or a ``*_FILE``). :class:`~activeusers.settings.Settings` reads the environment once through these."""

from __future__ import annotations

import re
from collections.abc import Mapping

from activeusers.secret import Secret

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def secret_from(name: str, env: Mapping[str, str]) -> Secret | None:
    """The secret ``name`` from its variable or from the file ``NAME_FILE`` names (``None`` when neither is set)."""
    value, path = env.get(name, ""), env.get(name + "_FILE", "").strip()
    if value and path:
        raise ValueError(f"{name} and {name}_FILE are both set: give one")
    if not path:
        return Secret(value) if value else None
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"{name}_FILE={path!r}: cannot read it ({reason})") from None
    # Secret files usually end with a newline that is not part of the secret.
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ValueError(f"{name}_FILE={path!r}: the file is empty")
    return Secret(text)


def parse_duration(raw: str) -> float:
    """Parse ``300``, ``300s``, ``5m``, ``1.5h``, ``2d`` or ``250ms`` into seconds."""
    match = _DURATION.match(raw)
    if match is None:
        raise ValueError("expected a duration such as 300, 30s, 5m, 1h or 250ms")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_value(field_name: str, annotation: object, raw: str) -> object:
    """The value of settings field ``field_name`` (of type ``annotation``) from its variable's text ``raw``: a
    duration for a ``_s`` field, an int, float or bool by its type, else the stripped text."""
    if field_name.endswith("_s"):
        return parse_duration(raw)
    if annotation in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ValueError("expected a whole number") from None
    if annotation in (float, "float"):
        try:
            return float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
    if annotation in (bool, "bool"):
        try:
            return _BOOLEANS[raw.strip().lower()]
        except KeyError:
            raise ValueError("expected true or false") from None
    return raw.strip()
