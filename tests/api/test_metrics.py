"""/metrics: requests by canonical route and status, a latency histogram, never a token or user id."""

from __future__ import annotations

import re
from datetime import date

from activeusers.keys import KeySchema, bucket_of
from activeusers.settings import Settings
from api.app import create_app
from api.metrics import ApiMetrics
from api.state import METRICS

PATH = "/api/v1/engagement-dashboard/users/active-users"


async def test_requests_by_route_and_status(api, admin):
    await api.get(f"{PATH}?start=2026-03-01T00:00:00.000Z&end=2026-03-02T00:00:00.000Z", admin)
    await api.get(f"{PATH}?start=bad&end=bad", admin)
    await api.get("/no/such/route?token=secret")
    answer = await api.get("/metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    text = answer.body.decode()
    assert f'activeusers_api_requests_total{{method="GET",route="{PATH}",status="200"}} 1.0' in text
    assert f'activeusers_api_requests_total{{method="GET",route="{PATH}",status="400"}} 1.0' in text
    assert 'activeusers_api_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert f'activeusers_api_request_duration_seconds_count{{route="{PATH}"}} 2.0' in text
    for secret in (admin["X-Auth-Token"], admin["X-User-Id"], "secret", "start=bad"):
        assert secret not in text


async def test_odd_methods_fold_into_one_label(api):
    for method in ("PROPFIND", "M-SEARCH"):
        answer = await api.client.request(method, "/healthz")
        assert answer.status == 405
    text = (await api.get("/metrics")).body.decode()
    assert 'activeusers_api_requests_total{method="OTHER",route="unmatched",status="405"} 2.0' in text
    assert "PROPFIND" not in text


async def test_the_day_cache_is_measured(api, admin, seed):
    seed({date(2026, 3, 14): {"a", "b"}})
    path = "/api/v1/active-users/summary?start=2026-03-01T00:00:00.000Z&end=2026-03-14T23:59:59.999Z"
    first = (await api.get("/metrics")).body.decode()
    assert (
        "activeusers_api_cache_entries 0.0" in first
        and 'activeusers_api_cache_lookups_total{result="hit"} 0.0' in first
    )
    await api.get(path, admin)
    await api.get(path, admin)  # the whole answer from the cache: one hit
    await api.get(path.replace("03-01", "03-02"), admin)  # another answer, of the 13 points cached
    text = (await api.get("/metrics")).body.decode()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("activeusers_api_cache"))
    assert float(lines['activeusers_api_cache_lookups_total{result="hit"}']) >= 14
    assert float(lines["activeusers_api_cache_entries"]) > 0 and float(lines["activeusers_api_cache_bytes"]) > 0


def test_each_app_has_its_own_registry():
    # Two apps in one process would raise "Duplicated timeseries" with a shared registry.
    first, second = create_app(Settings()), create_app(Settings())
    assert first[METRICS].registry is not second[METRICS].registry


def test_every_api_metric_is_in_the_activeusers_api_namespace():
    from api.daycache import DayCache
    from api.metrics import ApiMetrics

    names = [metric.name for metric in ApiMetrics(DayCache(1, 1)).registry.collect()]
    assert names and all(name.startswith("activeusers_api_") for name in names), names


async def test_the_user_ids_known_are_measured(api, admin, seed, redis_client):
    seed({date(2026, 3, 13): {"a", "b"}, date(2026, 3, 14): {"c", "d", "e"}})
    keys = KeySchema.of(api.settings)
    numbers = {
        user: (bucket_of(user, keys.buckets), int(redis_client.hget(keys.ids(bucket_of(user, keys.buckets)), user)))
        for user in "abcde"
    }
    # The ids a process fetches for a day: in each bucket, every number up to the highest its bits hold.
    reach = {}
    for user in "cde":
        bucket, number = numbers[user]
        reach[bucket] = max(reach.get(bucket, 0), number + 1)

    async def known() -> float:
        text = (await api.get("/metrics")).body.decode()
        (line,) = [line for line in text.splitlines() if line.startswith("activeusers_api_user_ids_known ")]
        return float(line.split(" ")[1])

    assert await known() == 0
    await api.get("/api/v1/active-users/summary?start=2026-03-01T00:00:00.000Z&end=2026-03-14T23:59:59.999Z", admin)
    assert await known() == 0  # counting reads no id
    await api.get(f"{PATH}?start=2026-03-14T00:00:00.000Z&end=2026-03-14T23:59:59.999Z", admin)
    assert await known() == sum(reach.values())
    await api.get(f"{PATH}?start=2026-03-13T00:00:00.000Z&end=2026-03-14T23:59:59.999Z", admin)
    assert await known() == 5


def test_latency_buckets_are_cumulative_and_hold_their_upper_bound():
    metrics = ApiMetrics()
    for seconds in (0.001, 0.0011, 0.7, 31.0):
        metrics.answered.observe("/r", "GET", 200, seconds)
    metrics.answered.observe("/r", "GET", 503, 0.0)
    text = metrics.render().decode()
    buckets = dict(
        re.findall(r'^activeusers_api_request_duration_seconds_bucket\{le="([^"]+)",route="/r"\} (\S+)$', text, re.M)
    )
    assert (buckets["0.001"], buckets["0.0025"], buckets["0.5"], buckets["1.0"], buckets["30.0"]) == (
        "2.0",  # 0.0 and 0.001 itself: a bucket holds its upper bound
        "3.0",
        "3.0",
        "4.0",
        "4.0",
    )
    assert buckets["+Inf"] == "5.0"
    assert 'activeusers_api_request_duration_seconds_count{route="/r"} 5.0' in text
    assert 'activeusers_api_requests_total{method="GET",route="/r",status="200"} 4.0' in text
    assert 'activeusers_api_requests_total{method="GET",route="/r",status="503"} 1.0' in text
