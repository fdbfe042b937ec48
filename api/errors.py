"""The API's own errors and the one middleware that turns every error into an HTTP answer.

Bodies are Rocket.Chat's, byte for byte (see ``docs/api.md``); anything unexpected becomes a JSON 500 and a log
line with the traceback, never a traceback on the wire.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from activeusers.errors import ActiveUsersError, StoreUnavailable
from api.responses import EXTRA_HEADERS, json_response

log = logging.getLogger(__name__)

LOGIN_REQUIRED: Final = "You must be logged in to do this."
UNAVAILABLE: Final = "Service unavailable: the data store cannot be reached. Try again shortly."
OVERLOADED: Final = "Service unavailable: too many requests in progress. Try again shortly."
ROCKETCHAT_UNREACHABLE: Final = "Rocket.Chat could not be reached to check the token"
# Seconds a client is asked to wait after a 503 (Retry-After): a Redis down or a process at its bound.
RETRY_AFTER_S: Final = 1
INTERNAL: Final = "Internal server error"


class ApiError(ActiveUsersError):
    """An error with a fixed HTTP status and Rocket.Chat-shaped body."""

    status: int = 500

    def body(self) -> dict[str, object]:
        """The JSON body, ``success`` first as Rocket.Chat writes error bodies."""
        return {"success": False, "error": str(self)}

    def headers(self) -> dict[str, str] | None:
        """Headers the answer carries beyond the contract's own (none by default)."""
        return None


class Unauthorized(ApiError):
    """No token, an unknown token, or a token of another user."""

    status = 401

    def __init__(self) -> None:
        super().__init__(LOGIN_REQUIRED)

    def body(self) -> dict[str, object]:
        """Rocket.Chat 7.x's body: the modern ``success/error`` pair plus the legacy ``status/message`` pair."""
        return {"success": False, "error": LOGIN_REQUIRED, "status": "error", "message": LOGIN_REQUIRED}


class Forbidden(ApiError):
    """The authenticated user lacks the permission the endpoint requires."""

    status = 403

    def __init__(self) -> None:
        super().__init__("User does not have the permissions required for this action [error-unauthorized]")


class ValidationError(ApiError):
    """A query parameter is invalid (``missing=False``) or a required one is absent (``missing=True``)."""

    status = 400

    def __init__(self, field: str, *, missing: bool) -> None:
        message = (
            f"Match error: Missing key '{field}'"
            if missing
            else f"Match error: Failed Match.Where validation in field {field}"
        )
        super().__init__(message)
        self.field = field
        self.missing = missing


class RateLimited(ApiError):
    """The user spent its request budget for the current window; the answer carries the limit's X-RateLimit-*
    headers like every answer of a limited request."""

    status = 429

    def __init__(self, wait_s: int, limit_headers: dict[str, str]) -> None:
        super().__init__(
            "Error, too many requests. Please slow down. You must wait "
            f"{wait_s} seconds before trying this endpoint again. [error-too-many-requests]"
        )
        self._limit_headers = limit_headers

    def headers(self) -> dict[str, str] | None:
        """The rate limit's ``X-RateLimit-*`` headers."""
        return self._limit_headers


class Overloaded(ApiError):
    """The process already has ``API_MAX_IN_FLIGHT`` data requests in progress: refused at once, before any work,
    so that the requests it has keep their speed (see :mod:`api.admission`)."""

    status = 503

    def __init__(self) -> None:
        super().__init__(OVERLOADED)

    def headers(self) -> dict[str, str] | None:
        """``Retry-After``, as for a Redis that is down."""
        return {"Retry-After": str(RETRY_AFTER_S)}


class RocketChatUnreachable(ApiError):
    """A token unknown here could not be checked against Rocket.Chat (unreachable, too slow, or a 5xx): refused,
    never let through, and worth retrying."""

    status = 503

    def __init__(self, reason: str) -> None:
        super().__init__(ROCKETCHAT_UNREACHABLE)
        self.reason = reason  # what happened instead of an answer, for the log and /readyz (never a header)

    def headers(self) -> dict[str, str] | None:
        """``Retry-After``, as for a Redis that is down."""
        return {"Retry-After": str(RETRY_AFTER_S)}


def error_response(exc: Exception) -> web.Response:
    """The HTTP answer for any exception a handler raised (the only place errors meet HTTP)."""
    if isinstance(exc, ApiError):
        return json_response(exc.body(), exc.status, exc.headers())
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable", extra={"error": str(exc)})
        return json_response({"success": False, "error": UNAVAILABLE}, 503, {"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(exc, web.HTTPException):
        # Router answers (404 unknown path, 405 wrong method, 413 too large...) keep their status and Allow header.
        kept = {name: exc.headers[name] for name in ("Allow",) if name in exc.headers}
        return json_response({"success": False, "error": exc.reason}, exc.status, kept)
    log.error("unhandled error", exc_info=exc)
    return json_response({"success": False, "error": INTERNAL}, 500)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error as JSON, and add the request's extra headers to whatever the answer is."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc)
    except Exception as exc:  # every failure must become an answer, never a dropped connection
        response = error_response(exc)
    extra = request.get(EXTRA_HEADERS)
    if extra:
        response.headers.update(extra)
    return response
