"""/healthz, /readyz, and the behaviour when Redis is down (503 JSON quickly, recovery without a restart)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time

import orjson
import pytest
import redis

from activeusers.heartbeats import Heartbeats
from activeusers.keys import KeySchema
from tests.support.environment import in_ci
from tests.support.waiting import wait_until

PATH = "/api/v1/engagement-dashboard/users/active-users?start=2026-03-01T00:00:00.000Z&end=2026-03-15T00:00:00.000Z"
UNAVAILABLE = b'{"success":false,"error":"Service unavailable: the data store cannot be reached. Try again shortly."}'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def beat(settings, redis_client, ts_ms: int, member: str = "consumer-1") -> None:
    Heartbeats(redis_client, KeySchema.of(settings), settings).beat(member, {"ts_ms": ts_ms}, ts_ms)


async def test_healthz(api):
    answer = await api.get("/healthz")
    assert (answer.status, answer.body) == (200, b'{"status":"ok"}')
    assert answer.headers["Content-Type"] == "application/json"


async def test_readyz_without_consumer(api):
    answer = await api.get("/readyz")
    assert answer.status == 503
    assert answer.body == (
        b'{"status":"unavailable","checks":{"redis":{"ok":true,"error":null},'
        b'"consumer":{"ok":false,"ageSeconds":null,"members":0}}}'
    )


async def test_readyz_with_a_fresh_consumer(api, redis_client, now_ms):
    beat(api.settings, redis_client, now_ms - 60_000, "old")
    beat(api.settings, redis_client, now_ms - 1_500, "fresh")
    answer = await api.get("/readyz")
    assert answer.status == 200
    assert answer.json() == {
        "status": "ok",
        "checks": {"redis": {"ok": True, "error": None}, "consumer": {"ok": True, "ageSeconds": 1.5, "members": 2}},
    }


async def test_readyz_with_a_stale_consumer(api, redis_client, now_ms):
    beat(api.settings, redis_client, now_ms - int(api.settings.consumer_stale_s * 1000) - 1)
    answer = await api.get("/readyz")
    assert answer.status == 503
    assert answer.json()["checks"]["consumer"]["ok"] is False
    assert answer.json()["checks"]["consumer"]["members"] == 1


async def test_redis_down_is_a_quick_503(make_api):
    app = await make_api(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.5)
    started = time.monotonic()
    answer = await app.get(PATH, {"X-User-Id": "u", "X-Auth-Token": "t"})
    assert (answer.status, answer.body) == (503, UNAVAILABLE)
    assert answer.headers["Content-Type"] == "application/json"
    ready = await app.get("/readyz")
    assert time.monotonic() - started < 5
    assert ready.status == 503
    checks = ready.json()["checks"]
    assert checks["redis"]["ok"] is False and "unreachable" in checks["redis"]["error"]
    assert checks["consumer"] == {"ok": False, "ageSeconds": None, "members": 0}
    assert (await app.get("/healthz")).status == 200


@pytest.mark.skipif(
    shutil.which("redis-server") is None and not in_ci(), reason="needs redis-server to start a private instance"
)
async def test_recovers_when_redis_returns(make_api, redis_prefix, tmp_path):
    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=port, socket_connect_timeout=0.2)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            wait_until(answers, 5, "redis-server did not start")
        finally:
            client.close()
        return server

    server = start()
    try:
        app = await make_api(redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout_s=0.5)
        headers = await app.token("admin-user-1")
        assert (await app.get(PATH, headers)).status == 200
        server.terminate()
        server.wait(10)
        assert (await app.get(PATH, headers)).body == UNAVAILABLE
        server = start()  # an empty Redis: the token is gone, so the answer is now a 401, not a 503
        again = await app.get(PATH, headers)
        assert again.status == 401
    finally:
        server.terminate()
        server.wait(10)


async def test_unexpected_errors_are_a_json_500(api, admin, monkeypatch):
    from activeusers.reader import ActivityReader

    async def broken(self, days):
        raise RuntimeError("boom: secret details")

    monkeypatch.setattr(ActivityReader, "named_bitmaps", broken)
    answer = await api.get(PATH, admin)
    assert (answer.status, answer.body) == (500, b'{"success":false,"error":"Internal server error"}')
    assert orjson.loads(answer.body)["success"] is False


def test_a_killed_consumer_stops_counting_when_its_heartbeat_expires(stack, topic, redis_prefix, tmp_path):
    """Two real consumers; one is SIGKILLed (no clean-up at all): /readyz stops counting it once its
    heartbeat expires (CONSUMER_STALE), while the survivor keeps the API ready."""
    import uuid

    from tests.support.network import http_get
    from tests.support.processes import ConsumerProcess, consumer_env, start_api

    name = topic(partitions=2)
    env = consumer_env(
        stack, name, redis_prefix, f"g-{uuid.uuid4().hex[:8]}", CONSUMER_HEARTBEAT="500ms", CONSUMER_STALE="3s"
    )
    consumers = [ConsumerProcess(env, tmp_path / f"consumer-{n}.log") for n in range(2)]
    api, base = start_api(env, tmp_path / "api.log")

    def consumer_check() -> dict:
        status, body = http_get(base + "/readyz")
        check = orjson.loads(body)["checks"]["consumer"]
        check["status"] = status
        return check

    try:
        wait_until(lambda: consumer_check()["members"] == 2, 60, "both consumers should heartbeat")
        consumers[0].kill()
        killed = time.monotonic()
        wait_until(lambda: consumer_check()["members"] == 1, 15, "the killed consumer should stop counting")
        assert time.monotonic() - killed < 3 + 5  # its heartbeat's time to live, plus a heartbeat and slack
        check = consumer_check()
        assert check["status"] == 200 and check["ok"] is True and check["members"] == 1
        assert consumers[1].stop() == 0  # a clean stop withdraws the heartbeat at once
        check = consumer_check()
        assert check == {"ok": False, "ageSeconds": None, "members": 0, "status": 503}
    finally:
        for consumer in consumers:
            if consumer.process.poll() is None:
                consumer.kill()
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=20)
