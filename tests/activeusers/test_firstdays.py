"""Which first-day calls a writer sends: only users whose recorded first day may still move earlier (pure logic;
the script itself is tested against Redis in test_first_days.py)."""

from __future__ import annotations

from datetime import date

from activeusers.firstdays import FirstDayCalls
from activeusers.keys import KeySchema, day_number
from activeusers.packed import BITS_CHUNK, NUMBER_BITS, chunks

KEYS = KeySchema("t:", "UTC", 4)
DAY = date(2030, 6, 10)


def packed(bucket: int, number: int) -> int:
    return bucket << NUMBER_BITS | number


def numbers_sent(calls: FirstDayCalls, day: date, users: list[int]) -> list[tuple[int, list[int]]]:
    """(day number, numbers) of every call made for ``users`` on ``day``."""
    found = []
    for _, command in calls.calls(day, users, lambda key: 0):
        args = command.split(b"\r\n")[2::2]  # RESP: the count, then each length and argument
        found.append((int(args[7]), [int(n) for n in args[10].split()]))
    return found


def test_unknown_users_are_sent_then_known_ones_only_for_an_earlier_day() -> None:
    calls = FirstDayCalls(KEYS)
    users = [packed(0, 5), packed(0, 7), packed(3, 1)]
    assert numbers_sent(calls, DAY, users) == [(day_number(DAY), [5, 7]), (day_number(DAY), [1])]
    calls.recorded()
    assert numbers_sent(calls, DAY, users) == []
    assert numbers_sent(calls, date(2030, 6, 11), users) == []
    assert numbers_sent(calls, date(2030, 6, 9), users[:1]) == [(day_number(date(2030, 6, 9)), [5])]


def test_calls_that_may_have_failed_teach_nothing() -> None:
    calls = FirstDayCalls(KEYS)
    assert numbers_sent(calls, DAY, [packed(1, 2)]) == [(day_number(DAY), [2])]
    calls.dropped()
    calls.recorded()
    assert numbers_sent(calls, DAY, [packed(1, 2)]) == [(day_number(DAY), [2])]


def test_clear_forgets_what_was_recorded() -> None:
    calls = FirstDayCalls(KEYS)
    list(calls.calls(DAY, [packed(2, 9)], lambda key: 0))
    calls.recorded()
    calls.clear()
    assert numbers_sent(calls, DAY, [packed(2, 9)]) == [(day_number(DAY), [9])]


def test_the_expiry_is_asked_per_bucket_bitmap_and_calls_are_chunked() -> None:
    asked: list[str] = []
    calls = FirstDayCalls(KEYS)
    users = [packed(1, n) for n in range(BITS_CHUNK + 3)]
    sent = list(calls.calls(DAY, users, lambda key: asked.append(key) or 42))
    assert asked == [KEYS.tag(1) + KEYS.first_part(DAY)]
    assert len(sent) == 2 and all(key == KEYS.first_days(1) for key, _ in sent)
    assert [len(chunk) for chunk in chunks(list(range(BITS_CHUNK + 3)))] == [BITS_CHUNK, 3]


def test_a_user_of_several_days_of_a_batch_is_sent_once_for_the_earliest() -> None:
    calls = FirstDayCalls(KEYS)
    earlier, later = date(2030, 6, 9), DAY
    assert numbers_sent(calls, earlier, [packed(0, 5)]) == [(day_number(earlier), [5])]
    assert numbers_sent(calls, later, [packed(0, 5), packed(0, 6)]) == [(day_number(later), [6])]


def test_dropping_restores_what_was_known_before() -> None:
    calls = FirstDayCalls(KEYS)
    numbers_sent(calls, DAY, [packed(0, 5)])
    calls.recorded()
    earlier = date(2030, 6, 1)
    assert numbers_sent(calls, earlier, [packed(0, 5), packed(0, 6)]) == [(day_number(earlier), [5, 6])]
    calls.dropped()
    assert numbers_sent(calls, date(2030, 6, 5), [packed(0, 5), packed(0, 6)]) == [
        (day_number(date(2030, 6, 5)), [5, 6])
    ]
    calls.recorded()
    assert numbers_sent(calls, DAY, [packed(0, 5), packed(0, 6)]) == []


def test_users_are_sent_per_bucket_in_ascending_numbers() -> None:
    calls = FirstDayCalls(KEYS)
    users = [packed(2, 9), packed(0, 7), packed(2, 1), packed(0, 3)]
    assert numbers_sent(calls, DAY, users) == [(day_number(DAY), [3, 7]), (day_number(DAY), [1, 9])]
