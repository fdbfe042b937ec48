"""compose.yaml and the Dockerfile, checked without a Docker engine; and the services start from compose's env.

The Compose schema in ``tests/data/compose-spec.json`` is ``compose/config/compose_spec.json`` of the
``docker-compose`` 1.29.2 package on PyPI (Apache-2.0), the Compose specification's JSON schema.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
import tomllib
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from activeusers.cli import build_parser
from activeusers.settings import Settings, variable_names
from tests.support.environment import REPO_ROOT
from tests.support.network import free_port
from tests.support.processes import ConsumerProcess

pytestmark = pytest.mark.slow  # runs the compose file's processes

OURS = ("topics", "consumer", "api", "demo")  # the services that run the active-users image
SETTINGS_VARS = variable_names()  # the *_FILE forms of the secrets included


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", (REPO_ROOT / "Dockerfile").read_text())
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, rest = line.strip().partition(" ")
            rows.append((instruction.upper(), rest.strip()))
    return rows


def test_compose_file_follows_the_compose_specification(compose):
    schema = orjson_load(REPO_ROOT / "tests" / "data" / "compose-spec.json")
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def orjson_load(path: Path) -> Any:
    import orjson

    return orjson.loads(path.read_bytes())


def on_host(compose: dict[str, Any], name: str) -> dict[str, str]:
    """The service's environment with each ``/run/secrets/X`` path replaced by the secret's file here."""
    env = {k: str(v) for k, v in compose["services"][name]["environment"].items()}
    for key, value in env.items():
        if key.endswith("_FILE") and value.startswith("/run/secrets/"):
            env[key] = str(REPO_ROOT / compose["secrets"][value.removeprefix("/run/secrets/")]["file"])
    return env


def test_our_services_set_only_known_valid_settings(compose, services):
    for name in OURS:
        env = services[name]["environment"]
        unknown = set(env) - SETTINGS_VARS
        assert not unknown, f"{name}: {unknown} are not settings"
        Settings.from_env(on_host(compose, name))  # raises ConfigError when a value is invalid


def test_secrets_are_docker_secrets_read_through_files(compose, services):
    for name, service in services.items():
        env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        assert not {"REDIS_PASSWORD", "KAFKA_SASL_PASSWORD"} & set(env), f"{name}: a password in the environment"
        for key, value in env.items():
            if key.endswith("_FILE") and key in SETTINGS_VARS:
                secret = value.removeprefix("/run/secrets/")
                assert value.startswith("/run/secrets/") and secret in service["secrets"], (name, key)
                assert (REPO_ROOT / compose["secrets"][secret]["file"]).is_file()
    for name in ("consumer", "api"):
        assert services[name]["environment"]["REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password"
    redis = services["redis"]
    assert "redis_password" in redis["secrets"] and "/run/secrets/redis_password" in " ".join(redis["entrypoint"])
    assert "user default off" in " ".join(redis["entrypoint"])  # no passwordless user
    assert "/run/secrets/redis_password" in " ".join(redis["healthcheck"]["test"])
    assert "secrets" in (REPO_ROOT / ".dockerignore").read_text().split()  # never baked into the image


def test_our_commands_are_valid_command_lines(services):
    parser = build_parser()
    for name in OURS:
        command = services[name]["command"]
        assert command[0] == "active-users", name
        parser.parse_args(command[1:])  # exits (SystemExit) on an unknown subcommand or option


def test_services_reach_each_other_by_the_advertised_addresses(services):
    kafka_env = services["kafka"]["environment"]
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].split("://", 1)[1]
    for name in OURS:
        env = services[name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == advertised
        assert env["REDIS_URL"].startswith("redis://redis:6379/")


def test_dependencies_wait_for_health_and_completion(services):
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"
            if spec["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} must run once"
    assert services["consumer"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    for name in ("kafka", "redis", "consumer", "api"):
        assert "healthcheck" in services[name], name


def test_the_consumer_scales(services):
    consumer = services["consumer"]
    assert "container_name" not in consumer and "ports" not in consumer
    partitions = services["topics"]["command"]
    assert int(partitions[partitions.index("--partitions") + 1]) >= 3


def test_healthchecks_probe_the_configured_ports(services):
    api, consumer = services["api"], services["consumer"]
    assert api["environment"]["API_HOST"] == "0.0.0.0"
    assert f":{api['environment']['API_PORT']}/healthz" in " ".join(api["healthcheck"]["test"])
    assert f":{consumer['environment']['CONSUMER_METRICS_PORT']}/healthz" in " ".join(consumer["healthcheck"]["test"])
    published = [str(p) for p in api["ports"]]
    assert any(p.endswith(f":{api['environment']['API_PORT']}") for p in published)


def test_images_are_pinned_and_volumes_declared(compose, services):
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} not pinned"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: volume {source} is not declared"
    assert "kafka" in services["kafka"]["image"] and services["kafka"]["image"].startswith("apache/kafka:")
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert services["demo"]["profiles"] == ["demo"]
    assert {s.get("build") for n, s in services.items() if n in OURS} == {"."}


def stages(dockerfile: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, ``FROM`` first."""
    found: list[list[tuple[str, str]]] = []
    for instruction, args in dockerfile:
        if instruction == "FROM":
            found.append([])
        found[-1].append((instruction, args))
    return found


def test_dockerfile_builds_the_wheel_then_installs_it_with_the_tested_versions(dockerfile):
    build, final = stages(dockerfile)
    build_base, _, name = build[0][1].partition(" AS ")
    assert name == "build"
    base = final[0][1]
    assert base == build_base, "both stages run the same Python"
    assert re.fullmatch(r"python:3\.1[1-9]\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base

    # The build stage copies every package setuptools discovers, and builds the wheel from them.
    find = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.rstrip("*") for pattern in find["include"] if "." not in pattern.rstrip("*")}
    assert packages == {"activeusers", "consumer", "api"}
    copied = {args.split()[0].rstrip("/") for i, args in build if i == "COPY"}
    assert packages <= copied and "pyproject.toml" in " ".join(a for i, a in build if i == "COPY")
    assert any("python -m build --wheel --outdir /dist" in args for i, args in build if i == "RUN")

    # The final stage: dependencies from the tested constraints first (cached while the code changes), then
    # the wheel, then a non-root user.
    instructions = [i for i, _ in final]
    rows = list(enumerate(final))
    deps_copy = next(n for n, (i, args) in rows if i == "COPY" and "constraints/tested.txt" in args)
    deps_install = next(n for n, (i, args) in rows if i == "RUN" and "-r /tmp/requirements.txt" in args)
    wheel_copy = next(n for n, (i, args) in rows if i == "COPY" and args.startswith("--from=build /dist/"))
    wheel_install = next(n for n, (i, args) in rows if i == "RUN" and "/tmp/dist/*.whl" in args)
    assert deps_copy < deps_install < wheel_copy < wheel_install
    assert "-c tested.txt" in final[deps_install][1] and "-c tested.txt" in final[wheel_install][1]
    assert "pip check" in final[wheel_install][1]
    code_copies = [args for i, args in final if i == "COPY" and args.split()[0].rstrip("/") in packages]
    assert code_copies == [], "the image installs the wheel, not a copy of the sources"
    users = [args for i, args in final if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert instructions.index("USER") > max(n for n, i in enumerate(instructions) if i == "RUN")
    assert "latest" not in " ".join(args for _, args in dockerfile)
    cmd = next(args for i, args in final if i == "CMD")
    assert cmd.startswith("["), "CMD must use the exec form (signals reach the process)"
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".venv-floors", ".stack", ".run"} <= set(ignored)
    assert "constraints" not in ignored


def healthcheck_passes(test: list[str], port_from: str, port_to: int) -> bool:
    """Run a compose ``CMD`` healthcheck here (its ``python`` is this interpreter, its port the test's)."""
    argv = [part.replace(f":{port_from}/", f":{port_to}/") for part in test[1:]]
    if argv[0] == "python":
        argv[0] = ConsumerProcess.command("x")[0]
    return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0


def test_services_start_from_the_environment_compose_sets(stack, services, kafka_admin, redis_prefix, tmp_path):
    """topics, consumer and api with compose's variables; only addresses, names and ports point at the test bed."""
    suffix = uuid.uuid4().hex[:8]
    overrides = {
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "REDIS_URL": stack.redis_url,
        "KAFKA_TOPIC": f"t-compose-{suffix}",
        "KAFKA_DLQ_TOPIC": f"t-compose-{suffix}.dlq",
        "KAFKA_GROUP_ID": f"g-compose-{suffix}",
        "REDIS_KEY_PREFIX": redis_prefix,
    }
    # The test bed's plain Redis has no ACL user: compose's Redis credentials are left out with its address.
    credentials = {"REDIS_USERNAME", "REDIS_PASSWORD_FILE"}
    ports = {"api": ("API_PORT", free_port()), "consumer": ("CONSUMER_METRICS_PORT", free_port())}

    def env_of(name: str) -> dict[str, str]:
        env = {k: str(v) for k, v in services[name]["environment"].items() if k not in credentials} | overrides
        for key in ("API_HOST", "CONSUMER_METRICS_HOST"):
            if key in env:
                env[key] = "127.0.0.1"  # tests listen on loopback only
        if name in ports:
            env[ports[name][0]] = str(ports[name][1])
        return env | {"PATH": "/usr/bin:/bin"}

    def argv(name: str) -> list[str]:  # `active-users ...` with this interpreter
        return [*ConsumerProcess.command("x")[:-1], *services[name]["command"][1:]]

    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: tmp_path / f"{name}.log" for name in ("consumer", "api")}
    try:
        topics = subprocess.run(argv("topics"), env=env_of("topics"), capture_output=True, timeout=60, check=False)
        assert topics.returncode == 0, topics.stderr
        assert len(kafka_admin.describe_topics([overrides["KAFKA_TOPIC"]])[0]["partitions"]) == 6
        for name, log in logs.items():
            with log.open("wb") as out:
                processes[name] = subprocess.Popen(argv(name), env=env_of(name), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        pending = set(processes)
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                assert processes[name].poll() is None, logs[name].read_text()[-2000:]
                key, port = ports[name]
                if healthcheck_passes(services[name]["healthcheck"]["test"], services[name]["environment"][key], port):
                    pending.discard(name)
            time.sleep(0.5)
        assert not pending, {n: logs[n].read_text()[-2000:] for n in pending}
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['api'][1]}/readyz", timeout=5) as ready:
            assert ready.status == 200
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        codes = {name: process.wait(timeout=30) for name, process in processes.items()}
        kafka_admin.delete_topics([overrides["KAFKA_TOPIC"], overrides["KAFKA_DLQ_TOPIC"]], raise_errors=False)
    assert codes == {"consumer": 0, "api": 0}, {n: logs[n].read_text()[-2000:] for n in logs}
