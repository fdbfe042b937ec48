"""The artifact users install: the sdist and wheel built from the tracked sources, the wheel installed into
a fresh virtual environment outside the work tree, and the installed ``active-users`` run from there (working
directory outside the tree, no ``PYTHONPATH``) against the real Kafka and Redis.

Editable installs (``dev/venv``) import from the work tree, so they cannot notice a module the wheel leaves
out; these tests can. One build and one environment serve the whole session; pip's cache keeps the install
of the dependencies (at the tested versions, ``constraints/tested.txt``, as the Dockerfile installs them) fast.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tests.support.environment import REPO_ROOT
from tests.support.network import free_port, http_get
from tests.support.topics import read_topic
from tests.support.waiting import wait_until

# Builds and installs from PyPI; the end-to-end test uses the services.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

PACKAGES = ("activeusers", "consumer", "api")
BUILD_TIMEOUT_S = 600


@dataclass(frozen=True)
class Built:
    """The artifacts ``python -m build`` made from a copy of the tracked files."""

    sdist: Path
    wheel: Path


@dataclass(frozen=True)
class Installed:
    """A virtual environment holding the wheel, and a working directory outside the tree to run it from."""

    venv: Path
    home: Path

    @property
    def program(self) -> Path:
        return self.venv / "bin" / "active-users"

    def env(self, **settings: str) -> dict[str, str]:
        """A clean environment: this venv's bin first, nothing pointing into the work tree."""
        return {"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8", **settings}


def tracked(*paths: str) -> list[str]:
    """Tracked files under ``paths`` that exist in the work tree (``git ls-files``)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", *paths], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    return sorted(name.decode() for name in listed if name and (REPO_ROOT / name.decode()).is_file())


def package_files() -> list[str]:
    """Every tracked module and marker file of the three packages, the Lua scripts the core runs in Redis and the
    API's static assets (the dashboard page): what the wheel must hold."""
    files = [name for name in tracked(*PACKAGES) if name.endswith((".py", "py.typed", ".lua")) or "/static/" in name]
    assert any(name.startswith("api/routes/") for name in files)
    assert {"activeusers/lua/number_users.lua", "activeusers/lua/set_bits.lua"} <= set(files)
    assert any(name.startswith("api/static/vendor/") for name in files)
    return files


def outside_the_tree(path: Path) -> Path:
    assert not path.resolve().is_relative_to(REPO_ROOT.resolve()), f"{path} is inside the work tree"
    return path


def run(argv: list[str | Path], timeout_s: float = BUILD_TIMEOUT_S, **kwargs: object) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout_s, check=False, **kwargs
    )
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """sdist and wheel of the tracked files (a copy: untracked files in the tree cannot leak in); the wheel is
    built from the sdist, as ``python -m build`` does, so the sdist is proven complete too."""
    root = outside_the_tree(tmp_path_factory.mktemp("build"))
    source = root / "source"
    for name in tracked("."):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    dist = root / "dist"
    run([sys.executable, "-m", "build", "--outdir", dist, source])
    (sdist,) = dist.glob("active_users-*.tar.gz")
    (wheel,) = dist.glob("active_users-*.whl")
    return Built(sdist, wheel)


@pytest.fixture(scope="session")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh venv outside the tree with the wheel (dependencies from PyPI at the tested versions)."""
    root = outside_the_tree(tmp_path_factory.mktemp("installed"))
    venv, home = root / "venv", root / "home"
    home.mkdir()
    run([sys.executable, "-m", "venv", venv])
    constraints = REPO_ROOT / "constraints" / "tested.txt"
    run([venv / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", constraints,
         built.wheel], cwd=home)  # fmt: skip
    return Installed(venv, home)


def test_the_wheel_holds_every_module_and_the_commands(built):
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        declared = wheel.read(entry_points).decode()
    missing = [name for name in package_files() if name not in names]
    assert missing == [], f"the wheel lacks {missing}"
    assert {name.split("/")[0] for name in names} == {*PACKAGES, entry_points.split("/")[0]}
    assert "active-users = activeusers.cli:main" in declared
    assert "[active_users.commands]" in declared
    assert "api = api.cli:register" in declared and "consumer = consumer.cli:register" in declared


def test_the_sdist_holds_every_module(built):
    with tarfile.open(built.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    missing = [name for name in [*package_files(), "pyproject.toml", "README.md"] if name not in names]
    assert missing == [], f"the sdist lacks {missing}"


def test_the_installed_modules_import_from_the_environment_not_the_tree(built, installed):
    with zipfile.ZipFile(built.wheel) as wheel:
        modules = sorted(
            name[: -len(".py")].removesuffix("/__init__").replace("/", ".")
            for name in wheel.namelist()
            if name.endswith(".py")
        )
    code = (
        "import importlib, json, sys, sysconfig\n"
        f"modules = {modules!r}\n"
        "files = {name: importlib.import_module(name).__file__ for name in modules}\n"
        "print(json.dumps({'site': sysconfig.get_paths()['purelib'], 'files': files, 'path': sys.path}))\n"
    )
    answer = json.loads(
        run([installed.venv / "bin" / "python", "-c", code], cwd=installed.home, env=installed.env()).stdout
    )
    site = Path(answer["site"])
    assert site.is_relative_to(installed.venv)
    assert len(answer["files"]) == len(modules) > 40
    assert {name: Path(f).is_relative_to(site) for name, f in answer["files"].items()} == dict.fromkeys(modules, True)
    assert not [p for p in answer["path"] if p and Path(p).resolve().is_relative_to(REPO_ROOT.resolve())]


def test_the_installed_help_lists_every_subcommand(installed):
    result = run([installed.program, "--help"], cwd=installed.home, env=installed.env(), timeout_s=60)
    assert result.stdout.startswith("usage: active-users [-h] COMMAND ...")
    listed = [m.group(1) for line in result.stdout.splitlines() if (m := re.match(r"^ {4}(\w+) ", line))]
    assert sorted(listed) == ["consume", "forget", "produce", "reindex", "replay", "serve", "token"]
    assert result.stderr == ""


def days_ago(n: int) -> date:
    return datetime.now(UTC).date() - timedelta(days=n)


def at(day: date, hour: int) -> str:
    return f"{day.isoformat()}T{hour:02d}:15:00.000Z"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_the_installed_program_answers_exactly(installed, stack, topic, redis_prefix, processes, tmp_path):
    """token create, consume and serve of the installed program; a handful of events in; the exact answer out."""
    name, dlq = topic(partitions=2), topic(partitions=1)
    env = installed.env(
        KAFKA_BOOTSTRAP_SERVERS=stack.kafka_bootstrap,
        REDIS_URL=stack.redis_url,
        KAFKA_TOPIC=name,
        KAFKA_DLQ_TOPIC=dlq,
        KAFKA_GROUP_ID=f"g-package-{uuid.uuid4().hex[:8]}",
        REDIS_KEY_PREFIX=redis_prefix,
        CONSUMER_METRICS_PORT="0",
        CONSUMER_HEARTBEAT="1s",
        API_HOST="127.0.0.1",
        API_PORT=str(free_port()),
        RETENTION_DAYS="400",
        MEMBER_RETENTION_DAYS="10",  # retired: said to be ignored, and every retained day still lists its ids
    )
    created = run(
        [installed.program, "token", "create", "--user-id", "viewer", "--permission", "view-engagement-dashboard"],
        cwd=installed.home,
        env=env,
        timeout_s=60,
    )
    token = created.stdout.strip()
    assert len(token) >= 32 and "\n" not in token
    ignored, said = created.stderr.splitlines()
    assert '"setting ignored"' in ignored and '"variable":"MEMBER_RETENTION_DAYS"' in ignored
    assert said.startswith("created token ") and "for user viewer" in said

    logs = {command: tmp_path / f"{command}.log" for command in ("consume", "serve")}
    for command, log in logs.items():
        with log.open("wb") as out:
            processes.append(
                subprocess.Popen([installed.program, command], cwd=installed.home, env=env, stdout=out, stderr=out)
            )
    base = f"http://127.0.0.1:{env['API_PORT']}"

    def serving() -> bool:
        for process, log in zip(processes, logs.values(), strict=True):
            assert process.poll() is None, log.read_text()
        try:
            return http_get(base + "/healthz", timeout_s=2)[0] == 200
        except OSError:
            return False

    wait_until(serving, 60, "the installed API did not start")

    long_ago, first, second = days_ago(60), days_ago(3), days_ago(2)
    events = [
        {"type": "login", "userId": "grace", "ts": at(long_ago, 10)},
        {"type": "login", "userId": "alice", "ts": at(first, 9)},
        {"type": "activity", "userId": "bob", "ts": at(first, 11), "roles": ["user"]},
        {"type": "activity", "userId": "alice", "ts": at(first, 12)},
        {"type": "login", "userId": "carol", "ts": at(second, 8)},
        {"type": "login", "userId": "dave", "ts": at(second, 9), "roles": ["anonymous"]},  # not counted
        {"type": "user.created", "userId": "erin", "ts": at(second, 10)},  # new, not active
        {"type": "message.sent", "userId": "frank", "ts": at(second, 11)},  # unknown type, skipped
    ]
    records = [(e["userId"].encode(), orjson.dumps(e)) for e in events]
    records.append((b"alice", records[0][1]))  # delivered twice: the same result
    records.append((b"broken", b"{not json"))  # to the dead-letter topic
    _publish(stack.kafka_bootstrap, name, records)

    start, end = long_ago - timedelta(days=1), second + timedelta(days=1)
    query = f"start={start.isoformat()}T00:00:00.000Z&end={end.isoformat()}T23:59:59.999Z"
    url = f"{base}/api/v1/engagement-dashboard/users/active-users?{query}"
    headers = {"X-User-Id": "viewer", "X-Auth-Token": token}
    expected = (
        '{"month":['
        f'{{"usersList":["carol"],"users":1,"day":{second.day},"month":{second.month},"year":{second.year}}},'
        f'{{"usersList":["alice","bob"],"users":2,"day":{first.day},"month":{first.month},"year":{first.year}}},'
        f'{{"usersList":["grace"],"users":1,"day":{long_ago.day},"month":{long_ago.month},"year":{long_ago.year}}}'
        '],"success":true}'
    ).encode()
    answers: list[tuple[int, bytes]] = []

    def answered() -> bool:
        serving()
        answers.append(http_get(url, headers))
        return answers[-1] == (200, expected)

    wait_until(answered, 60, f"the installed API answered {answers[-1:]} instead of {expected!r}")

    (letter,) = read_topic(stack.kafka_bootstrap, dlq, expected=1)
    assert letter.value == b"{not json"
    assert dict(letter.headers)["x-dlq-reason"] == b"not_json"

    for process in processes:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    codes = [process.wait(timeout=max(1.0, deadline - time.monotonic())) for process in processes]
    assert codes == [0, 0], {c: log.read_text()[-2000:] for c, log in logs.items()}
    for log in logs.values():
        ignored = [line for line in log.read_text().splitlines() if '"setting ignored"' in line]
        assert len(ignored) == 1 and "MEMBER_RETENTION_DAYS" in ignored[0], log.read_text()[-2000:]


def _publish(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for future in [producer.send(topic, key=key, value=value) for key, value in records]:
            future.get(timeout=30)
    finally:
        producer.close(timeout=10)
