"""A private PostgreSQL server for the benchmarks (Debian's ``postgresql`` package, found under
``/usr/lib/postgresql/<version>/bin``): ``initdb`` in a temporary directory, ``pg_ctl`` start on a free loopback
port, stopped and deleted afterwards; the dataset as a ``(day, user_id)`` table with a primary key, and the
retention and stickiness questions in SQL."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import psycopg
from dataset import Dataset, activity

# ISO weeks: date_trunc('week') starts on Monday; k counts whole periods after the cohort's.
RETENTION_SQL = """
WITH firsts AS (
    SELECT user_id, date_trunc('week', min(day))::date AS cohort FROM activity GROUP BY user_id
), visits AS (
    SELECT DISTINCT user_id, date_trunc('week', day)::date AS week FROM activity WHERE day >= %(first)s
)
SELECT f.cohort, (v.week - f.cohort) / 7 AS k, count(*)
FROM firsts f JOIN visits v USING (user_id)
WHERE f.cohort >= %(first)s AND v.week >= f.cohort AND (v.week - f.cohort) / 7 <= %(periods)s
GROUP BY 1, 2 ORDER BY 1, 2
"""
STICKINESS_SQL = """
SELECT n, count(*) FROM (
    SELECT count(*) AS n FROM activity WHERE day BETWEEN %(first)s AND %(last)s GROUP BY user_id
) AS per_user GROUP BY n ORDER BY n
"""


def server_bin() -> Path:
    """The newest installed PostgreSQL server's bin directory."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(folder: Path) -> list[str]:
    """What runs PostgreSQL's commands: as they are, or as the package's ``postgres`` user when root (which
    PostgreSQL refuses), owning ``folder``."""
    if os.geteuid() != 0:
        return []
    shutil.chown(folder, "postgres", "postgres")
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def postgres() -> Iterator[str]:
    """A fresh PostgreSQL server for the block; yields its connection string."""
    folder = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    binaries, port, user = server_bin(), _free_port(), "bench"
    data = folder / "data"
    as_user = _as_server_user(folder)
    subprocess.run(
        [*as_user, binaries / "initdb", "-D", data, "-U", user, "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c shared_buffers=256MB -c work_mem=64MB"
    pg_ctl = [*as_user, binaries / "pg_ctl", "-D", data, "-l", folder / "server.log", "-w"]
    try:
        subprocess.run([*pg_ctl, "-o", options, "start"], check=True, capture_output=True)
        yield f"host=127.0.0.1 port={port} user={user} dbname=postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True)
        if not os.environ.get("BENCH_KEEP_PG"):
            shutil.rmtree(folder, ignore_errors=True)


def load(dsn: str, data: Dataset, last_day: date) -> int:
    """The dataset's active users as rows of ``activity (day, user_id)`` with its primary key; how many rows."""
    rows = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE activity (day date NOT NULL, user_id text NOT NULL)")
        with conn.cursor().copy("COPY activity (day, user_id) FROM STDIN") as copy:
            for found in activity(data, last_day):
                for user, _ in found.active:
                    copy.write_row((found.day, user))
                rows += len(found.active)
        conn.execute("ALTER TABLE activity ADD PRIMARY KEY (day, user_id)")
        conn.execute("VACUUM ANALYZE activity")
    return rows


def retention(conn: psycopg.Connection, first: date, periods: int) -> dict[date, dict[int, int]]:
    """Weekly first-active retention from the ISO week of ``first``: cohort week -> k -> users."""
    found: dict[date, dict[int, int]] = {}
    for cohort, k, users in conn.execute(RETENTION_SQL, {"first": first, "periods": periods}):
        found.setdefault(cohort, {})[k] = users
    return found


def stickiness(conn: psycopg.Connection, first: date, last: date) -> dict[int, int]:
    """Users by number of active days in ``first..last``."""
    return dict(conn.execute(STICKINESS_SQL, {"first": first, "last": last}).fetchall())
