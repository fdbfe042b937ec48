"""API tokens, stored as Rocket.Chat stores login tokens: only base64(SHA-256(token)) ever reaches Redis.

All records live in one Redis HASH (``KeySchema.tokens()``): field = hashed token, value = JSON record with a
short random id (what ``token list`` shows and ``token revoke`` takes), the user id, the granted permissions and
the creation time. The plain token is shown once, by ``token create``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from activeusers.coalescer import Coalescer, Pending
from activeusers.connections import REDIS_ERRORS, AsyncClient, leased, pack_command
from activeusers.errors import StoreUnavailable
from activeusers.keys import KeySchema

log = logging.getLogger(__name__)

# 32 random bytes: 43 URL-safe characters, like Rocket.Chat's login tokens.
TOKEN_BYTES = 32
ID_BYTES = 4
# Parsed token records an API process keeps (by their stored bytes, not by token: see TokenStore.lookup).
PARSED_RECORDS = 4096


def hash_token(token: str) -> str:
    """Standard base64 (with padding, 44 chars) of the SHA-256 of the token's UTF-8 bytes."""
    digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """What is stored about one token (never the token itself)."""

    id: str
    user_id: str
    permissions: tuple[str, ...]
    created_ms: int

    def to_json(self) -> bytes:
        """The stored form."""
        return orjson.dumps(
            {"id": self.id, "userId": self.user_id, "permissions": list(self.permissions), "createdAt": self.created_ms}
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> TokenRecord:
        """Parse the stored form; raise ``ValueError`` when it is not one."""
        try:
            body: Any = orjson.loads(raw)
            record = cls(
                id=str(body["id"]),
                user_id=str(body["userId"]),
                permissions=tuple(str(p) for p in body["permissions"]),
                created_ms=int(body["createdAt"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a token record: {exc}") from None
        return record


class TokenStore:
    """Creates, finds, lists and revokes tokens in Redis; raises :class:`StoreUnavailable` on Redis errors.

    A lookup reads the token's record from Redis every time (a revoked token is refused at the next request); with
    a :class:`~activeusers.coalescer.Coalescer` that read goes with the other requests' small reads.
    """

    def __init__(self, client: AsyncClient, keys: KeySchema, coalescer: Coalescer | None = None) -> None:
        self._client = client
        self._key = keys.tokens()
        self._coalescer = coalescer or Coalescer(client)
        # Parsed records by their stored bytes: the same bytes always parse to the same record, and an API process
        # sees the same few tokens again and again (bounded: cleared when full).
        self._parsed: dict[bytes, TokenRecord | None] = {}

    async def create(self, user_id: str, permissions: tuple[str, ...], now_ms: int) -> tuple[str, TokenRecord]:
        """A new random token for ``user_id`` and its stored record."""
        taken = {record.id for record in await self.all()}
        token_id = secrets.token_hex(ID_BYTES)
        while token_id in taken:
            token_id = secrets.token_hex(ID_BYTES)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        record = TokenRecord(token_id, user_id, tuple(dict.fromkeys(permissions)), now_ms)
        try:
            async with leased(self._client):
                await self._client.hset(self._key, hash_token(token), record.to_json())
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis write failed: {exc}") from exc
        return token, record

    async def lookup(self, token: str) -> TokenRecord | None:
        """The record of a token, or ``None`` when it is unknown (or its stored record is unreadable)."""
        return await self.lookup_soon(token)

    def lookup_soon(self, token: str) -> Pending[TokenRecord | None]:
        """:meth:`lookup`, queued now (in this turn's batch of small reads) and awaited later."""
        command = (self._key, pack_command(("HGET", self._key, hash_token(token))))
        return Pending(self._coalescer.submit([command]), lambda replies: self._record(replies[0]))

    def _record(self, raw: bytes | None) -> TokenRecord | None:
        if raw is None:
            return None
        if raw in self._parsed:
            return self._parsed[raw]
        try:
            record: TokenRecord | None = TokenRecord.from_json(raw)
        except ValueError:
            log.warning("unreadable token record ignored")
            record = None
        if len(self._parsed) >= PARSED_RECORDS:
            self._parsed.clear()
        self._parsed[raw] = record
        return record

    async def all(self) -> list[TokenRecord]:
        """Every readable token record, oldest first."""
        return sorted((record for _, record in await self._records()), key=lambda r: (r.created_ms, r.id))

    async def revoke(self, token_id: str) -> bool:
        """Remove the token with this id; whether one existed."""
        return await self._remove([field for field, record in await self._records() if record.id == token_id]) > 0

    async def revoke_user(self, user_id: str) -> int:
        """Remove every token of ``user_id``; how many there were."""
        return await self._remove([field for field, record in await self._records() if record.user_id == user_id])

    async def _records(self) -> list[tuple[str, TokenRecord]]:
        try:
            async with leased(self._client):
                raw = await self._client.hgetall(self._key)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis read failed: {exc}") from exc
        found: list[tuple[str, TokenRecord]] = []
        for field, value in raw.items():
            try:
                found.append((field.decode() if isinstance(field, bytes) else field, TokenRecord.from_json(value)))
            except ValueError:
                log.warning("unreadable token record ignored")
        return found

    async def _remove(self, fields: list[str]) -> int:
        if not fields:
            return 0
        try:
            async with leased(self._client):
                removed: int = await self._client.hdel(self._key, *fields)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis write failed: {exc}") from exc
        return removed
