"""Classification of polled records: pure logic, no services."""

from __future__ import annotations

from collections import namedtuple
from datetime import date

import orjson
import pytest

from activeusers.settings import Settings
from consumer.ingest import Classifier, slices_of
from tests.support.usersets import members

Record = namedtuple("Record", "topic partition offset key value")
TP = namedtuple("TP", "topic partition")

NOW_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def rec(offset: int, body: object, partition: int = 0) -> Record:
    value = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    return Record("events", partition, offset, b"k", value)


def classify(records: list[Record], **settings: object) -> object:
    classifier = Classifier(Settings(**settings))  # type: ignore[arg-type]
    polled: dict[TP, list[Record]] = {}
    for r in records:
        polled.setdefault(TP(r.topic, r.partition), []).append(r)
    return classifier.classify(slices_of(polled), NOW_MS)


def test_active_events_are_bucketed_by_their_own_time_in_the_zone():
    batch = classify(
        [
            rec(0, {"type": "login", "userId": "a", "ts": "2023-11-14T03:30:00.000Z"}),
            rec(1, {"type": "activity", "userId": "b", "ts": 1_699_932_600_000}),  # 2023-11-14T03:30Z
            rec(2, {"type": "logout", "userId": "a", "ts": "2023-11-14T05:10:00.000+01:00"}),
        ],
        activity_timezone="America/New_York",
    )
    assert dict(batch.user_sets.days) == {date(2023, 11, 13): {"a", "b"}}
    assert dict(batch.user_sets.hours) == {(date(2023, 11, 13), 22): {"a", "b"}, (date(2023, 11, 13), 23): {"a"}}
    assert batch.stored_events == 3
    assert batch.records == 3
    assert batch.user_sets.newest_event_ms == 1_699_935_000_000


def test_created_users_go_to_their_own_bucket():
    batch = classify([rec(0, {"type": "user.created", "userId": "n", "ts": "2023-11-10T12:00:00.000Z"})])
    assert dict(batch.user_sets.created) == {date(2023, 11, 10): {"n"}}
    assert not batch.user_sets.days


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"type": "message.sent", "userId": "a", "ts": NOW_MS}, "unknown_type"),
        ({"type": "login", "userId": "a", "ts": NOW_MS, "roles": ["anonymous"]}, "anonymous"),
        ({"type": "login", "userId": "a", "ts": NOW_MS - 31 * 86_400_000}, "too_old"),
    ],
)
def test_valid_but_uncounted_events_are_skipped_with_a_reason(body, reason):
    batch = classify([rec(0, body)], retention_days=30)
    assert batch.skipped == {reason: 1}
    assert not batch.user_sets
    assert not batch.dead_letters


def test_anonymous_with_another_role_is_counted():
    batch = classify([rec(0, {"type": "login", "userId": "a", "ts": NOW_MS, "roles": ["anonymous", "user"]})])
    assert batch.stored_events == 1


def test_future_events_beyond_the_skew_are_dead_lettered_and_within_it_stored():
    batch = classify(
        [
            rec(0, {"type": "login", "userId": "late", "ts": NOW_MS + 301_000}),
            rec(1, {"type": "login", "userId": "ok", "ts": NOW_MS + 299_000}),
        ],
        max_future_skew_s=300.0,
    )
    assert [(d.offset, d.reason) for d in batch.dead_letters] == [(0, "future_ts")]
    assert "301 s ahead" in batch.dead_letters[0].detail
    assert batch.stored_events == 1


def test_malformed_records_are_set_aside_and_the_rest_processed():
    batch = classify(
        [
            rec(0, b"nope"),
            rec(1, {"type": "login", "userId": "a", "ts": NOW_MS}),
            rec(2, None),
            rec(3, [1]),
        ]
    )
    reasons = [(d.offset, d.reason) for d in batch.dead_letters]
    assert reasons == [(0, "not_json"), (2, "empty"), (3, "not_object")]
    assert batch.stored_events == 1


def test_dead_letters_carry_their_origin_and_bytes_across_partitions():
    batch = classify(
        [
            rec(5, b"bad", partition=0),
            rec(6, {"type": "login", "userId": "a", "ts": NOW_MS}, partition=0),
            Record("events", 1, 9, None, None),
            rec(11, b"[1]", partition=1),
        ]
    )
    assert [(d.topic, d.partition, d.offset, d.key, d.value, d.reason) for d in batch.dead_letters] == [
        ("events", 0, 5, b"k", b"bad", "not_json"),
        ("events", 1, 9, None, None, "empty"),
        ("events", 1, 11, b"k", b"[1]", "not_object"),
    ]
    assert (batch.records, batch.stored_events) == (4, 1)


def test_slices_keep_offsets_as_a_range_when_consecutive_and_as_a_list_otherwise():
    polled = {
        TP("events", 0): [rec(3, b"a"), rec(4, b"b")],
        TP("events", 1): [],
        TP("events", 2): [rec(7, b"c", partition=2), rec(9, b"d", partition=2)],
    }
    slices = slices_of(polled)
    assert [(s.topic, s.partition, s.offsets, s.keys, s.values) for s in slices] == [
        ("events", 0, range(3, 5), [b"k", b"k"], [b"a", b"b"]),
        ("events", 2, [7, 9], [b"k", b"k"], [b"c", b"d"]),
    ]


def test_a_batch_deduplicates_users_per_bucket():
    records = [rec(i, {"type": "activity", "userId": f"u{i % 3}", "ts": NOW_MS - i}) for i in range(300)]
    batch = classify(records)
    assert batch.stored_events == 300
    assert members(batch.user_sets) == 6  # three users, one day bucket and one hour bucket


def test_indexed_properties_put_active_users_in_segments_and_bad_values_are_ignored_and_counted():
    ts = "2023-11-14T12:00:00.000Z"
    day = date(2023, 11, 14)
    batch = classify(
        [
            rec(0, {"type": "login", "userId": "a", "ts": ts, "properties": {"platform": "ios", "country": "DE"}}),
            rec(1, {"type": "activity", "userId": "a", "ts": ts, "properties": {"platform": "web"}}),
            rec(2, {"type": "activity", "userId": "b", "ts": ts, "properties": {"platform": 5, "app": "x"}}),
            rec(3, {"type": "activity", "userId": "c", "ts": ts, "properties": {"platform": ""}}),
            rec(4, {"type": "activity", "userId": "d", "ts": ts, "properties": {"platform": "x" * 65}}),
            rec(5, {"type": "activity", "userId": "e", "ts": ts, "properties": {"platform": None}}),
            rec(6, {"type": "activity", "userId": "f", "ts": ts, "properties": {"country": "FR"}}),
            rec(7, {"type": "activity", "userId": "g", "ts": ts, "properties": None}),
            rec(8, {"type": "user.created", "userId": "h", "ts": ts, "properties": {"platform": "ios"}}),
            rec(
                9, {"type": "login", "userId": "i", "ts": ts, "roles": ["anonymous"], "properties": {"platform": "ios"}}
            ),
            rec(10, {"type": "login", "userId": "j", "ts": ts, "properties": ["platform", "ios"]}),
            rec(11, {"type": "login", "userId": "k", "ts": ts, "properties": {"platform": "x" * 64}}),
            rec(12, {"type": "login", "userId": "l", "ts": ts, "properties": {"platform": "é" * 64}}),
            rec(13, {"type": "login", "userId": "m", "ts": ts, "properties": {"platform": ["ios"]}}),
        ]
    )
    assert dict(batch.user_sets.segments) == {
        (day, "platform", "ios"): {"a"},
        (day, "platform", "web"): {"a"},
        (day, "platform", "x" * 64): {"k"},
        (day, "platform", "é" * 64): {"l"},  # characters, not bytes
    }
    assert batch.ignored_values == 5
    assert batch.user_sets.days[day] == {"a", "b", "c", "d", "e", "f", "g", "k", "l", "m"}  # ignored values still count
    assert [letter.reason for letter in batch.dead_letters] == ["invalid_properties"]


def test_every_indexed_property_is_kept_and_the_others_ignored():
    ts = "2023-11-14T12:00:00.000Z"
    body = {"type": "login", "userId": "a", "ts": ts, "properties": {"platform": "ios", "country": "DE", "x": 1}}
    batch = classify([rec(0, body)], segment_properties="country,platform")
    assert set(batch.user_sets.segments) == {
        (date(2023, 11, 14), "platform", "ios"),
        (date(2023, 11, 14), "country", "DE"),
    }
    assert batch.ignored_values == 0


def test_no_property_is_kept_when_none_is_indexed():
    body = {"type": "login", "userId": "a", "ts": "2023-11-14T12:00:00.000Z", "properties": {"platform": "ios"}}
    batch = classify([rec(0, body)], segment_properties="none")
    assert batch.user_sets.days[date(2023, 11, 14)] == {"a"}
    assert not batch.user_sets.segments and batch.ignored_values == 0
