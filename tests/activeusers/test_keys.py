"""The Redis key schema is a storage contract: these strings (and the user buckets) are pinned on purpose."""

from __future__ import annotations

import zlib
from datetime import date

import fakeredis
import pytest
from redis.crc import key_slot

from activeusers.keys import KeySchema, bucket_of
from activeusers.settings import Settings

KEYS = KeySchema("au:", "UTC", 64)
NY = KeySchema("au:", "America/New_York", 64)


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (KEYS.old_day(date(2024, 3, 10)), "au:day:UTC:2024-03-10"),
        (KEYS.old_day(date(2024, 2, 29)), "au:day:UTC:2024-02-29"),
        (KEYS.old_day(date(999, 1, 2)), "au:day:UTC:0999-01-02"),
        (NY.old_day(date(2024, 11, 3)), "au:day:America/New_York:2024-11-03"),
        (KEYS.ids(17), "au:{64.17}:ids"),
        (KEYS.names(17), "au:{64.17}:names"),
        (KEYS.names(0), "au:{64.0}:names"),
        (KeySchema("", "UTC", 16384).names(16383), "{16384.16383}:names"),
        (NY.names(63), "au:{64.63}:names"),
        (KEYS.names_made(17), "au:{64.17}:namesmade"),
        (KeySchema("", "UTC", 16384).names_made(16383), "{16384.16383}:namesmade"),
        (KEYS.day_bits(date(2026, 12, 1), 17), "au:{64.17}:day:UTC:2026-12-01"),
        (KEYS.hour_bits(date(2026, 12, 1), 13, 17), "au:{64.17}:hour:UTC:2026-12-01T13"),
        (KEYS.hour_bits(date(2024, 3, 10), 0, 0), "au:{64.0}:hour:UTC:2024-03-10T00"),
        (NY.hour_bits(date(2024, 11, 3), 1, 63), "au:{64.63}:hour:America/New_York:2024-11-03T01"),
        (KEYS.new_bits(date(2026, 12, 1), 17), "au:{64.17}:new:UTC:2026-12-01"),
        (KEYS.counts(date(2026, 12, 1), 17), "au:{64.17}:counts:UTC:2026-12-01"),
        (KeySchema("au:", "UTC", 1).ids(0), "au:{1.0}:ids"),
        (KeySchema("", "UTC", 16384).day_bits(date(2024, 2, 29), 16383), "{16384.16383}:day:UTC:2024-02-29"),
        (KEYS.versions(), "au:versions:64:UTC"),
        (NY.derived(), "au:derived:64:America/New_York"),
        (KeySchema.derived_field("point", date(2024, 2, 29)), "point:2024-02-29"),
        (KeySchema.day_field(date(2024, 2, 29)), "2024-02-29"),
        (KEYS.old_hour(date(2024, 3, 10), 7), "au:hour:UTC:2024-03-10T07"),
        (KEYS.old_new_users(date(2024, 1, 1)), "au:new:UTC:2024-01-01"),
        (KEYS.tokens(), "au:tokens"),
        (KEYS.heartbeats(), "au:heartbeats"),
        (KEYS.heartbeat("host-1-4242"), "au:heartbeat:host-1-4242"),
        (KEYS.rate_limit("u1", 28_512_345), "au:ratelimit:u1:28512345"),
        (KEYS.rate_limit("a:b", 0), "au:ratelimit:a:b:0"),
        (KeySchema("", "UTC").old_day(date(2024, 1, 1)), "day:UTC:2024-01-01"),
        (KeySchema("tenant-7/", "Asia/Kathmandu").tokens(), "tenant-7/tokens"),
    ],
)
def test_key_strings(built: str, expected: str) -> None:
    assert built == expected


def test_the_zone_separates_buckets() -> None:
    day = date(2024, 3, 10)
    assert KEYS.old_day(day) != NY.old_day(day)
    assert KEYS.hour_bits(day, 5, 3) != NY.hour_bits(day, 5, 3)
    assert KEYS.new_bits(day, 3) != NY.new_bits(day, 3)
    assert KEYS.day_bits(day, 3) != KeySchema("au:", "UTC", 32).day_bits(day, 3)  # another bucket count
    assert KEYS.ids(3) == NY.ids(3)  # the numbering is per bucket, not per zone
    assert KEYS.names(3) == NY.names(3)  # and so is the way back from a number to its id
    assert KEYS.names(3) != KeySchema("au:", "UTC", 32).names(3)  # another bucket count: another index
    assert KEYS.tokens() == NY.tokens()  # not per zone
    assert KEYS.heartbeats() == NY.heartbeats()
    assert KEYS.heartbeat("m") == NY.heartbeat("m")


def test_every_key_starts_with_the_prefix() -> None:
    keys = KeySchema("p1:", "UTC")
    day = date(2024, 1, 1)
    built = [keys.old_day(day), keys.hour_bits(day, 3, 1), keys.new_bits(day, 1), keys.tokens(), keys.heartbeats()]
    built += [keys.rate_limit("u", 1), keys.heartbeat("m"), keys.ids(1), keys.names(1), keys.day_bits(day, 1)]
    assert all(k.startswith("p1:") for k in built)
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
    mine = {keys.old_day(date(2024, 1, 1)), keys.tokens(), keys.hour_bits(date(2024, 1, 1), 1, 2)}
    decoys = {"au", "tx:day", "t1:tokens", "a:tokens", "xy:tokens", "x\\z:tokens", "b:x", "Q:tokens", "other"}
    decoys -= mine
    for key in mine | decoys:
        client.set(key, 1)
    assert set(client.scan_iter(match=keys.pattern())) == {k for k in mine | decoys if k.startswith(prefix)}
    assert set(client.scan_iter(match=keys.pattern())) >= mine


@pytest.mark.parametrize("user_id", ["", "u1", "rYhzFRd2QZjNwAAXX", "é-ü", "x" * 300])
@pytest.mark.parametrize("buckets", [1, 7, 64, 16384])
def test_bucket_of_is_crc32_modulo_the_buckets(user_id: str, buckets: int) -> None:
    assert bucket_of(user_id, buckets) == zlib.crc32(user_id.encode()) % buckets
    assert 0 <= bucket_of(user_id, buckets) < buckets


def test_bucket_of_is_pinned_and_spreads_users() -> None:
    # Pinned: a change here renumbers every deployment's users (the index would need a reindex).
    assert [bucket_of(u, 64) for u in ("alice", "bob", "rYhzFRd2QZjNwAAXX")] == [
        zlib.crc32(b"alice") % 64,
        zlib.crc32(b"bob") % 64,
        zlib.crc32(b"rYhzFRd2QZjNwAAXX") % 64,
    ]
    sizes = [0] * 64
    for n in range(64_000):
        sizes[bucket_of(f"user-{n}", 64)] += 1
    assert min(sizes) > 800 and max(sizes) < 1200  # about 1000 each


def test_keys_of_one_bucket_share_one_hash_tag() -> None:
    day = date(2026, 12, 1)
    for bucket in (0, 17, 63):
        tagged = [KEYS.ids(bucket), KEYS.names(bucket), KEYS.names_made(bucket), KEYS.day_bits(day, bucket)]
        tagged += [KEYS.hour_bits(day, 9, bucket)]
        tagged += [KEYS.new_bits(day, bucket), KEYS.counts(day, bucket)]
        assert {key[key.index("{") : key.index("}") + 1] for key in tagged} == {f"{{64.{bucket}}}"}


def test_a_buckets_names_keys_share_the_slot_of_its_ids_hash_and_bitmaps() -> None:
    day = date(2026, 12, 1)
    for bucket in (0, 17, 63):
        keys = (KEYS.ids(bucket), KEYS.names(bucket), KEYS.names_made(bucket), KEYS.day_bits(day, bucket))
        assert len({key_slot(key.encode()) for key in keys}) == 1, bucket  # one script numbers and names atomically
    assert len({key_slot(KEYS.names(bucket).encode()) for bucket in range(64)}) > 32  # the buckets spread


@pytest.mark.parametrize("key", [KEYS.names(5), KEYS.names_made(5)])
def test_the_names_keys_are_no_pre_index_sets(key: str) -> None:
    assert (KEYS.old_day_of(key), KEYS.old_hour_of(key), KEYS.old_new_users_of(key)) == (None, None, None)
    assert key.startswith(KEYS.prefix) and not key.startswith(KEYS.prefix + "day:")


def test_the_names_keys_are_distinct_per_bucket_and_bucket_count() -> None:
    built = [schema.names(b) for schema in (KEYS, KeySchema("au:", "UTC", 32)) for b in range(32)]
    built += [schema.names_made(b) for schema in (KEYS, KeySchema("au:", "UTC", 32)) for b in range(32)]
    assert len(set(built)) == len(built)
    assert KEYS.names_made(3) == NY.names_made(3)  # per bucket, not per zone, like the list it dates


def test_schema_of_the_settings() -> None:
    keys = KeySchema.of(Settings(redis_key_prefix="x:", activity_timezone="Asia/Kathmandu", user_buckets=8))
    assert keys == KeySchema("x:", "Asia/Kathmandu", 8)
    assert KeySchema.of(Settings()).buckets == 16


@pytest.mark.parametrize(
    ("key", "day", "hour", "new"),
    [
        ("au:day:UTC:2024-02-29", date(2024, 2, 29), None, None),
        ("au:hour:UTC:2024-03-10T07", None, (date(2024, 3, 10), 7), None),
        ("au:hour:UTC:2024-03-10T23", None, (date(2024, 3, 10), 23), None),
        ("au:new:UTC:2023-12-31", None, None, date(2023, 12, 31)),
        ("au:hour:UTC:2024-03-10T24", None, None, None),
        ("au:hour:UTC:2024-03-10T7", None, None, None),
        ("au:day:UTC:2024-02-30", None, None, None),
        ("au:day:UTC:2024-02-29x", None, None, None),
        ("au:day:America/New_York:2024-02-29", None, None, None),  # another zone
        ("au:{64.1}:day:UTC:2024-02-29", None, None, None),  # a bitmap, not a set
        ("bu:day:UTC:2024-02-29", None, None, None),
    ],
)
def test_set_names_parse_back(key: str, day: date | None, hour: tuple[date, int] | None, new: date | None) -> None:
    assert (KEYS.old_day_of(key), KEYS.old_hour_of(key), KEYS.old_new_users_of(key)) == (day, hour, new)


def test_scan_patterns_of_the_sets() -> None:
    keys = KeySchema("a*:", "UTC")
    assert keys.old_day_pattern() == "a\\*:day:UTC:*"
    assert keys.old_hour_pattern() == "a\\*:hour:UTC:*"
    assert keys.old_new_users_pattern() == "a\\*:new:UTC:*"


def test_parts_in_a_bucket_are_the_bucket_keys() -> None:
    day = date(2024, 2, 29)
    parts = [KEYS.day_part(day), KEYS.hour_part(day, 7), KEYS.new_part(day), KEYS.counts_part(day)]
    want = [KEYS.day_bits(day, 5), KEYS.hour_bits(day, 7, 5), KEYS.new_bits(day, 5), KEYS.counts(day, 5)]
    assert KEYS.in_bucket(5, parts) == want
