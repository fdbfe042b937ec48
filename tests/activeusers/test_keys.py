"""The Redis key schema is a storage contract: these strings are pinned on purpose."""

from __future__ import annotations

from datetime import date

import fakeredis
import pytest

from activeusers.keys import KeySchema

KEYS = KeySchema("au:", "UTC")
NY = KeySchema("au:", "America/New_York")


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (KEYS.day(date(2024, 3, 10)), "au:day:UTC:2024-03-10"),
        (KEYS.day(date(2024, 2, 29)), "au:day:UTC:2024-02-29"),
        (KEYS.day(date(999, 1, 2)), "au:day:UTC:0999-01-02"),
        (NY.day(date(2024, 11, 3)), "au:day:America/New_York:2024-11-03"),
        (KEYS.hour(date(2024, 3, 10), 0), "au:hour:UTC:2024-03-10T00"),
        (KEYS.hour(date(2024, 3, 10), 7), "au:hour:UTC:2024-03-10T07"),
        (KEYS.hour(date(2024, 3, 10), 23), "au:hour:UTC:2024-03-10T23"),
        (NY.hour(date(2024, 11, 3), 1), "au:hour:America/New_York:2024-11-03T01"),
        (KEYS.new_users(date(2024, 1, 1)), "au:new:UTC:2024-01-01"),
        (NY.new_users(date(2023, 12, 31)), "au:new:America/New_York:2023-12-31"),
        (KEYS.tokens(), "au:tokens"),
        (KEYS.heartbeats(), "au:heartbeats"),
        (KEYS.heartbeat("host-1-4242"), "au:heartbeat:host-1-4242"),
        (KEYS.rate_limit("u1", 28_512_345), "au:ratelimit:u1:28512345"),
        (KEYS.rate_limit("a:b", 0), "au:ratelimit:a:b:0"),
        (KeySchema("", "UTC").day(date(2024, 1, 1)), "day:UTC:2024-01-01"),
        (KeySchema("tenant-7/", "Asia/Kathmandu").tokens(), "tenant-7/tokens"),
    ],
)
def test_key_strings(built: str, expected: str) -> None:
    assert built == expected


def test_the_zone_separates_buckets() -> None:
    day = date(2024, 3, 10)
    assert KEYS.day(day) != NY.day(day)
    assert KEYS.hour(day, 5) != NY.hour(day, 5)
    assert KEYS.new_users(day) != NY.new_users(day)
    assert KEYS.tokens() == NY.tokens()  # not per zone
    assert KEYS.heartbeats() == NY.heartbeats()
    assert KEYS.heartbeat("m") == NY.heartbeat("m")


def test_every_key_starts_with_the_prefix() -> None:
    keys = KeySchema("p1{x}:", "UTC")
    day = date(2024, 1, 1)
    built = [keys.day(day), keys.hour(day, 3), keys.new_users(day), keys.tokens(), keys.heartbeats()]
    built += [keys.rate_limit("u", 1), keys.heartbeat("m")]
    assert all(k.startswith("p1{x}:") for k in built)
    assert len(set(built)) == len(built)


@pytest.mark.parametrize(
    ("prefix", "pattern"),
    [
        ("au:", "au:*"),
        ("", "*"),
        ("a*b:", "a\\*b:*"),
        ("a?b:", "a\\?b:*"),
        ("t[1]:", "t\\[1\\]:*"),
        ("back\\slash:", "back\\\\slash:*"),
        ("all*?[]\\:", "all\\*\\?\\[\\]\\\\:*"),
        ("a^-{}:", "a^-{}:*"),
    ],
)
def test_pattern_escapes_glob_characters(prefix: str, pattern: str) -> None:
    assert KeySchema(prefix, "UTC").pattern() == pattern


@pytest.mark.parametrize("prefix", ["au:", "t[1]*?:", "x\\y:", "[a-z]:", "?:"])
def test_pattern_matches_exactly_the_prefix_in_redis(prefix: str) -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    keys = KeySchema(prefix, "UTC")
    mine = {keys.day(date(2024, 1, 1)), keys.tokens(), keys.hour(date(2024, 1, 1), 1)}
    decoys = {"au", "tx:day", "t1:tokens", "a:tokens", "xy:tokens", "x\\z:tokens", "b:x", "Q:tokens", "other"}
    decoys -= mine
    for key in mine | decoys:
        client.set(key, 1)
    assert set(client.scan_iter(match=keys.pattern())) == {k for k in mine | decoys if k.startswith(prefix)}
    assert set(client.scan_iter(match=keys.pattern())) >= mine
