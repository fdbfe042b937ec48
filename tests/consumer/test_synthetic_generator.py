"""The event generator: deterministic per seed, and realistic in aggregate (rhythm, curve, heavy and new users)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from activeusers.days import DAY_MS
from activeusers.errors import MalformedEvent
from activeusers.events import decode_fields
from consumer.synthetic.generator import GeneratedRecord, Profile, generate, population

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MAX_BYTES = 16384


def events(records: list[GeneratedRecord]) -> list[dict[str, object]]:
    return [r.value for r in records if isinstance(r.value, dict)]


def ts_of(event: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(event["ts"]))


@pytest.fixture(scope="module")
def stream() -> list[GeneratedRecord]:
    return list(generate(Profile(users=1000, days=28), 7, NOW_MS, 40_000))


def test_same_seed_same_records_other_seed_other_records():
    profile = Profile(users=200, days=10, malformed_share=0.05)
    first = list(generate(profile, 3, NOW_MS, 3000))
    assert first == list(generate(profile, 3, NOW_MS, 3000))
    assert [r.encoded() for r in first] == [r.encoded() for r in generate(profile, 3, NOW_MS, 3000)]
    assert first != list(generate(profile, 4, NOW_MS, 3000))
    assert first != list(generate(profile, 3, NOW_MS - 1, 3000))


def test_exact_count_time_order_and_window(stream):
    assert len(stream) == 40_000
    stamps = [ts_of(e) for e in events(stream)]
    assert stamps == sorted(stamps)
    start = datetime.fromtimestamp((NOW_MS - 28 * DAY_MS) / 1000, tz=UTC)
    end = datetime.fromtimestamp(NOW_MS / 1000, tz=UTC)
    assert all(start <= s < end for s in stamps)


def test_every_record_follows_the_contract(stream):
    for record in stream:
        kind, user_id, _, _, _ = decode_fields(record.encoded(), MAX_BYTES)
        assert record.key == user_id
        assert kind in {"login", "activity", "logout", "user.created"}


def test_weekly_rhythm(stream):
    per_weekday = Counter(ts_of(e).weekday() for e in events(stream) if e["type"] != "user.created")
    weekday = sum(per_weekday[d] for d in range(5)) / 5
    weekend = (per_weekday[5] + per_weekday[6]) / 2
    assert weekend < 0.5 * weekday


def test_daily_curve(stream):
    per_hour = Counter(ts_of(e).hour for e in events(stream) if e["type"] != "user.created")
    assert per_hour[10] > 8 * per_hour[3]
    assert per_hour[14] > 2 * per_hour[20]


def test_heavy_users_send_more(stream):
    users = population(Profile(users=1000, days=28), 7, NOW_MS)
    heavy = {u.id for u in users if u.weight > 1}
    assert 50 <= len(heavy) <= 150  # about 10 %
    sent = Counter(e["userId"] for e in events(stream))
    heavy_mean = sum(sent[u] for u in heavy) / len(heavy)
    light_mean = sum(n for u, n in sent.items() if u not in heavy) / (1000 - len(heavy))
    assert heavy_mean > 4 * light_mean


def test_new_users_are_created_then_active_and_activity_grows(stream):
    created = {e["userId"]: ts_of(e) for e in events(stream) if e["type"] == "user.created"}
    assert len(created) == 200  # 20 % of 1000
    for event in events(stream):
        if event["type"] != "user.created" and event["userId"] in created:
            assert ts_of(event) >= created[str(event["userId"])]
    first_week = {e["userId"] for e in events(stream) if ts_of(e).day <= 10 and ts_of(e).month == 12}
    last_week = {e["userId"] for e in events(stream) if ts_of(e).day >= 25 and ts_of(e).month == 12}
    assert len(last_week & created.keys()) > 2 * len(first_week & created.keys())


def test_a_days_first_event_of_a_user_is_a_login(stream):
    seen: set[tuple[object, object]] = set()
    kinds = Counter()
    for event in events(stream):
        if event["type"] == "user.created":
            continue
        day = (event["userId"], ts_of(event).date())
        if day not in seen:
            assert event["type"] == "login"
            seen.add(day)
        kinds[event["type"]] += 1
    assert kinds["activity"] > 0 and kinds["logout"] > 0


def test_roles_include_some_anonymous_and_bots(stream):
    roles = Counter(tuple(e["roles"]) for e in events(stream) if "roles" in e)
    assert roles[("user",)] > roles[("anonymous",)] > 0
    assert roles[("bot",)] + roles[("user", "admin")] > 0


def test_malformed_share_and_every_malformed_record_is_rejected():
    records = list(generate(Profile(users=100, days=5, malformed_share=0.1), 11, NOW_MS, 5000))
    bad = [r for r in records if r.malformed]
    assert 400 <= len(bad) <= 600
    for record in bad:
        with pytest.raises(MalformedEvent):
            decode_fields(record.encoded(), MAX_BYTES)
    assert not any(r.malformed for r in generate(Profile(users=100, days=5), 11, NOW_MS, 5000))


def test_small_budgets_and_bad_profiles():
    assert list(generate(Profile(users=10, days=1), 1, NOW_MS, 0)) == []
    assert len(list(generate(Profile(users=1000, days=1), 1, NOW_MS, 5))) == 5
    with pytest.raises(ValueError, match="heavy_share"):
        list(generate(Profile(heavy_share=1.5), 1, NOW_MS, 10))
    with pytest.raises(ValueError, match="count"):
        list(generate(Profile(), 1, NOW_MS, -1))


def test_platforms_a_realistic_mix_some_users_on_two_and_nothing_else_changes():
    plain = list(generate(Profile(users=800, days=14), 5, NOW_MS, 20_000))
    with_platforms = list(generate(Profile(users=800, days=14, platforms=True), 5, NOW_MS, 20_000))
    assert all("properties" not in event for event in events(plain))
    counted = [e for e in events(with_platforms) if e["type"] != "user.created"]
    assert all(set(e["properties"]) == {"platform"} for e in counted)  # type: ignore[arg-type]
    assert [{k: v for k, v in e.items() if k != "properties"} for e in events(with_platforms)] == events(plain)
    shares = Counter(e["properties"]["platform"] for e in counted)  # type: ignore[index]
    assert set(shares) == {"web", "desktop", "android", "ios", "linux"}
    assert shares.most_common(1)[0][0] == "web" and shares["linux"] < shares["ios"]
    by_user_day: dict[tuple[object, str], set[object]] = {}
    for e in counted:
        by_user_day.setdefault((e["userId"], str(e["ts"])[:10]), set()).add(e["properties"]["platform"])  # type: ignore[index]
    assert sum(len(found) == 2 for found in by_user_day.values()) > 20  # users on two platforms in one day
    people = population(Profile(users=800, days=14, platforms=True), 5, NOW_MS)
    assert 0.08 < sum(len(user.platforms) == 2 for user in people) / len(people) < 0.25
