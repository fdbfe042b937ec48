"""The pure parts of ``bench/compare.py``: key kinds derived from a KeySchema, the baseline tree's entry-point
shim, and the sizing model (the measuring itself runs against the real Redis in the benchmark)."""

from __future__ import annotations

import re
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from memory import KindFigures, classify  # noqa: E402
from side import kinds  # noqa: E402
from sides import _entry_points_shim  # noqa: E402
from sizing import per_day, retention_of, scaled_day_bytes, scaled_once_bytes  # noqa: E402

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
