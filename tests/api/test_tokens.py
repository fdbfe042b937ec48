"""Token storage on the real Redis: only hashes stored, lookup, listing, revocation; and authentication."""

from __future__ import annotations

import base64
import hashlib

import pytest
import redis.asyncio as aioredis

from activeusers.keys import KeySchema
from api.auth import VIEW_ENGAGEMENT_DASHBOARD, Principal, authenticate
from api.errors import Unauthorized
from api.tokens import TokenRecord, TokenStore, hash_token


def test_hash_is_rocket_chat_login_token_hash():
    assert hash_token("abc") == "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    token = "7rqk3PMWsLqcnZzSdnkhyaGnnSgt7ssbydBbaSA6TtX"
    assert hash_token(token) == base64.b64encode(hashlib.sha256(token.encode()).digest()).decode()
    assert len(hash_token(token)) == 44


def test_record_round_trip_and_rejects_garbage():
    record = TokenRecord("0a1b2c3d", "u1", (VIEW_ENGAGEMENT_DASHBOARD,), 1_700_000_000_000)
    assert TokenRecord.from_json(record.to_json()) == record
    for raw in (b"", b"[]", b"{}", b'{"id":"x","userId":"u","permissions":5,"createdAt":1}'):
        with pytest.raises(ValueError, match="not a token record"):
            TokenRecord.from_json(raw)


@pytest.fixture
async def store(redis_url, redis_prefix):
    client = aioredis.Redis.from_url(redis_url)
    yield TokenStore(client, KeySchema(redis_prefix, "UTC"))
    await client.aclose()


async def test_create_stores_only_the_hash(store, redis_client, redis_prefix):
    token, record = await store.create("u1", (VIEW_ENGAGEMENT_DASHBOARD, VIEW_ENGAGEMENT_DASHBOARD), 1234)
    assert len(token) >= 43
    stored = redis_client.hgetall(f"{redis_prefix}tokens")
    assert list(stored) == [hash_token(token)]
    assert token not in next(iter(stored.values()))
    assert record.permissions == (VIEW_ENGAGEMENT_DASHBOARD,)
    assert len(record.id) == 8
    assert await store.lookup(token) == record
    assert await store.lookup(token + "x") is None


async def test_list_and_revoke(store):
    _, first = await store.create("u1", (), 1)
    _, second = await store.create("u2", (), 2)
    _, third = await store.create("u2", (VIEW_ENGAGEMENT_DASHBOARD,), 3)
    assert await store.all() == [first, second, third]
    assert await store.revoke(first.id) is True
    assert await store.revoke(first.id) is False
    assert await store.revoke_user("u2") == 2
    assert await store.revoke_user("u2") == 0
    assert await store.all() == []


async def test_unreadable_records_are_ignored(store, redis_client, redis_prefix):
    _, record = await store.create("u1", (), 1)
    redis_client.hset(f"{redis_prefix}tokens", hash_token("broken"), "not json")
    assert await store.all() == [record]
    assert await store.lookup("broken") is None


async def test_authenticate(store):
    token, _ = await store.create("alice", (VIEW_ENGAGEMENT_DASHBOARD,), 1)
    assert await authenticate("alice", token, store) == Principal("alice", (VIEW_ENGAGEMENT_DASHBOARD,))
    for user_id, sent in [
        ("bob", token),
        ("alice", "nope"),
        ("", token),
        ("alice", ""),
        (None, token),
        ("alice", None),
    ]:
        with pytest.raises(Unauthorized):
            await authenticate(user_id, sent, store)
    # A prefix of the right user id is not the user id.
    with pytest.raises(Unauthorized):
        await authenticate("alic", token, store)
