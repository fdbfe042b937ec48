"""A stop request ends a consumer within a bounded time, whatever Kafka, Redis or the store worker are doing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import orjson

from consumer.shutdown import EXIT_STOP_OVERRUN, STOP_DEADLINE_S, StopRequest
from tests.support.environment import REPO_ROOT
from tests.support.events import generate
from tests.support.network import free_port, http_get
from tests.support.processes import ConsumerProcess, consumer_env
from tests.support.topics import committed_offsets, produce
from tests.support.waiting import wait_until

BOUND_S = 10.0  # what the README promises: SIGTERM to exit


def test_the_budget_starts_at_the_first_request_and_keeps_reserves():
    stop = StopRequest(grace_s=5.0)
    assert stop.remaining() == 5.0 and stop.remaining(2.0) == 3.0
    stop.set()
    first = stop.remaining()
    assert 4.5 < first <= 5.0
    time.sleep(0.2)
    stop.set()  # a second request does not restart the budget
    assert stop.remaining() <= first - 0.2
    assert stop.remaining(10.0) == 0.0


def test_the_watchdog_ends_a_process_whose_stop_overruns():
    script = (
        "import time\n"
        "from activeusers.logs import configure\n"
        "from consumer.shutdown import StopRequest\n"
        "configure('INFO')\n"
        "StopRequest(deadline_s=0.5).set()\n"
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20, check=False
    )
    assert result.returncode == EXIT_STOP_OVERRUN
    assert time.monotonic() - started < 5
    line = orjson.loads(result.stderr.strip().splitlines()[-1])
    assert (line["event"], line["deadlineSeconds"]) == ("stop overran its deadline; exiting now", 0.5)


def test_no_watchdog_unless_asked():
    stop = StopRequest(grace_s=0.1)
    stop.set()
    time.sleep(STOP_DEADLINE_S / 30)
    assert stop.remaining() == 0.0  # and the test process is still alive


def _sigterm(member: ConsumerProcess) -> tuple[int, float]:
    started = time.monotonic()
    member.process.send_signal(signal.SIGTERM)
    code = member.stop(timeout_s=30)
    return code, time.monotonic() - started


def test_sigterm_while_no_broker_answers(stack, redis_prefix, tmp_path):
    port = free_port()
    env = consumer_env(stack, "never", redis_prefix, f"g-{uuid.uuid4().hex[:8]}", CONSUMER_METRICS_PORT=str(port))
    env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"  # nothing listens there
    member = ConsumerProcess(env, tmp_path / "consumer.log")
    wait_until(lambda: "kafka unreachable; retrying" in member.log_text(), 30, "no failed bootstrap was logged")
    status, body = http_get(f"http://127.0.0.1:{port}/healthz")
    assert (status, orjson.loads(body)["error"]) == (503, "no Kafka broker has answered yet")
    time.sleep(1.5)  # into the next bootstrap attempt
    code, seconds = _sigterm(member)
    assert code == 0, member.log_text()[-3000:]
    assert seconds < BOUND_S


def test_sigterm_while_the_store_worker_retries_redis(stack, topic, redis_prefix, tmp_path):
    name = topic(2)
    produce(stack.kafka_bootstrap, name, generate(91, 2000, int(time.time() * 1000), days=5))
    env = consumer_env(stack, name, redis_prefix, f"g-{uuid.uuid4().hex[:8]}", REDIS_TIMEOUT="3s")
    env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    member = ConsumerProcess(env, tmp_path / "consumer.log")
    wait_until(lambda: "redis write failed, retrying" in member.log_text(), 60, "the worker never retried")
    code, seconds = _sigterm(member)
    assert code == 0, member.log_text()[-3000:]
    assert seconds < BOUND_S
    # Nothing was stored, so nothing past offset 0 may be committed. An offset 0 may be: when the member's first
    # poll comes back empty (the topic's records not fetched yet), it commits the fetch positions it idles at.
    committed = committed_offsets(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
    assert set(committed.values()) <= {0}, f"nothing was stored, yet {committed} is committed"
