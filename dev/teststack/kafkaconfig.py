"""The broker's configuration: ``server.properties`` (a single-node KRaft broker+controller on loopback, with
the ``SASL_SSL`` listener for ``--secure``) and its ``java`` command line."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from teststack.accounts import SCRAM_MECHANISM, secret
from teststack.layout import HOST, Paths

KAFKA_HEAP_OPTS = ["-Xms256m", "-Xmx768m"]
KAFKA_JVM_OPTS = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]


@dataclass(frozen=True)
class SecureListener:
    """The broker's ``SASL_SSL`` listener: its port and the server's keystore; clients are checked against the
    CA in ``truststore`` (PEM) and must present a certificate."""

    port: int
    keystore: Path
    keystore_password: str
    truststore: Path


def render_server_properties(
    kafka_port: int, controller_port: int, data_dir: Path, secure: SecureListener | None = None
) -> str:
    """``server.properties`` for a single-node combined broker+controller (KRaft) on loopback, with a
    ``SASL_SSL`` listener (SCRAM-SHA-512 over TLS) when ``secure`` is given."""
    listeners = f"PLAINTEXT://{HOST}:{kafka_port},CONTROLLER://{HOST}:{controller_port}"
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if secure is not None:
        listeners += f",SASL_SSL://{HOST}:{secure.port}"
        protocols += ",SASL_SSL:SASL_SSL"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{HOST}:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        # One node: a single __consumer_offsets partition makes the first group join fast.
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        # A broker restarted after kill -9 must wait for its old session to expire before it may register
        # again (DUPLICATE_BROKER_REGISTRATION): 4 s instead of the default 9 s.
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "4000",
    }
    if secure is not None:
        prefix = "listener.name.sasl_ssl."
        props.update(
            {
                "sasl.enabled.mechanisms": SCRAM_MECHANISM,
                f"{prefix}{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                ),
                f"{prefix}ssl.keystore.type": "PKCS12",
                f"{prefix}ssl.keystore.location": str(secure.keystore),
                f"{prefix}ssl.keystore.password": secure.keystore_password,
                f"{prefix}ssl.truststore.type": "PEM",
                f"{prefix}ssl.truststore.location": str(secure.truststore),
                f"{prefix}ssl.client.auth": "required",
            }
        )
    lines = ["# Written by dev/stack up (rewritten on every broker start)."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def kafka_java_command(java: str, libs: Path, log4j_config: Path, main_class: str, *args: str) -> list[str]:
    """A ``java`` command line running ``main_class`` with the cached broker jars on the classpath."""
    heap = os.environ.get("KAFKA_HEAP_OPTS", "").split() or KAFKA_HEAP_OPTS
    return [
        java,
        *heap,
        *KAFKA_JVM_OPTS,
        f"-Dlog4j2.configurationFile={log4j_config}",
        "-cp",
        f"{libs}/*",
        main_class,
        *args,
    ]


def secure_listener(paths: Paths, port: int) -> SecureListener:
    """The broker's SASL_SSL listener on ``port`` with the stack's keystore and CA."""
    return SecureListener(port, paths.tls / "server.p12", secret(paths, "keystore-password"), paths.tls / "ca.pem")


def broker_listeners(paths: Paths) -> str:
    """The ``listeners`` line of the broker's current ``server.properties`` (empty when there is none)."""
    try:
        text = paths.server_properties.read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("listeners="):
            return line.split("=", 1)[1]
    return ""
