"""The broker's jars, copied from Maven Central through ``dev/kafka/pom.xml`` into a per-user cache."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from teststack.layout import KAFKA_PROJECT_DIR
from teststack.output import StackError, progress
from teststack.processes import run_quiet

KAFKA_VERSION = os.environ.get("STACK_KAFKA_VERSION", "4.1.1")
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


def jar_cache_dir(version: str = KAFKA_VERSION, env: dict[str, str] | None = None) -> Path:
    """Per-user cache of the broker jars for ``version`` (outside the repository, shared by all clones)."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".cache")
    return Path(base) / "active-users" / f"kafka-{version}"


def pom_digest() -> str:
    """Hash of the jar project (a changed pom invalidates the jar cache)."""
    return hashlib.sha256((KAFKA_PROJECT_DIR / "pom.xml").read_bytes()).hexdigest()


def ensure_kafka_jars(version: str = KAFKA_VERSION) -> Path:
    """The folder of the broker's runtime jars, copied from Maven Central on first use.

    The marker file is written only after a complete copy into a temporary folder that is then renamed,
    so an interrupted copy is simply redone.
    """
    cache = jar_cache_dir(version)
    libs = cache / "libs"
    marker = cache / "complete.json"
    digest = pom_digest()
    with contextlib.suppress(OSError, ValueError):
        info = json.loads(marker.read_text())
        if info.get("pom_sha256") == digest and libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
            return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError(
            f"the Kafka {version} jars are not cached in {libs} and Maven (mvn) is not installed to fetch them "
            "(Debian: apt-get install -y maven)"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock_handle:
        fcntl.flock(lock_handle, fcntl.LOCK_EX)
        marker.unlink(missing_ok=True)
        partial = cache / f"libs.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        cmd = [
            mvn, "-B", "-q", "-f", str(KAFKA_PROJECT_DIR / "pom.xml"),
            f"-Dkafka.version={version}",
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ]  # fmt: skip
        progress(f"downloading the Kafka {version} broker jars from Maven Central into {libs} (first run only)")
        started = time.monotonic()
        result = run_quiet(cmd)
        if result.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
            shutil.rmtree(partial, ignore_errors=True)
            raise StackError(
                f"Maven could not copy the Kafka jars (exit {result.returncode}): {' '.join(cmd)}\n"
                f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        jars = sorted(p.name for p in libs.glob("*.jar"))
        size = sum(p.stat().st_size for p in libs.glob("*.jar"))
        marker.write_text(json.dumps({"version": version, "pom_sha256": digest, "jars": jars}, indent=1) + "\n")
        progress(f"cached {len(jars)} jars ({size / 1e6:.0f} MB) in {time.monotonic() - started:.1f}s")
    return libs
