"""The pure parts of ``bench/load.py``: answers by status from the service's metrics, counters, and py-spy's raw
samples summed by function (the measuring itself runs wrk against real processes in the benchmark)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from load import answered, by_status, counter, self_time

BEFORE = """# TYPE activeusers_api_requests_total counter
activeusers_api_requests_total{method="GET",route="/api/v1/active-users/summary",status="200"} 10.0
activeusers_api_requests_total{method="GET",route="/metrics",status="200"} 3.0
activeusers_api_redis_batches_total 7.0
"""
AFTER = """# TYPE activeusers_api_requests_total counter
activeusers_api_requests_total{method="GET",route="/api/v1/active-users/summary",status="200"} 1510.0
activeusers_api_requests_total{method="GET",route="/api/v1/active-users/summary",status="503"} 2.0
activeusers_api_requests_total{method="GET",route="/metrics",status="200"} 4.0
activeusers_api_requests_total{method="HEAD",route="/api/v1/active-users/summary",status="405"} 9.0
activeusers_api_redis_batches_total 107.0
activeusers_api_redis_batches_created 1.7e9
"""


def test_answers_of_a_run_by_status():
    summary = "/api/v1/active-users/summary"
    assert by_status(answered(BEFORE), answered(AFTER), summary) == {200: 1500, 503: 2}
    assert by_status(answered(AFTER), answered(AFTER), summary) == {}
    assert answered(AFTER)[("/metrics", 200)] == 4.0


def test_a_counter_is_read_by_its_exact_name():
    assert (
        counter(AFTER, "activeusers_api_redis_batches_total") - counter(BEFORE, "activeusers_api_redis_batches_total")
        == 100
    )
    assert counter(AFTER, "activeusers_api_redis_batches") == 0.0  # a prefix of another name is not it


def test_self_time_sums_each_function_s_own_samples():
    raw = [
        "main (x/cli.py:3);serve (api/server.py:9);write (asyncio/selector_events.py:1057) 30",
        "main (x/cli.py:3);summary (api/routes/summary.py:40) 10",
        "main (x/cli.py:3);write (asyncio/selector_events.py:1060) 10",
        "garbage line",
    ]
    assert self_time(raw, 2) == [("write (asyncio/selector_events.py)", 0.8), ("summary (api/routes/summary.py)", 0.2)]
    assert self_time([], 5) == []
