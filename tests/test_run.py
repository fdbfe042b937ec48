"""``dev/run`` end to end, as a new user runs it: its printed ``curl`` commands work and answer what the events
sent give, and Ctrl-C leaves no process and no demo data behind."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from activeusers.keys import KeySchema
from consumer.synthetic.producer import read_jsonl
from tests.support.environment import REPO_ROOT, in_ci
from tests.support.network import free_port
from tests.support.oracle import oracle


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(
    not in_ci() and (not Path("/proc").is_dir() or not os.access("/usr/bin/curl", os.X_OK)), reason="needs /proc, curl"
)
def test_dev_run_prints_working_curls_and_ctrl_c_stops_everything(stack, kafka_admin, redis_client, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_", "API_", "CONSUMER_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=stack.kafka_bootstrap,
        REDIS_URL=stack.redis_url,
        API_PORT=str(free_port()),
        CONSUMER_METRICS_PORT=str(free_port()),
        DEV_RUN_DIR=str(tmp_path),
    )
    command = [str(REPO_ROOT / "dev" / "run"), "--count", "6000", "--users", "400", "--days", "30"]
    run = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        assert run.stdout is not None
        while time.monotonic() < deadline:
            line = run.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        output = "".join(lines)
        assert "Press Ctrl-C" in output, output
        assert "Check: both answers equal" in output, output
        assert f"http://127.0.0.1:{env['API_PORT']}" in output
        assert "logs" in output.lower()
        topic = re.search(r"topic (\S+) \(6 partitions\)", output).group(1)
        prefix = topic.split(".", 1)[0] + ":"
        children = descendants(run.pid)
        assert len(children) >= 2  # the consumer and the API

        curls = [shlex.split(line.strip()) for line in lines if line.strip().startswith("curl ")]
        assert len(curls) == 5
        answers = []
        for argv in curls:
            done = subprocess.run(argv, capture_output=True, timeout=30, check=True)
            answers.append(orjson.loads(done.stdout))
        sent = read_jsonl(tmp_path / "demo-events.jsonl")
        assert len(sent) == 6000
        keys = KeySchema("", "UTC")
        now_ms = int(time.time() * 1000)
        events = [r.value if isinstance(r.value, dict) else None for r in sent]
        expected = {
            key.rsplit(":", 1)[1]: users
            for key, users in oracle(events, keys, ZoneInfo("UTC"), now_ms, 400).items()
            if key.startswith("index:day:")
        }
        first_day = re.search(r"start=(\d{4}-\d\d-\d\d)T", curls[0][2]).group(1)
        month = answers[0]["month"]
        assert len(month) >= 6  # the last 7 days have active users (today's may have none just after midnight)
        got = {f"{d['year']:04d}-{d['month']:02d}-{d['day']:02d}": set(d["usersList"]) for d in month}
        assert got == {day: users for day, users in expected.items() if day >= first_day}
        assert all(d["users"] == len(d["usersList"]) > 0 for d in month)
        summary = answers[1]
        assert len(summary["days"]) >= 30
        assert summary["distinctUsers"] > 0
        for row in summary["days"]:
            assert row["dau"] == len(expected.get(row["date"], ()))
        retention, stickiness = answers[2], answers[3]
        assert retention["period"] == "week" and len(retention["cohorts"]) >= 4
        assert sum(stickiness["activeDays"]) == stickiness["distinctUsers"] > 0
        platforms = {row["value"] for row in answers[4]["values"]}
        assert answers[4]["property"] == "platform" and {"web", "ios", "android"} <= platforms
    finally:
        run.send_signal(signal.SIGINT)
        try:
            rest, _ = run.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            run.kill()
            rest, _ = run.communicate()
        lines.append(rest or "")
    assert run.returncode == 0, "".join(lines)[-4000:]
    left = [pid for pid in children if alive(pid)]
    assert not left, f"processes left behind: {left}"
    assert "stopped consumer" in rest and "stopped api" in rest
    assert not list(redis_client.scan_iter(match=prefix + "*", count=1000)), "demo keys left in Redis"
    assert topic not in kafka_admin.list_topics()
