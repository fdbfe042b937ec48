"""The Lua scripts of :mod:`activeusers.scripts`: each ``activeusers/lua`` file is one loaded :class:`Script`, Redis
loads each under the SHA-1 the clients call it by, ``set_bits.lua`` states the sizes scripts.py states, and the
numbering and names scripts against the real Redis (and the real Redis Cluster): dense numbers, the names list
appended to in the same call only while it is aligned with the ids hash, and ``append_names.lua``'s refusals."""

from __future__ import annotations

import hashlib
import re
from datetime import date
from typing import Any

import pytest
import redis
import redis.cluster

from activeusers import scripts
from activeusers.keys import SLOTS, KeySchema
from activeusers.scripts import APPEND_NAMES, NUMBER_USERS, UNION_COUNTS, Script

DAY1, DAY2, DAY3 = date(2031, 6, 1), date(2031, 6, 2), date(2031, 6, 3)
ALL = {name: value for name, value in vars(scripts).items() if isinstance(value, Script)}


def test_every_lua_file_is_one_script() -> None:
    files = sorted(path.stem for path in scripts.LUA_DIR.glob("*.lua"))
    assert files == [
        "append_names",
        "clear_bits",
        "first_days",
        "forget_users",
        "number_users",
        "register_values",
        "restore_users",
        "set_bits",
        "union_counts",
    ]
    assert sorted(ALL) == sorted(name.upper() for name in files)
    for name, script in ALL.items():
        assert script.source == (scripts.LUA_DIR / f"{name.lower()}.lua").read_text(encoding="utf-8")
        assert script == Script.named(name.lower())


def test_a_script_is_called_by_the_sha1_of_its_source() -> None:
    for script in ALL.values():
        assert script.sha == hashlib.sha1(script.source.encode()).hexdigest()
    assert len({script.sha for script in ALL.values()}) == len(ALL)
    assert Script("return 1").sha == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"  # SHA1("return 1"), as Redis has it


def test_set_bits_states_the_sizes_of_scripts_py() -> None:
    source = (scripts.LUA_DIR / "set_bits.lua").read_text(encoding="utf-8")
    found = re.findall(r"^local HEADROOM_MIN_BITS, HEADROOM_SHARE, COUNTERS_BYTES = (\d+), (\d+), (\d+)$", source, re.M)
    assert found == [(str(scripts.HEADROOM_MIN_BITS), str(scripts.HEADROOM_SHARE), str(scripts.COUNTS_BYTES))]
    assert scripts.COUNTS_BYTES == 4 * SLOTS == 104  # 26 u32 counters


def test_redis_loads_every_script_under_its_sha(redis_client: redis.Redis) -> None:
    for name, script in ALL.items():
        assert redis_client.script_load(script.source) == script.sha, name
    assert redis_client.script_exists(*(script.sha for script in ALL.values())) == [True] * len(ALL)


def test_every_cluster_primary_loads_every_script(cluster_client: redis.cluster.RedisCluster) -> None:
    primaries = cluster_client.get_primaries()
    assert len(primaries) == 3
    for node in primaries:
        for name, script in ALL.items():
            assert node.redis_connection.script_load(script.source) == script.sha, (node.name, name)


# ---------------------------------------------------------------------------------------------- number_users.lua


@pytest.fixture
def keys(redis_prefix: str) -> KeySchema:
    return KeySchema(redis_prefix, "UTC", 4)


def bucket_keys(keys: KeySchema, bucket: int) -> tuple[str, str, str, str]:
    """The keys the numbering and names scripts take: the ids hash, the names list, when that list was begun, and
    the ids numbered while it was behind."""
    return keys.ids(bucket), keys.names(bucket), keys.names_made(bucket), keys.unlisted(bucket)


def number(client: Any, keys: KeySchema, bucket: int, *ids: str) -> list[int]:
    return list(client.evalsha(NUMBER_USERS.sha, 5, *bucket_keys(keys, bucket), keys.forgotten(bucket), *ids))


def append(client: Any, keys: KeySchema, bucket: int, start: int, *ids: str) -> Any:
    return client.evalsha(APPEND_NAMES.sha, 4, *bucket_keys(keys, bucket), start, *ids)


@pytest.fixture
def loaded(redis_client: redis.Redis) -> redis.Redis:
    for script in ALL.values():
        redis_client.script_load(script.source)
    return redis_client


def test_numbering_gives_a_repeated_id_one_number_and_lists_it_once(loaded: redis.Redis, keys: KeySchema) -> None:
    assert number(loaded, keys, 0, "a", "b", "a", "c", "b") == [0, 1, 0, 2, 1]
    assert number(loaded, keys, 0, "c", "d") == [2, 3]
    assert number(loaded, keys, 0, "d", "a") == [3, 0]  # only known ids: nothing written
    assert loaded.hgetall(keys.ids(0)) == {"a": "0", "b": "1", "c": "2", "d": "3"}
    assert loaded.lrange(keys.names(0), 0, -1) == ["a", "b", "c", "d"]
    assert number(loaded, keys, 1, "d", "é-ü") == [0, 1]  # another bucket numbers on its own
    assert loaded.lrange(keys.names(1), 0, -1) == ["d", "é-ü"]


def test_numbering_appends_only_to_a_list_holding_every_number_before(loaded: redis.Redis, keys: KeySchema) -> None:
    loaded.hset(keys.ids(0), mapping={"old-0": 0, "old-1": 1})  # numbered by a version without names lists
    assert number(loaded, keys, 0, "new-2", "old-0") == [2, 0]
    assert loaded.exists(keys.names(0)) == 0  # not started at number 2
    assert loaded.hgetall(keys.unlisted(0)) == {"2": "new-2"}  # kept for reindex instead
    loaded.rpush(keys.names(0), "old-0", "old-1", "new-2", "extra")  # longer than the hash: not aligned either
    assert number(loaded, keys, 0, "new-3") == [3]
    assert loaded.lrange(keys.names(0), 0, -1) == ["old-0", "old-1", "new-2", "extra"]
    loaded.rpop(keys.names(0))  # aligned again
    assert number(loaded, keys, 0, "new-4", "new-3", "new-5") == [4, 3, 5]
    assert loaded.lrange(keys.names(0), 0, -1) == ["old-0", "old-1", "new-2"]  # 3 is missing: still not aligned
    loaded.rpush(keys.names(0), "new-3")
    assert number(loaded, keys, 0, "new-6") == [6]
    assert loaded.lrange(keys.names(0), 0, -1) == ["old-0", "old-1", "new-2", "new-3"]  # 4, 5 missing
    assert append(loaded, keys, 0, 4, "new-4", "new-5", "new-6") == 7
    assert number(loaded, keys, 0, "new-7", "new-8") == [7, 8]
    names = loaded.lrange(keys.names(0), 0, -1)
    assert names == ["old-0", "old-1", "new-2", "new-3", "new-4", "new-5", "new-6", "new-7", "new-8"]
    assert {user: int(n) for user, n in loaded.hgetall(keys.ids(0)).items()} == {u: n for n, u in enumerate(names)}


def made(client: Any, keys: KeySchema, bucket: int) -> tuple[int, int] | None:
    """When ``bucket``'s names list was begun: Redis' TIME as "seconds.microseconds" (the microseconds as TIME
    gives them, not zero-padded), read back as (seconds, microseconds); None when never."""
    value = client.get(keys.names_made(bucket))
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)\.(0|[1-9]\d{0,5})", value)
    assert match, value
    return int(match[1]), int(match[2])


def redis_now(client: Any) -> tuple[int, int]:
    seconds, micros = client.time()
    return int(seconds), int(micros)


def test_the_numbering_that_begins_a_list_records_when(loaded: redis.Redis, keys: KeySchema) -> None:
    before = redis_now(loaded)
    number(loaded, keys, 0, "a", "b")
    begun = made(loaded, keys, 0)
    assert begun is not None and before <= begun <= redis_now(loaded)  # Redis' own clock, of that call
    assert loaded.ttl(keys.names_made(0)) == -1  # kept as long as the list
    number(loaded, keys, 0, "c")
    number(loaded, keys, 0, "a")
    assert made(loaded, keys, 0) == begun  # appended to, not begun: unchanged
    assert loaded.lrange(keys.names(0), 0, -1) == ["a", "b", "c"]
    # Lost with everything (a Redis restarted empty) and begun again: another time.
    loaded.delete(*bucket_keys(keys, 0))
    number(loaded, keys, 0, "c", "a")
    again = made(loaded, keys, 0)
    assert again is not None and again > begun
    assert loaded.lrange(keys.names(0), 0, -1) == ["c", "a"]


def test_a_numbering_that_lists_nothing_records_nothing(loaded: redis.Redis, keys: KeySchema) -> None:
    loaded.hset(keys.ids(0), mapping={"old-0": 0})  # numbered by a version without names lists
    assert number(loaded, keys, 0, "new-1") == [1]
    assert made(loaded, keys, 0) is None
    assert loaded.exists(keys.names(0)) == 0


def test_append_names_records_when_it_begins_a_list(loaded: redis.Redis, keys: KeySchema) -> None:
    loaded.hset(keys.ids(0), mapping={"a": 0, "b": 1, "c": 2})
    with pytest.raises(redis.ResponseError):
        append(loaded, keys, 0, 0, "b")  # refused: begins nothing
    assert made(loaded, keys, 0) is None
    assert append(loaded, keys, 0, 1, "b") == 0  # not at the list's end: begins nothing
    assert made(loaded, keys, 0) is None
    assert append(loaded, keys, 0, 0, "a") == 1
    begun = made(loaded, keys, 0)
    assert begun is not None
    assert append(loaded, keys, 0, 1, "b", "c") == 3
    assert number(loaded, keys, 0, "d") == [3]
    assert made(loaded, keys, 0) == begun
    assert loaded.lrange(keys.names(0), 0, -1) == ["a", "b", "c", "d"]


# ---------------------------------------------------------------------------------------------- append_names.lua


def test_append_names_takes_the_ids_the_numbering_kept_while_the_list_was_behind(
    loaded: redis.Redis, keys: KeySchema
) -> None:
    loaded.hset(keys.ids(0), mapping={"old-0": 0, "old-1": 1})  # numbered by a version without names lists
    assert number(loaded, keys, 0, "new-2", "new-3") == [2, 3]  # this version, while the list is behind
    assert number(loaded, keys, 0, "new-4") == [4]
    assert append(loaded, keys, 0, -1) == 0  # nothing kept at the list's end (number 0): nothing to take yet
    assert append(loaded, keys, 0, 0, "old-0", "old-1") == 5  # the scan's ids, then the kept ones that follow
    assert loaded.lrange(keys.names(0), 0, -1) == ["old-0", "old-1", "new-2", "new-3", "new-4"]
    assert loaded.exists(keys.unlisted(0)) == 0  # every kept id taken
    assert number(loaded, keys, 0, "new-5") == [5]  # aligned: the numbering appends itself again
    assert loaded.lrange(keys.names(0), 0, -1)[-1] == "new-5" and loaded.exists(keys.unlisted(0)) == 0


def test_append_names_takes_at_most_a_thousand_kept_ids_a_call(loaded: redis.Redis, keys: KeySchema) -> None:
    loaded.hset(keys.ids(0), mapping={"old-0": 0})
    kept = [f"new-{n}" for n in range(1, 2501)]
    for start in range(0, len(kept), 500):
        number(loaded, keys, 0, *kept[start : start + 500])
    assert append(loaded, keys, 0, 0, "old-0") == 1001  # old-0 and the first thousand kept
    assert append(loaded, keys, 0, -1) == 2001
    assert append(loaded, keys, 0, -1) == 2501
    assert loaded.lrange(keys.names(0), 0, -1) == ["old-0", *kept]
    assert loaded.exists(keys.unlisted(0)) == 0


def test_append_names_appends_at_the_lists_end_only(loaded: redis.Redis, keys: KeySchema) -> None:
    loaded.hset(keys.ids(0), mapping={"a": 0, "b": 1, "c": 2, "d": 3})
    assert append(loaded, keys, 0, 0, "a", "b") == 2
    assert append(loaded, keys, 0, 0, "a", "b") == 2  # another run got there first: the length, nothing added
    assert append(loaded, keys, 0, 3, "d") == 2  # past the end: a gap would misalign the list
    assert append(loaded, keys, 0, 1, "b", "c") == 2  # before the end: it would list b twice
    assert append(loaded, keys, 0, 2) == 2  # no ids: the length
    assert loaded.lrange(keys.names(0), 0, -1) == ["a", "b"]
    assert append(loaded, keys, 0, 2, "c", "d") == 4
    assert loaded.lrange(keys.names(0), 0, -1) == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("start", "ids", "refused"),
    [
        (0, ["b"], "b is not user number 0"),  # in the hash at another number
        (0, ["a", "c"], "c is not user number 1"),  # the first fits, the second does not: nothing appended
        (0, ["a", "a"], "a is not user number 1"),
        (0, ["a", "b", "zed"], "zed is not user number 2"),  # not numbered at all
    ],
)
def test_append_names_refuses_an_id_at_another_number(
    loaded: redis.Redis, keys: KeySchema, start: int, ids: list[str], refused: str
) -> None:
    loaded.hset(keys.ids(0), mapping={"a": 0, "b": 1, "c": 2})
    with pytest.raises(redis.ResponseError, match=f"^append_names: {refused}$"):
        append(loaded, keys, 0, start, *ids)
    assert loaded.exists(keys.names(0)) == 0  # checked before anything is appended


def test_append_names_on_the_cluster(cluster_client: redis.cluster.RedisCluster, cluster_prefix: str) -> None:
    keys = KeySchema(cluster_prefix, "UTC", 16)
    for bucket in range(16):  # every slot of the buckets: the hash and the list of one call share one
        node = cluster_client.get_node_from_key(keys.ids(bucket))
        assert node is cluster_client.get_node_from_key(keys.names(bucket))
        cluster_client.hset(keys.ids(bucket), mapping={f"u{bucket}-0": 0, f"u{bucket}-1": 1})
        assert node.redis_connection.script_load(APPEND_NAMES.source) == APPEND_NAMES.sha
        assert node.redis_connection.script_load(NUMBER_USERS.source) == NUMBER_USERS.sha
        assert append(cluster_client, keys, bucket, 0, f"u{bucket}-0", f"u{bucket}-1") == 2
        assert number(cluster_client, keys, bucket, f"u{bucket}-2", f"u{bucket}-0") == [2, 0]
        assert cluster_client.lrange(keys.names(bucket), 0, -1) == [f"u{bucket}-{n}" for n in range(3)]


# ---------------------------------------------------------------------------------------------- union_counts.lua


def test_union_counts_counts_distinct_bits_and_leaves_no_scratch(loaded: redis.Redis, keys: KeySchema) -> None:
    first, second, scratch = keys.day_bits(DAY1, 0), keys.day_bits(DAY2, 0), keys.scratch(0)
    for offset in (0, 5, 9):
        loaded.setbit(first, offset, 1)
    for offset in (5, 9, 700):
        loaded.setbit(second, offset, 1)
    missing = keys.day_bits(DAY3, 0)
    # groups: both days, the first alone, a day without a bitmap, both with the missing one
    args: list[int | str] = [scripts.UNION_TTL_S, 0, 2, "", 0, 1, "", 0, 1, "", 0, 3, ""]
    keys_ = [scratch, first, second, first, missing, first, second, missing]
    assert loaded.evalsha(UNION_COUNTS.sha, len(keys_), *keys_, *args) == [4, 3, 0, 4]
    assert not loaded.exists(scratch)
