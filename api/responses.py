"""Building HTTP answers with the exact headers the wire contract requires.

Rocket.Chat answers ``Content-Type: application/json`` without a charset parameter, and marks every API answer
as uncacheable; aiohttp's ``json_response`` would add ``; charset=utf-8`` and use the standard library encoder,
so every JSON answer of this service is built here instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson
from aiohttp import web

JSON_TYPE: Final = "application/json"
CSV_TYPE: Final = "text/csv; charset=utf-8"
NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Headers decided while handling a request (rate-limit state), added to whatever answer the request ends with.
EXTRA_HEADERS: Final = web.RequestKey("extra_headers", dict[str, str])


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A compact JSON answer (keys in insertion order) with the contract's headers."""
    return _response(orjson.dumps(payload), JSON_TYPE, status, headers)


def json_bytes_response(body: bytes) -> web.Response:
    """A 200 answer whose body is JSON already encoded (compact, keys in the contract's order)."""
    return _response(body, JSON_TYPE, 200, None)


def csv_body(lines: Iterable[str]) -> bytes:
    """A CSV body: each line ended by CRLF (RFC 4180), UTF-8."""
    return "".join(line + "\r\n" for line in lines).encode()


def csv_bytes_response(body: bytes) -> web.Response:
    """A 200 UTF-8 CSV answer whose body is encoded already."""
    return _response(body, CSV_TYPE, 200, None)


def _response(body: bytes, content_type: str, status: int, headers: Mapping[str, str] | None) -> web.Response:
    # Setting Content-Type as a raw header (not content_type=) keeps aiohttp from appending a charset.
    merged = {"Content-Type": content_type, **NO_STORE}
    if headers:
        merged.update(headers)
    return web.Response(body=body, status=status, headers=merged)
