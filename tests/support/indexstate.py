"""Reading the index back: what Redis holds, decoded into user ids and checked for consistency on the way."""

from __future__ import annotations

import struct
from typing import Any

from activeusers.keys import KeySchema, bucket_of
from tests.support.oracle import index_label


def bucket_state(client: Any, keys: KeySchema) -> dict[str, set[str]]:
    """The index decoded back into user ids: every bitmap of a day, hour, creation day or segment (a property's
    value: ``index:seg:<property>:<value id>:<day>``), its bits mapped through its bucket's names list and the
    buckets unioned (labelled by :func:`index_label`). Asserts that no day set is
    left, that every bucket's numbering is dense, that its names list is exactly the ids hash reversed (number n
    -> the id numbered n), that every bit set names a numbered user, and that every counter of the counts keys
    equals the bits of its bitmap. First days are left out (``tests/support/cohorts.py`` reads them), and so are
    the API's kept unions: they are derived, labelled by the versions of their days."""
    found: dict[str, set[str]] = {}
    assert not list(client.scan_iter(match=keys.old_day_pattern(), count=1000)), "a day set was written"
    counted: dict[tuple[str, str], int] = {}
    bitmaps: dict[tuple[str, str], int] = {}
    users: list[dict[int, str]] = []
    for bucket in range(keys.buckets):
        numbers = {int(n): _text(u) for u, n in client.hgetall(keys.ids(bucket)).items()}
        assert sorted(numbers) == list(range(len(numbers))), f"bucket {bucket}: numbers not dense"
        # A forgotten user's field is its tombstone ("\0f:"/"\0r:" and a SHA-1), its names element "".
        listed = {n: "" if u.startswith("\0") else u for n, u in numbers.items()}
        assert all(bucket_of(u, keys.buckets) == bucket for u in listed.values() if u), f"bucket {bucket}: foreign id"
        names = [_text(u) for u in client.lrange(keys.names(bucket), 0, -1)]
        assert names == [listed[n] for n in range(len(numbers))], f"bucket {bucket}: names list is not the hash"
        users.append(dict(enumerate(names)))
    for key in client.scan_iter(match=keys.pattern(), count=1000):
        name = _text(key)
        tag = keys.prefix + "{"
        if not name.startswith(tag) or name.endswith(("}:ids", "}:names", "}:namesmade", "}:unlisted", "}:forgotten")):
            continue
        if name.startswith(("first:", "firstday:", "union:", "unionof:"), name.index("}") + 2):
            continue  # first days are read apart; kept unions are the API's copies made for reading, no counters
        bucket = int(name[len(tag) : name.index("}")].split(".")[1])
        kind, _, when = name[name.index("}") + 2 :].partition(":")
        when = when.removeprefix(keys.zone_name + ":")
        bits: bytes = client.execute_command("GET", name, NEVER_DECODE=True)
        if kind == "counts":
            counters = struct.unpack(">26I", bits.ljust(104, b"\0"))
            slots = [("hour", f"{when}T{hour:02d}") for hour in range(24)] + [("day", when), ("new", when)]
            for slot, count in zip(slots, counters, strict=True):
                counted[slot] = counted.get(slot, 0) + count
            continue
        if kind == "segcounts":  # a property's counters of a day: "#id" the bits of its value id's bitmap
            name, _, day = when.rpartition(":")
            for value, count in enumerate(struct.unpack(f">{len(bits) // 4}I", bits)):
                counted[("seg", f"{name}:{value}:{day}")] = counted.get(("seg", f"{name}:{value}:{day}"), 0) + count
            continue
        bitmaps[(kind, when)] = bitmaps.get((kind, when), 0) + sum(bin(byte).count("1") for byte in bits)
        decoded = found.setdefault(index_label(kind, when), set())
        for position, byte in enumerate(bits):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    number = position * 8 + bit
                    assert number in users[bucket], f"{name}: bit {number} names no user"
                    assert users[bucket][number], f"{name}: bit {number} is a forgotten user's"
                    decoded.add(users[bucket][number])
    assert {slot: n for slot, n in counted.items() if n} == {slot: n for slot, n in bitmaps.items() if n}, "counters"
    return {label: ids for label, ids in found.items() if ids}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
