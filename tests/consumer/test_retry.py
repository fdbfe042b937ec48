"""Retrying until done or stopped (pure logic)."""

from __future__ import annotations

from itertools import pairwise

import pytest

from consumer.retry import backoff_delays, until_done


class Flaky:
    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.calls = 0
        self.error = error

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error("down")


def test_retries_until_the_attempt_succeeds_and_reports_each_failure():
    attempt = Flaky(3)
    seen: list[str] = []
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return False

    assert until_done(attempt, (ConnectionError,), wait, lambda exc: seen.append(str(exc)), lambda: 0.5)
    assert attempt.calls == 4
    assert seen == ["down", "down", "down"]
    assert waits == [0.5, 0.5, 0.5]


def test_stops_without_success_when_asked():
    attempt = Flaky(10**9)
    assert not until_done(attempt, (ConnectionError,), lambda s: attempt.calls >= 2, lambda exc: None)
    assert attempt.calls == 2


def test_other_exceptions_propagate_instead_of_looping():
    with pytest.raises(ValueError):
        until_done(Flaky(1, ValueError), (ConnectionError,), lambda s: False, lambda exc: None)


def test_backoff_grows_to_its_cap_with_jitter():
    delay = backoff_delays(0.2, 5.0)
    values = [delay() for _ in range(10)]
    assert 0.16 <= values[0] <= 0.24
    assert all(4.0 <= v <= 6.0 for v in values[6:])
    assert all(b > a * 1.3 for a, b in pairwise(values[:5]))
