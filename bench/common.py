"""What the benchmarks share: settings under a bench key prefix, the seeded dataset, API processes, an HTTP
client loop, percentiles and the table output (stdout, and the benchmark history with ``--record``).

The dataset is written through the consumer's own :class:`~activeusers.writer.ActivityWriter`, so the keys, the
encoding and the expiry are exactly what production stores: the index's bitmaps and counters, the numbering and
the names lists. The naive comparison server (``bench/servers.py``) gets its own sets of ids when asked
(``dataset_in_redis(..., naive_sets=True)``).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import redis
from dataset import LARGE as LARGE
from dataset import STANDARD as STANDARD
from dataset import Dataset
from dataset import user_ids as user_ids
from record import append_report
from servers import write_sets
from treescript import write_dataset

from activeusers.connections import async_redis_client
from activeusers.keys import KeySchema
from activeusers.settings import Settings
from api.auth import VIEW_ENGAGEMENT_DASHBOARD
from api.tokens import TokenStore

REPO_ROOT = Path(__file__).resolve().parent.parent
ACTIVE_USERS_PATH = "/api/v1/engagement-dashboard/users/active-users"
SUMMARY_PATH = "/api/v1/active-users/summary"
USERS_PREFIX = "/api/v1/engagement-dashboard/users/"
NEW_USERS_PATH = USERS_PREFIX + "new-users"
BY_TIME_OF_DAY_PATH = USERS_PREFIX + "users-by-time-of-the-day-in-a-week"
HOURLY_PATH = USERS_PREFIX + "chat-busier/hourly-data"
WEEKLY_PATH = USERS_PREFIX + "chat-busier/weekly-data"
BENCH_USER = "bench-admin"


def require_env() -> None:
    """Exit with a hint when the services are not configured."""
    missing = [name for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL") if not os.environ.get(name)]
    if missing:
        sys.exit(
            f"{', '.join(missing)} not set: run `python3 dev/stack up` then `set -a; . .stack/env; set +a` "
            "(or use bench/run, which does that)"
        )


@dataclass(frozen=True)
class LatencyRun:
    """The command line of a cold-and-warm latency benchmark: its dataset, API starts per cold row, warm requests
    per row, and whether it runs short and is recorded."""

    data: Dataset
    samples: int
    iterations: int
    quick: bool
    record: bool


def latency_run(doc: str | None) -> LatencyRun:
    """Parse the common command line of the cold-and-warm latency benchmarks (and check the services are set)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the standard dataset, fewer samples")
    parser.add_argument("--record", action="store_true", help="append the report to today's benchmark history")
    parser.add_argument("--cold-samples", type=int, default=None, help="API starts per cold row (default 10)")
    parser.add_argument("--iterations", type=int, default=100, help="warm requests per row (default 100)")
    args = parser.parse_args()
    require_env()
    samples = args.cold_samples or (3 if args.quick else 10)
    iterations = 20 if args.quick else args.iterations
    return LatencyRun(STANDARD if args.quick else LARGE, samples, iterations, args.quick, args.record)


def bench_settings(name: str, **extra: str) -> Settings:
    """Settings from the environment with a fresh key prefix ``bench-<name>-<random>:`` and UTC days."""
    prefix = f"bench-{name}-{uuid.uuid4().hex[:8]}:"
    return Settings.from_env({**os.environ, "REDIS_KEY_PREFIX": prefix, "ACTIVITY_TIMEZONE": "UTC", **extra})


def keys_of(settings: Settings) -> KeySchema:
    return KeySchema.of(settings)


def today_utc() -> date:
    return datetime.now(UTC).date()


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Remove every key under ``prefix`` (UNLINK: Redis frees big sets in the background)."""
    client = redis.Redis.from_url(redis_url)
    try:
        pattern = KeySchema(prefix, "UTC").pattern()
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


@contextmanager
def dataset_in_redis(settings: Settings, data: Dataset, last_day: date, naive_sets: bool = False) -> Iterator[int]:
    """The dataset written under the settings' prefix for the duration of the block, deleted afterwards; with
    ``naive_sets``, also as the naive server's own sets of ids (``bench/servers.py``)."""
    try:
        pairs = write_dataset(settings, data, last_day)
        if naive_sets:
            write_sets(settings.redis_url, settings.redis_key_prefix, data, last_day)
        yield pairs
    finally:
        delete_prefix(settings.redis_url, settings.redis_key_prefix)


def auth_headers(settings: Settings) -> dict[str, str]:
    """A fresh token with the dashboard permission, created through the service's token store."""

    async def create() -> str:
        client = async_redis_client(settings)
        try:
            token, _ = await TokenStore(client, keys_of(settings)).create(
                BENCH_USER, (VIEW_ENGAGEMENT_DASHBOARD,), int(time.time() * 1000)
            )
        finally:
            await client.aclose()
        return token

    return {"X-User-Id": BENCH_USER, "X-Auth-Token": asyncio.run(create())}


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of an ``active-users`` child process with these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_", "ACTIVITY_", "API_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        KAFKA_TOPIC=settings.kafka_topic,
        KAFKA_DLQ_TOPIC=settings.kafka_dlq_topic,
        KAFKA_GROUP_ID=settings.kafka_group_id,
        REDIS_URL=settings.redis_url,
        REDIS_KEY_PREFIX=settings.redis_key_prefix,
        ACTIVITY_TIMEZONE=settings.activity_timezone,
        API_HOST="127.0.0.1",
        API_PORT="0",
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


class Server:
    """A child HTTP server that logs its URL as a JSON line field ``url`` (``active-users serve`` does)."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        timeout_s: float = 30,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT)
        self.url = self._wait_url(timeout_s)
        self.host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)

    def _wait_url(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if '"url"' in line:
                    try:
                        return str(json.loads(line)["url"])
                    except (ValueError, KeyError):
                        continue
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.log_path.name}: server did not start:\n{self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def active_users_command() -> list[str]:
    return [sys.executable, "-m", "activeusers.cli"]


def api_server(settings: Settings, log_dir: Path, name: str = "api") -> Server:
    """``active-users serve`` with the bench settings, on a free loopback port."""
    return Server([*active_users_command(), "serve"], service_env(settings), log_dir / f"{name}.log")


def aux_server(kind: str, settings: Settings, log_dir: Path) -> Server:
    """One of the comparison servers of ``bench/servers.py`` (``naive`` or ``trivial``)."""
    argv = [sys.executable, str(REPO_ROOT / "bench" / "servers.py"), kind]
    return Server(argv, service_env(settings), log_dir / f"{kind}.log")


class HttpClient:
    """One keep-alive HTTP/1.1 connection: the single warm client of the latency benchmarks."""

    def __init__(self, host: str, port: int, headers: Mapping[str, str] | None = None) -> None:
        self._conn = http.client.HTTPConnection(host, port, timeout=120)
        self._headers = dict(headers or {})

    def get(self, path: str) -> tuple[int, bytes, float]:
        """Status, body and seconds from sending the request to having read the whole body."""
        started = time.perf_counter()
        self._conn.request("GET", path, headers=self._headers)
        response = self._conn.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - started

    def close(self) -> None:
        self._conn.close()


def first_answer(server: Server, url: str, headers: Mapping[str, str] | None, label: str = "") -> tuple[bytes, float]:
    """The body and seconds of one request to ``server`` on a connection of its own (a cold server's first
    answer); anything but a 200 raises."""
    client = HttpClient(server.host, server.port, headers)
    try:
        status, body, seconds = client.get(url)
    finally:
        client.close()
    if status != 200:
        raise RuntimeError(f"{label}{url}: HTTP {status}: {body[:200]!r}")
    return body, seconds


def iso_ms(moment: datetime) -> str:
    """JavaScript ``toISOString()`` form."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def range_query(last_day: date, days: int) -> str:
    """``start``/``end`` covering the ``days`` UTC days ending ``last_day`` (end at the last millisecond)."""
    first = last_day - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last_day.year, last_day.month, last_day.day, 23, 59, 59, 999_000, tzinfo=UTC)
    return f"start={iso_ms(start)}&end={iso_ms(end)}"


def start_query(last_day: date) -> str:
    """``start`` at the last millisecond of ``last_day`` (UTC): chat-busier's "that day"."""
    end = datetime(last_day.year, last_day.month, last_day.day, 23, 59, 59, 999_000, tzinfo=UTC)
    return f"start={iso_ms(end)}"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of the values; the maximum for q=100."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[min(int(rank), len(ordered)) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def progress(label: str, done: int, total: int, started: float) -> None:
    elapsed = time.monotonic() - started
    sys.stderr.write(f"\r{label}: {done}/{total} ({elapsed:,.1f} s)   ")
    sys.stderr.flush()


def command_line(script: str) -> str:
    return " ".join(["python", script, *sys.argv[1:]]).strip()


def emit(lines: Sequence[str], record: bool) -> None:
    """Print the section; with ``record``, append it to today's benchmark history too, under its command."""
    text = "\n".join(lines)
    print(text, flush=True)
    if record:
        command = command_line(f"bench/{Path(sys.argv[0]).name}")
        append_report(f"## {datetime.now(UTC):%H:%M} UTC: `{command}`\n\n{text}")


def stamp(script: str) -> str:
    return f"`{command_line(script)}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC."


def log_dir(name: str) -> Path:
    path = REPO_ROOT / ".bench" / name
    path.mkdir(parents=True, exist_ok=True)
    return path
