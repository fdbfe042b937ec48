"""The consumer's metrics endpoint: it binds its port before anything else starts, and a taken port is one
line and exit code 2 (two consumers on one host with the same CONSUMER_METRICS_PORT)."""

from __future__ import annotations

import socket
import subprocess
import urllib.error
import urllib.request
import uuid

import orjson

from consumer.metrics import ConsumerMetrics, HealthServer
from tests.support.environment import REPO_ROOT
from tests.support.network import free_port, http_get
from tests.support.processes import ConsumerProcess, consumer_env
from tests.support.waiting import wait_until


def test_the_port_is_bound_at_construction_and_served_from_start():
    server = HealthServer("127.0.0.1", 0, ConsumerMetrics())
    try:
        with socket.socket() as probe:  # bound and listening before start(): a second bind must fail
            assert probe.connect_ex(("127.0.0.1", server.port)) == 0
        server.start(lambda: (True, {"member": "m"}))
        status, body = http_get(f"http://127.0.0.1:{server.port}/healthz")
        assert (status, orjson.loads(body)) == (200, {"status": "ok", "member": "m"})
    finally:
        server.close()


def test_health_and_metrics_are_never_cached():
    server = HealthServer("127.0.0.1", 0, ConsumerMetrics())
    try:
        server.start(lambda: (False, {"redis": False}))  # what the member knows: no Redis call behind it
        for path, status in (("/healthz", 503), ("/metrics", 200)):
            assert answer_headers(f"http://127.0.0.1:{server.port}{path}") == (status, "no-store")
    finally:
        server.close()


def answer_headers(url: str) -> tuple[int, str | None]:
    """Status and Cache-Control of a GET (error statuses included)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Cache-Control"]
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Cache-Control"]


def test_closing_a_server_that_never_started_releases_the_port():
    server = HealthServer("127.0.0.1", 0, ConsumerMetrics())
    port = server.port
    server.close()  # returns (a server never started must not wait for its serve loop)
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


def test_a_second_consumer_on_a_taken_metrics_port_is_one_line_and_exit_2(stack, topic, redis_prefix, tmp_path):
    name = topic(partitions=2)
    port = str(free_port())
    env = consumer_env(stack, name, redis_prefix, f"g-{uuid.uuid4().hex[:8]}", CONSUMER_METRICS_PORT=port)
    first = ConsumerProcess(env, tmp_path / "first.log")
    try:
        wait_until(lambda: _healthy(first, port), 60, "the first consumer did not become healthy: " + first.log_text())
        second = subprocess.run(
            ConsumerProcess.command("consume"),
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 2
        assert second.stdout == ""
        assert second.stderr == (
            f"active-users consume: CONSUMER_METRICS_PORT={port}: 127.0.0.1:{port} is already in use by another "
            "process; set CONSUMER_METRICS_PORT to a free port (0: any free port)\n"
        )
        assert _healthy(first, port)  # the first one is untouched
    finally:
        assert first.stop() == 0


def _healthy(process: ConsumerProcess, port: str) -> bool:
    assert process.process.poll() is None, process.log_text()
    try:
        return http_get(f"http://127.0.0.1:{port}/healthz", timeout_s=5)[0] == 200
    except OSError:
        return False


def test_every_consumer_metric_is_in_the_activeusers_namespace():
    names = [metric.name for metric in ConsumerMetrics().registry.collect()]
    assert len(names) >= 10
    assert all(name.startswith("activeusers_") and not name.startswith("activeusers_api_") for name in names), names
