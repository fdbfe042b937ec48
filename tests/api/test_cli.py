"""``active-users token ...`` and ``active-users serve`` through the real entry point, on the real Redis."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import urllib.request

import orjson
import pytest
import redis.asyncio as aioredis

from activeusers.cli import main
from activeusers.keys import KeySchema
from api.auth import VIEW_ENGAGEMENT_DASHBOARD
from api.tokens import TokenStore, hash_token


@pytest.fixture
def env(redis_url, redis_prefix, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_KEY_PREFIX", redis_prefix)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield {**os.environ, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": redis_prefix}
    # main() configures JSON logging on the root logger; give pytest its handlers back.
    root.handlers[:] = handlers
    root.setLevel(level)


def lookup(redis_url, prefix, token):
    async def run():
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await TokenStore(client, KeySchema(prefix, "UTC")).lookup(token)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_token_lifecycle(env, redis_url, redis_prefix, redis_client, capsys):
    assert main(["token", "create", "--user-id", "alice", "--permission", VIEW_ENGAGEMENT_DASHBOARD]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    record = lookup(redis_url, redis_prefix, token)
    assert record.user_id == "alice" and record.permissions == (VIEW_ENGAGEMENT_DASHBOARD,)
    assert f"created token {record.id} for user alice" in err
    assert redis_client.hexists(f"{redis_prefix}tokens", hash_token(token))

    assert main(["token", "create", "--user-id", "bob"]) == 0
    bob_token = capsys.readouterr().out.strip()
    assert main(["token", "create", "--user-id", "bob"]) == 0
    capsys.readouterr()

    assert main(["token", "list"]) == 0
    listing = capsys.readouterr().out
    lines = listing.splitlines()
    assert lines[0].split() == ["ID", "USER", "PERMISSIONS", "CREATED"]
    assert lines[1].split()[:3] == [record.id, "alice", VIEW_ENGAGEMENT_DASHBOARD]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[1].split()[3])
    assert [line.split()[1] for line in lines[1:]] == ["alice", "bob", "bob"]
    assert token not in listing and bob_token not in listing and hash_token(token) not in listing

    assert main(["token", "revoke", record.id]) == 0
    assert lookup(redis_url, redis_prefix, token) is None
    assert main(["token", "revoke", record.id]) == 1
    assert main(["token", "revoke", "--user-id", "bob"]) == 0
    assert "revoked 2 token(s) of user bob" in capsys.readouterr().err
    assert main(["token", "revoke", "--user-id", "bob"]) == 1
    assert main(["token", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []


@pytest.mark.parametrize(
    "argv",
    [
        ["token", "create"],
        ["token", "create", "--user-id", "u", "--permission", "admin"],
        ["token", "create", "--user-id", ""],
        ["token", "revoke"],
        ["token", "revoke", "abc", "--user-id", "u"],
        ["token"],
    ],
)
def test_usage_errors_exit_2(env, argv, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2


def test_redis_down_is_a_clean_error(env, monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("REDIS_TIMEOUT", "0.5")
    assert main(["token", "list"]) == 2
    assert "active-users token:" in capsys.readouterr().err


def test_serve_starts_logs_and_stops_on_sigterm(env):
    server = subprocess.Popen(
        [sys.executable, "-m", "activeusers.cli", "serve"],
        env={**env, "API_HOST": "127.0.0.1", "API_PORT": "0"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        started = orjson.loads(server.stderr.readline())
        assert started["event"] == "api started"
        url = started["url"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        with urllib.request.urlopen(url + "/healthz", timeout=10) as answer:
            assert answer.read() == b'{"status":"ok"}'
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
        rest = [orjson.loads(line) for line in server.stderr.read().splitlines() if line.strip()]
        assert [line["event"] for line in rest] == ["api stopped"]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_taken_api_port_is_one_line_and_exit_2(env, tmp_path):
    """A second ``serve`` on the port the first one holds ends at start-up, naming API_PORT, no traceback."""
    from tests.support.processes import start_api

    first, base = start_api(env, tmp_path / "first.log")
    port = base.rsplit(":", 1)[1]
    try:
        second = subprocess.run(
            [sys.executable, "-m", "activeusers.cli", "serve"],
            env={**env, "API_HOST": "127.0.0.1", "API_PORT": port},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert second.returncode == 2
        assert second.stdout == ""
        assert second.stderr == (
            f"active-users serve: API_PORT={port}: 127.0.0.1:{port} is already in use by another process; "
            "set API_PORT to a free port (0: any free port)\n"
        )
        assert first.poll() is None  # the first one keeps serving
        with urllib.request.urlopen(base + "/healthz", timeout=10) as answer:
            assert answer.status == 200
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=20) == 0
