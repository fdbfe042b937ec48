"""The Users tab's windows and answers (:mod:`api.dashboard`): pure functions, explicit instants and counts."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from activeusers.days import days_between, hours_starting_in
from api.dashboard import (
    SLOT_HOURS,
    NewUsersWindow,
    by_time_of_day_answer,
    hourly_answer,
    hourly_window,
    new_users_answer,
    new_users_window,
    slot_groups,
    weekly_answer,
    weekly_days,
)
from api.dates import iso_ms

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def d(text: str) -> date:
    return date.fromisoformat(text)


def window(start: str, end: str, zone: ZoneInfo = UTC) -> NewUsersWindow:
    return new_users_window(iso_ms(start), iso_ms(end), zone)


# --- new-users: D and the two periods -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "zone", "expected"),
    [
        # Rocket.Chat's UI: whole days; D counts both end days.
        (
            "2023-02-01T00:00:00.000Z",
            "2023-02-09T23:59:59.999Z",
            UTC,
            NewUsersWindow(9, d("2023-02-01"), d("2023-02-09"), d("2023-01-22"), d("2023-01-31")),
        ),
        # Start mid-day: D is 2 over three calendar days.
        (
            "2023-02-01T12:00:00.000Z",
            "2023-02-03T06:00:00.000Z",
            UTC,
            NewUsersWindow(2, d("2023-02-01"), d("2023-02-03"), d("2023-01-29"), d("2023-01-31")),
        ),
        # D of 1 for a slightly reversed range within one day.
        (
            "2023-02-05T10:00:00.000Z",
            "2023-02-05T09:00:00.000Z",
            UTC,
            NewUsersWindow(1, d("2023-02-05"), d("2023-02-05"), d("2023-02-03"), d("2023-02-04")),
        ),
        # D of 0: more than a day reversed; the previous period is empty too.
        (
            "2023-02-05T10:00:00.000Z",
            "2023-02-04T09:00:00.000Z",
            UTC,
            NewUsersWindow(0, d("2023-02-05"), d("2023-02-04"), d("2023-02-05"), d("2023-02-04")),
        ),
        # Year end and leap day.
        (
            "2023-12-30T00:00:00.000Z",
            "2024-01-02T23:59:59.999Z",
            UTC,
            NewUsersWindow(4, d("2023-12-30"), d("2024-01-02"), d("2023-12-25"), d("2023-12-29")),
        ),
        (
            "2024-03-01T00:00:00.000Z",
            "2024-03-01T23:59:59.999Z",
            UTC,
            NewUsersWindow(1, d("2024-03-01"), d("2024-03-01"), d("2024-02-28"), d("2024-02-29")),
        ),
        # Berlin local days across spring forward (the week has 167 hours: still D = 7) and fall back.
        (
            "2023-03-19T23:00:00.000Z",
            "2023-03-26T21:59:59.999Z",
            BERLIN,
            NewUsersWindow(7, d("2023-03-20"), d("2023-03-26"), d("2023-03-12"), d("2023-03-19")),
        ),
        (
            "2023-10-28T22:00:00.000Z",
            "2023-10-29T22:59:59.999Z",
            BERLIN,
            NewUsersWindow(1, d("2023-10-29"), d("2023-10-29"), d("2023-10-27"), d("2023-10-28")),
        ),
        # New York: a month end inside EDT, and across fall back.
        (
            "2026-10-31T04:00:00.000Z",
            "2026-11-01T04:59:59.999Z",
            NEW_YORK,
            NewUsersWindow(2, d("2026-10-31"), d("2026-11-01"), d("2026-10-28"), d("2026-10-30")),
        ),
    ],
)
def test_new_users_window(start, end, zone, expected):
    assert window(start, end, zone) == expected


def test_new_users_window_of_the_widest_range_stays_in_the_calendar():
    wide = window("0000-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z")
    assert wide.limit > 3_600_000
    assert wide.previous_first == date.min
    assert window("9999-12-31T23:59:59.999Z", "0000-01-01T00:00:00.000Z").limit < 0


# --- new-users: the answer --------------------------------------------------------------------------------------


def test_new_users_answer_byte_for_byte():
    counts = {d("2023-02-09"): 2, d("2023-02-08"): 3, d("2023-02-05"): 1, d("2023-01-31"): 4, d("2023-01-22"): 1}
    counts[d("2023-01-21")] = 7  # before the previous period
    counts[d("2023-02-10")] = 9  # after the range
    answer = new_users_answer(window("2023-02-01T00:00:00.000Z", "2023-02-09T23:59:59.999Z"), counts, UTC)
    assert orjson.dumps(answer) == (
        b'{"days":[{"day":"2023-02-09T00:00:00.000Z","users":2},{"day":"2023-02-08T00:00:00.000Z","users":3},'
        b'{"day":"2023-02-05T00:00:00.000Z","users":1}],"period":{"count":6,"variation":1},'
        b'"yesterday":{"count":3,"variation":-1},"success":true}'
    )


def test_new_users_days_are_local_midnights_in_utc():
    counts = {d("2023-02-09"): 1, d("2023-03-26"): 1, d("2023-07-01"): 1}
    answer = new_users_answer(window("2023-02-01T00:00:00.000Z", "2023-07-31T00:00:00.000Z", BERLIN), counts, BERLIN)
    assert [day["day"] for day in answer["days"]] == [
        "2023-06-30T22:00:00.000Z",
        "2023-03-25T23:00:00.000Z",
        "2023-02-08T23:00:00.000Z",
    ]


def test_new_users_keeps_at_most_d_days_in_both_periods():
    counts = {d("2023-01-29") + timedelta(days=n): n + 1 for n in range(6)}  # 01-29..02-03: 1..6
    answer = new_users_answer(window("2023-02-01T12:00:00.000Z", "2023-02-03T06:00:00.000Z"), counts, UTC)
    # D = 2: 02-03 and 02-02 (not 02-01); the previous period 01-29..01-31 keeps 01-31 and 01-30.
    assert answer["days"] == [
        {"day": "2023-02-03T00:00:00.000Z", "users": 6},
        {"day": "2023-02-02T00:00:00.000Z", "users": 5},
    ]
    assert answer["period"] == {"count": 11, "variation": 11 - (3 + 2)}
    assert answer["yesterday"] == {"count": 5, "variation": 1}


def test_new_users_yesterday_outside_the_listed_days_is_zero():
    # D = 1 over two calendar days: only day(end) is listed, so "yesterday" counts 0 although it has data.
    counts = {d("2023-02-05"): 3, d("2023-02-06"): 2}
    answer = new_users_answer(window("2023-02-05T10:00:00.000Z", "2023-02-06T09:00:00.000Z"), counts, UTC)
    assert answer["days"] == [{"day": "2023-02-06T00:00:00.000Z", "users": 2}]
    assert answer["yesterday"] == {"count": 0, "variation": 2}


def test_new_users_yesterday_is_relative_to_end_across_a_leap_day():
    counts = {d("2024-02-29"): 4, d("2024-03-01"): 1}
    answer = new_users_answer(window("2024-02-20T00:00:00.000Z", "2024-03-01T23:59:59.999Z"), counts, UTC)
    assert answer["yesterday"] == {"count": 4, "variation": -3}


def test_new_users_d_of_one_in_a_reversed_day():
    counts = {d("2023-02-05"): 2, d("2023-02-04"): 1, d("2023-02-03"): 5}
    answer = new_users_answer(window("2023-02-05T10:00:00.000Z", "2023-02-05T09:00:00.000Z"), counts, UTC)
    assert answer["days"] == [{"day": "2023-02-05T00:00:00.000Z", "users": 2}]
    assert answer["period"] == {"count": 2, "variation": 1}
    assert answer["yesterday"] == {"count": 0, "variation": 2}


def test_new_users_d_of_zero_is_all_empty():
    counts = {d("2023-02-04"): 2, d("2023-02-05"): 1, d("2023-02-03"): 5}
    answer = new_users_answer(window("2023-02-05T10:00:00.000Z", "2023-02-04T09:00:00.000Z"), counts, UTC)
    assert orjson.dumps(answer) == (
        b'{"days":[],"period":{"count":0,"variation":0},"yesterday":{"count":0,"variation":0},"success":true}'
    )


# --- users-by-time-of-the-day-in-a-week -----------------------------------------------------------------------------


def test_by_time_of_day_order_and_zero_buckets():
    counts = {(d("2026-03-14"), 5): 1, (d("2026-03-14"), 23): 2, (d("2026-03-15"), 0): 3, (d("2026-03-15"), 7): 0}
    assert orjson.dumps(by_time_of_day_answer(counts)) == (
        b'{"week":[{"users":3,"hour":0,"day":15,"month":3,"year":2026},'
        b'{"users":2,"hour":23,"day":14,"month":3,"year":2026},'
        b'{"users":1,"hour":5,"day":14,"month":3,"year":2026}],"success":true}'
    )
    assert orjson.dumps(by_time_of_day_answer({})) == b'{"week":[],"success":true}'


# --- chat-busier/hourly-data ------------------------------------------------------------------------------------


def spans_of(start: str, zone: ZoneInfo):
    after, until, first, last = hourly_window(iso_ms(start), zone)
    return hours_starting_in(days_between(first, last), after, until, zone)


def test_hourly_window_is_the_24_hours_up_to_start():
    after, until, first, last = hourly_window(iso_ms("2026-03-15T12:00:00.000Z"), UTC)
    assert (until - after, first, last) == (86_400_000, d("2026-03-14"), d("2026-03-15"))


def test_slots_of_a_plain_day_pair_hours():
    spans = spans_of("2026-03-15T23:59:59.999Z", UTC)
    groups = slot_groups(spans)
    assert [[hour for _, hour in group] for group in groups] == [[h, h + 1] for h in SLOT_HOURS[::-1]][::-1]


def test_slots_of_a_mid_day_start_pair_hours_of_two_days():
    spans = spans_of("2026-03-15T12:30:00.000Z", UTC)
    groups = slot_groups(spans)
    assert groups[SLOT_HOURS.index(12)] == [(d("2026-03-14"), 13), (d("2026-03-15"), 12)]
    assert groups[SLOT_HOURS.index(0)] == [(d("2026-03-15"), 0), (d("2026-03-15"), 1)]


def test_slots_on_a_spring_forward_day_in_berlin():
    # The day's end: 23 buckets and the previous day's hour 23, so slot 22 holds three buckets, slot 2 one.
    spans = spans_of("2023-03-26T21:59:59.999Z", BERLIN)
    groups = slot_groups(spans)
    assert groups[SLOT_HOURS.index(22)] == [(d("2023-03-25"), 23), (d("2023-03-26"), 22), (d("2023-03-26"), 23)]
    assert groups[SLOT_HOURS.index(2)] == [(d("2023-03-26"), 3)]


def test_slots_on_a_fall_back_day_in_new_york():
    # 25 real hours: the 24 hours up to the day's end start after its hour 0, and hour 1 is one (long) bucket.
    spans = spans_of("2026-11-02T04:59:59.999Z", NEW_YORK)
    groups = slot_groups(spans)
    assert groups[SLOT_HOURS.index(0)] == [(d("2026-11-01"), 1)]
    assert sum(map(len, groups)) == 23


def test_hourly_answer_all_slots_once_any_has_users():
    assert orjson.dumps(hourly_answer([0] * 12)) == b'{"hours":[],"success":true}'
    assert orjson.dumps(hourly_answer([])) == b'{"hours":[],"success":true}'
    answer = orjson.dumps(hourly_answer([0] * 11 + [3]))
    assert answer == (
        b'{"hours":[{"users":0,"hour":22},{"users":0,"hour":20},{"users":0,"hour":18},{"users":0,"hour":16},'
        b'{"users":0,"hour":14},{"users":0,"hour":12},{"users":0,"hour":10},{"users":0,"hour":8},'
        b'{"users":0,"hour":6},{"users":0,"hour":4},{"users":0,"hour":2},{"users":3,"hour":0}],"success":true}'
    )


# --- chat-busier/weekly-data ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "zone", "first", "last"),
    [
        ("2024-03-01T05:00:00.000Z", UTC, "2024-02-23", "2024-03-01"),
        ("2023-12-31T23:30:00.000Z", BERLIN, "2023-12-25", "2024-01-01"),
        ("2023-12-31T23:30:00.000Z", UTC, "2023-12-24", "2023-12-31"),
        ("2026-03-08T04:59:59.999Z", NEW_YORK, "2026-02-28", "2026-03-07"),
        ("2026-03-08T05:00:00.000Z", NEW_YORK, "2026-03-01", "2026-03-08"),
    ],
)
def test_weekly_days_are_the_8_local_days_up_to_start(start, zone, first, last):
    assert weekly_days(iso_ms(start), zone) == (d(first), d(last))


def test_weekly_answer_newest_first_zero_days_omitted():
    counts = {d("2024-02-28"): 3, d("2024-02-29"): 0, d("2024-03-01"): 1}
    assert orjson.dumps(weekly_answer(counts)) == (
        b'{"month":[{"users":1,"day":1,"month":3,"year":2024},{"users":3,"day":28,"month":2,"year":2024}],'
        b'"success":true}'
    )
