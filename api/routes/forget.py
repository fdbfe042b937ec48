"""``POST /api/v1/active-users/forget``: erase users from the index for good (our extension; permission
``forget-users``). The body is ``{"userIds":[...]}``: 1 to MAX_IDS ids of 1 to MAX_ID_CHARS characters, repeated
ids counted once. Checks in the contract's order (401, 403, 429), then the body (400); the answer comes once the
erasure is complete and every API process' next read sees it (:class:`activeusers.erasure.Eraser`).
"""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from activeusers.events import MAX_USER_ID_CHARS
from api.auth import FORGET_USERS
from api.errors import ApiError
from api.responses import EXTRA_HEADERS, json_response
from api.state import ACCESS, ACTIVITY, METRICS

PATH: Final = "/api/v1/active-users/forget"
MAX_IDS: Final = 1000
MAX_ID_CHARS: Final = MAX_USER_ID_CHARS
# The largest valid body: every id's characters written as JSON's longest escape (a character outside the BMP is
# a 12-byte surrogate pair), with quotes, a comma and some white space each.
MAX_BODY_BYTES: Final = MAX_IDS * (MAX_ID_CHARS * 12 + 16) + 1024

NOT_JSON: Final = "The body must be JSON (UTF-8)"
NOT_AN_OBJECT: Final = 'The body must be a JSON object {"userIds":[...]} with no other key'
REPEATED_KEY: Final = "The body repeats the key userIds"
NOT_A_LIST: Final = "userIds must be an array of strings"
COUNT: Final = f"userIds must hold 1 to {MAX_IDS} ids"
ID_SHAPE: Final = f"userIds must hold strings of 1 to {MAX_ID_CHARS} characters"


class BadBody(ApiError):
    """The body is not ``{"userIds":[...]}`` as the contract says: 400 with what is wrong."""

    status = 400


async def forget(request: web.Request) -> web.Response:
    """Forget the body's user ids; answer ``{"forgotten":<distinct ids>,"success":true}``."""
    access, activity = request.app[ACCESS], request.app[ACTIVITY]
    granted = await access.admit(access.credentials(request.headers), FORGET_USERS)
    request[EXTRA_HEADERS] = granted.headers
    user_ids = user_ids_of(await request.read())
    done = await activity.forget(user_ids)
    request.app[METRICS].count_forgotten(done.users)
    return json_response({"forgotten": done.users, "success": True})


def user_ids_of(body: bytes) -> list[str]:
    """The user ids of a forget request's body, or :class:`BadBody` saying what is wrong with it."""
    try:
        parsed = json.loads(body.decode("utf-8"), object_pairs_hook=_no_repeats)
    except _Repeated:
        raise BadBody(REPEATED_KEY) from None
    except ValueError:  # invalid UTF-8 or JSON (json.JSONDecodeError is a ValueError)
        raise BadBody(NOT_JSON) from None
    if not isinstance(parsed, dict) or set(parsed) != {"userIds"}:
        raise BadBody(NOT_AN_OBJECT)
    ids = parsed["userIds"]
    if not isinstance(ids, list):
        raise BadBody(NOT_A_LIST)
    if not 0 < len(ids) <= MAX_IDS:
        raise BadBody(COUNT)
    if not all(isinstance(user, str) and 0 < len(user) <= MAX_ID_CHARS for user in ids):
        raise BadBody(ID_SHAPE)
    return ids


class _Repeated(Exception):
    pass


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _Repeated
    return found
