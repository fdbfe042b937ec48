"""The broker: its KRaft storage (formatted with the SCRAM credential) and its start."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from teststack.accounts import SCRAM_MECHANISM, SECURE_USER, scram_marker, secret
from teststack.kafkaconfig import SecureListener, kafka_java_command, render_server_properties
from teststack.kafkajars import KAFKA_VERSION, ensure_kafka_jars
from teststack.layout import HOST, KAFKA_PROJECT_DIR, Paths
from teststack.output import StackError, progress, with_log_tail
from teststack.processes import run_quiet, spawn
from teststack.services import wait_until_ready
from teststack.tls import tls_ready
from teststack.tools import ensure_java


def format_kafka_storage(paths: Paths, java: str, libs: Path) -> None:
    """Format the KRaft storage (only when ``meta.properties`` does not exist yet), with the SCRAM credential of
    the ``SASL_SSL`` listener (harmless while the broker has no such listener)."""
    if (paths.kafka_data / "meta.properties").exists():
        return
    log4j = KAFKA_PROJECT_DIR / "log4j2.properties"
    result = run_quiet(kafka_java_command(java, libs, log4j, "kafka.tools.StorageTool", "random-uuid"))
    cluster_id = result.stdout.strip().splitlines()[-1].strip() if result.stdout.strip() else ""
    if result.returncode != 0 or not re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id):
        raise StackError(f"kafka StorageTool random-uuid failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    password = secret(paths, "kafka-password")
    scram = f"{SCRAM_MECHANISM}=[name={SECURE_USER},password={password}]"
    args = ["format", "--standalone", "-t", cluster_id, "-c", str(paths.server_properties), "-g"]
    result = run_quiet(kafka_java_command(java, libs, log4j, "kafka.tools.StorageTool", *args, "--add-scram", scram))
    if result.returncode != 0:
        output = (result.stdout + result.stderr).replace(password, "***")
        raise StackError(f"kafka StorageTool format failed ({result.returncode}):\n{output}")
    (paths.kafka_data / ".stack-scram").write_text(scram_marker(password) + "\n")
    progress(f"kafka: formatted storage in {paths.kafka_data} (cluster id {cluster_id}, SCRAM user {SECURE_USER})")


def _stale_storage(paths: Paths, wanted_ports: str, secure: bool) -> str | None:
    """Why the formatted storage cannot be used as it is (``None`` when it can or there is none)."""
    if not (paths.kafka_data / "meta.properties").exists():
        return None
    ports_marker = paths.kafka_data / ".stack-ports"
    previous = ports_marker.read_text().strip() if ports_marker.exists() else ""
    if previous != wanted_ports:
        # The KRaft voter set stores the controller endpoint: a different port needs a fresh cluster.
        return f"ports changed ({previous or '?'} -> {wanted_ports})"
    scram = paths.kafka_data / ".stack-scram"
    if secure and (not scram.exists() or scram.read_text().strip() != scram_marker(secret(paths, "kafka-password"))):
        # SCRAM credentials are created at format time: storage formatted without them (or with another
        # password) is formatted again.
        return "the storage has no SCRAM credential for the secure listener"
    return None


def start_kafka(
    paths: Paths, kafka_port: int, controller_port: int, timeout: float, secure: SecureListener | None = None
) -> None:
    """Write the config, format storage when needed, start the broker and wait for a metadata answer (and for
    a TLS handshake on the SASL_SSL listener when ``secure`` is given)."""
    java = ensure_java()
    libs = ensure_kafka_jars()
    wanted = f"{kafka_port} {controller_port}"
    stale = _stale_storage(paths, wanted, secure is not None)
    if stale:
        progress(f"kafka: {stale}: wiping {paths.kafka_data} and formatting it again")
        shutil.rmtree(paths.kafka_data)
    paths.kafka_data.mkdir(parents=True, exist_ok=True)
    props = render_server_properties(kafka_port, controller_port, paths.kafka_data, secure)
    paths.server_properties.write_text(props)
    paths.server_properties.chmod(0o600)  # it holds the keystore password
    format_kafka_storage(paths, java, libs)
    (paths.kafka_data / ".stack-ports").write_text(wanted + "\n")
    log4j = KAFKA_PROJECT_DIR / "log4j2.properties"
    cmd = kafka_java_command(java, libs, log4j, "kafka.Kafka", str(paths.server_properties))
    proc = spawn(cmd, paths.log_file("kafka"), paths.root)
    pid = proc.pid
    paths.pid_file("kafka").write_text(f"{pid}\n")
    progress(f"kafka: started pid {pid}, waiting for the broker on {HOST}:{kafka_port} (up to {timeout:.0f}s)")
    took = wait_until_ready(paths, "kafka", pid, kafka_port, timeout, proc)
    if secure is not None:
        _wait_for_tls(paths, secure.port, timeout)
    extra = f", SASL_SSL on {HOST}:{secure.port}" if secure is not None else ""
    progress(f"kafka: broker {KAFKA_VERSION} ready on {HOST}:{kafka_port}{extra} after {took:.1f}s")


def _wait_for_tls(paths: Paths, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (reason := tls_ready(port, paths)) is not None:
        if time.monotonic() > deadline:
            raise StackError(
                with_log_tail(
                    f"kafka: no TLS handshake on {HOST}:{port} within {timeout:.0f}s ({reason})",
                    paths.log_file("kafka"),
                )
            )
        time.sleep(0.25)
