"""The service as child processes: the consumer and the API started as an operator would, and their settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from tests.support.environment import REPO_ROOT
from tests.support.network import free_port, http_get
from tests.support.waiting import wait_until


def consumer_env(stack: Any, topic: str, prefix: str, group: str, **extra: str) -> dict[str, str]:
    """The environment of a consumer process for one test's topic, group and key prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_", "ACTIVITY_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=stack.kafka_bootstrap,
        REDIS_URL=stack.redis_url,
        KAFKA_TOPIC=topic,
        KAFKA_DLQ_TOPIC=topic + ".dlq",
        KAFKA_GROUP_ID=group,
        REDIS_KEY_PREFIX=prefix,
        CONSUMER_METRICS_PORT="0",
        CONSUMER_HEARTBEAT="1s",
        CONSUMER_STALE="10s",
        BATCH_SIZE="500",
    )
    env.update(extra)
    return env


class ConsumerProcess:
    """``active-users consume`` as a real child process, with its log captured to a file."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            self.command("consume"),
            env=dict(env),
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @staticmethod
    def command(subcommand: str) -> list[str]:
        """The argv that runs an ``active-users`` subcommand with this interpreter."""
        return [sys.executable, "-m", "activeusers.cli", subcommand]

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash."""
        self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout_s)
        self._log.close()
        return code

    def log_text(self) -> str:
        """What the process logged so far."""
        return self.log_path.read_text(errors="replace")

    def owned(self) -> set[str]:
        """The partitions (``topic-N``) this member holds now, replayed from its assigned/revoked log lines."""
        held: set[str] = set()
        for line in self.log_text().splitlines():
            if not line.startswith("{"):
                continue
            entry = orjson.loads(line)
            if entry.get("event") == "partitions assigned":
                held |= set(entry["partitions"])
            elif entry.get("event") in ("partitions revoked", "partitions lost"):
                held -= set(entry["partitions"])
        return held


def start_api(env: Mapping[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``active-users serve`` as a child process on a free loopback port; returns it and its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "activeusers.cli", "serve"],
        env={**env, "API_HOST": "127.0.0.1", "API_PORT": str(port)},
        cwd=REPO_ROOT,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            return http_get(base + "/healthz")[0] == 200
        except OSError:
            return False

    wait_until(healthy, 30, "the API did not start")
    return process, base


def cli_token(env: dict[str, str], user_id: str, permission: str = "view-engagement-dashboard") -> dict[str, str]:
    """Auth headers of a new token made by our CLI, as an operator would."""
    token = subprocess.run(
        [
            sys.executable,
            "-m",
            "activeusers.cli",
            "token",
            "create",
            "--user-id",
            user_id,
            "--permission",
            permission,
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {"X-User-Id": user_id, "X-Auth-Token": token}
