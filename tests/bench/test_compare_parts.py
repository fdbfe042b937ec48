"""The pure parts of ``bench/compare.py``: key kinds derived from a KeySchema, the baseline tree's entry-point
shim, the sizing model, the numbering's bytes per user and the comparison of the sides' bodies (the measuring
itself runs against the real Redis in the benchmark)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import orjson
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from baseline import _entry_points_shim, same_tree  # noqa: E402
from keykinds import KindFigures, classify  # noqa: E402
from memory import numbering_lines  # noqa: E402
from rowsamples import compare_bodies  # noqa: E402
from sizing import (  # noqa: E402
    is_numbering,
    numbered_users,
    per_day,
    retention_of,
    scaled_day_bytes,
    scaled_once_bytes,
    sizes,
)
from treescript import kinds  # noqa: E402

from activeusers.keys import KeySchema  # noqa: E402

DAY = date(2026, 2, 28)


def patterns(keys: KeySchema) -> list[tuple[str, re.Pattern[str]]]:
    return [(kind["name"], re.compile(kind["regex"])) for kind in kinds(keys)]


@pytest.mark.parametrize("prefix", ["au:", "bench-x.y:", "we*ird[1]:"])
def test_every_key_the_schema_builds_is_classified_as_its_method_with_its_day(prefix):
    keys = KeySchema(prefix, "Europe/Berlin")
    found = patterns(keys)
    built = {
        name: getattr(keys, name)
        for name in ("day", "day_bits", "hour_bits", "new_bits", "ids", "tokens", "heartbeat")
        if hasattr(keys, name)
    }
    samples = {"day": (DAY,), "day_bits": (DAY, 17), "hour_bits": (DAY, 13, 17), "new_bits": (DAY, 5)}
    samples |= {"ids": (17,), "tokens": (), "heartbeat": ("member-1",)}
    assert len(built) >= 4
    for name, method in built.items():
        kind, day = classify(method(*samples[name]), found)
        assert kind == name
        assert day == (DAY.isoformat() if DAY in samples[name] else None)


def test_a_key_of_no_method_is_other():
    assert classify("elsewhere:day:UTC:2026-01-01", patterns(KeySchema("au:", "UTC"))) == ("other", None)


def test_the_shim_carries_the_trees_own_entry_points(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "active-users"\n[project.scripts]\nactive-users = "activeusers.cli:main"\n'
        '[project.entry-points."active_users.commands"]\napi = "api.cli:register"\n'
    )
    _entry_points_shim(tmp_path)
    (info,) = tmp_path.glob("*.dist-info")
    text = (info / "entry_points.txt").read_text()
    assert "[console_scripts]\nactive-users = activeusers.cli:main" in text
    assert "[active_users.commands]\napi = api.cli:register" in text
    assert "Name: active-users" in (info / "METADATA").read_text()


def figures(kind: str, type_: str, keys: int, days: int, elements: int, used: int, payload: int) -> KindFigures:
    found = KindFigures(kind, type_, keys=keys, elements=elements, bytes=used, payload=payload)
    found.days = {f"2026-01-{d + 1:02d}" for d in range(days)}
    found.retention = Counter({45: keys})
    return found


def test_bitmaps_scale_with_numbered_users_and_keep_their_overhead_per_key():
    # 64 keys a day over 2 days, 100 bytes of overhead each, 1,000 bitmap bytes a day for 8,000 numbered users.
    bits = figures("day_bits", "string", keys=128, days=2, elements=0, used=128 * 100 + 2_000, payload=2_000)
    assert scaled_day_bytes(bits, dau=100, measured_dau=100, numbered_ratio=80, numbered=8_000) == 64 * 100 + 1_000
    assert scaled_day_bytes(bits, dau=1_000, measured_dau=100, numbered_ratio=80, numbered=8_000) == 64 * 100 + 10_000


def test_sets_scale_with_daily_active_users_and_hashes_with_numbered_users():
    sets = figures("day", "set", keys=2, days=2, elements=200, used=14_400, payload=0)
    assert scaled_day_bytes(sets, dau=1_000, measured_dau=100, numbered_ratio=5, numbered=500) == 72_000
    ids = figures("ids", "hash", keys=64, days=0, elements=500, used=40_000, payload=0)
    assert scaled_once_bytes(ids, dau=1_000, numbered_ratio=5) == 400_000
    assert per_day(ids, 90) == 40_000 / 90
    assert per_day(sets, 90) == 7_200
    assert retention_of(sets) == 45


def test_counters_per_bucket_and_day_keep_their_size_whatever_the_users():
    counts = figures("counts", "hash", keys=128, days=2, elements=256, used=13_312, payload=0)
    assert scaled_day_bytes(counts, dau=10_000_000, measured_dau=100, numbered_ratio=5, numbered=500) == 6_656


def test_per_bucket_kinds_are_marked_bucketed():
    found = {kind["name"]: kind["bucketed"] for kind in kinds(KeySchema("au:", "UTC"))}
    assert found["ids"] and found["day_bits"]
    assert not found["tokens"] and not found["versions"]
    if "names" in found:
        assert found["names"]


def numbering(kind: str, type_: str, elements: int, used: int) -> KindFigures:
    return KindFigures(kind, type_, bucketed=True, keys=16, elements=elements, bytes=used)


def test_the_names_list_scales_with_numbered_users_like_the_ids_hash_and_the_versions_hash_does_not():
    ids = numbering("ids", "hash", elements=500, used=36_000)
    names = numbering("names", "list", elements=500, used=10_000)
    versions = KindFigures("versions", "hash", keys=1, elements=90, bytes=3_000)
    bits = figures("day_bits", "string", keys=32, days=2, elements=200, used=32 * 100 + 200, payload=200)
    (small, big) = sizes([ids, names, versions, bits], measured_dau=100, users=999, scales=(100, 1_000))
    # Numbered users: the elements of one numbering kind (each holds one per user), not their sum, nor the users.
    assert small.numbered == 500 and big.numbered == 5_000
    assert small.numbering == 46_000 and big.numbering == 460_000
    assert small.fixed == big.fixed == 3_000
    assert big.total == big.index_kept + 460_000 + 3_000
    assert is_numbering(names) and not is_numbering(versions)
    assert numbered_users([versions], users=999) == 999


def test_a_tree_without_day_sets_has_no_set_bytes():
    ids = numbering("ids", "hash", elements=500, used=36_000)
    bits = figures("day_bits", "string", keys=32, days=2, elements=200, used=32 * 100 + 200, payload=200)
    (size,) = sizes([ids, bits], measured_dau=100, users=500, scales=(100,))
    assert size.sets_day == size.sets_kept == 0
    assert size.index_kept == (16 * 100 + 100) * 45


def test_numbering_lines_give_bytes_per_user_ever_seen_and_the_list_beside_the_hash():
    ids = numbering("ids", "hash", elements=500, used=36_000)
    names = numbering("names", "list", elements=500, used=9_000)
    (line,) = numbering_lines([ids, names], "new")
    assert "500 numbered" in line
    assert "`ids` (HASH" in line and "**72.00**" in line
    assert "`names` (LIST" in line and "**18.00** (0.25x the `ids` hash)" in line
    assert numbering_lines([KindFigures("versions", "hash", keys=1, elements=9, bytes=90)]) == []


def element(day: int, users: list[str]) -> dict:
    return {"usersList": users, "users": len(users), "day": day, "month": 12, "year": 2026}


def body(*days: dict) -> bytes:
    return orjson.dumps({"month": list(days), "success": True})


def test_active_users_bodies_are_compared_on_the_days_both_list():
    full = body(element(7, ["a", "b"]), element(6, ["c"]), element(5, ["d"]))
    fewer_days = body(element(7, ["a", "b"]), element(6, ["c"]))
    assert compare_bodies([full, full], by_day=True) == (True, "3 days both list")
    assert compare_bodies([full, fewer_days], by_day=True) == (True, "2 days both list (listed: 3 / 2)")
    other_ids = body(element(7, ["a", "x"]), element(6, ["c"]))
    assert compare_bodies([full, other_ids], by_day=True)[0] is False
    assert compare_bodies([full, body(element(1, ["a"]))], by_day=True)[0] is False  # no day in common
    assert compare_bodies([full, fewer_days])[0] is False  # whole bodies
    assert compare_bodies([b'{"a": 1, "b": 2}', b'{"b":2,"a":1}']) == (True, "")


def test_a_clean_clone_is_the_same_tree_as_its_head_and_a_change_makes_it_differ(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(Path(__file__).resolve().parents[2]), str(clone)], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, stdout=subprocess.PIPE, text=True, check=True)
    parent = subprocess.run(["git", "rev-parse", "HEAD~1"], cwd=clone, stdout=subprocess.PIPE, text=True, check=True)
    assert same_tree(head.stdout.strip(), clone)
    assert not same_tree(parent.stdout.strip(), clone)
    readme = clone / "README.md"
    readme.write_text(readme.read_text() + "\nchanged\n")
    assert not same_tree(head.stdout.strip(), clone)
