"""The programs the stack runs: ``redis-server`` (installed with apt-get when missing) and Java 17+."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from teststack.output import StackError, progress
from teststack.processes import run_quiet


def ensure_redis_server() -> str:
    """Path of ``redis-server``; installs Debian's package with apt-get when it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0:
        raise StackError(
            "redis-server is not installed and dev/stack is not running as root, so it cannot apt-get it.\n"
            "Install it yourself: sudo apt-get update && sudo apt-get install -y redis-server"
        )
    apt = shutil.which("apt-get")
    if not apt:
        raise StackError("redis-server is not installed and apt-get is not available: install Redis 7 yourself")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "update"], [apt, "install", "-y", "--no-install-recommends", "redis-server"]):
        progress(f"redis-server missing: running {' '.join(cmd)}")
        result = run_quiet(cmd, env=env)
        if result.returncode != 0:
            raise StackError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not found:
        raise StackError("apt-get installed redis-server but it is not on PATH")
    return found


def ensure_java() -> str:
    """Path of a ``java`` that is version 17 or newer."""
    java = shutil.which("java")
    if not java:
        raise StackError(
            "java is not installed: Kafka 4.x needs Java 17+ (Debian: apt-get install -y openjdk-17-jre-headless)"
        )
    result = run_quiet([java, "-version"])
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):
            major = int(match.group(2))
        if major < 17:
            raise StackError(f"{java} is Java {major}; Kafka 4.x needs Java 17+ (openjdk-17-jre-headless)")
    return java
