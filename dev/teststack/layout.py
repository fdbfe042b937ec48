"""Where the stack lives: its loopback address and default ports, its Redis Clusters, and every file and folder
under its state directory (``$STACK_DIR``, default ``.stack`` in the repository root)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
KAFKA_PROJECT_DIR = REPO_ROOT / "dev" / "kafka"
HOST = "127.0.0.1"
DEFAULT_REDIS_PORT = 6390
DEFAULT_KAFKA_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
DEFAULT_SASL_SSL_PORT = 19094
DEFAULT_REDIS_TLS_PORT = 6391
DEFAULT_REDIS_CLUSTER_PORT = 6392
DEFAULT_REDIS_CLUSTER_TLS_PORT = 6395
CLUSTER_NODES = 3
CLUSTER_BUS_OFFSET = 10000  # Redis' fixed distance between a node's port and its cluster bus port


@dataclass(frozen=True)
class Cluster:
    """One of the stack's Redis Clusters of ``CLUSTER_NODES`` masters: ``--cluster`` starts the plaintext one,
    ``--cluster --secure`` also the TLS-only one (client certificates required, the ACL users, the cluster bus
    and replication over TLS too)."""

    name: str  # its services are <name>-0, <name>-1, ...; its nodes' folders $STACK_DIR/<name>/node-<i>
    port_key: str  # its first node's port in ports.json, its --<key>-port option, STACK_<KEY>_PORT
    default_port: int
    tls: bool

    @property
    def services(self) -> list[str]:
        """The service name of each node, in port order."""
        return [f"{self.name}-{index}" for index in range(CLUSTER_NODES)]

    @property
    def env_var(self) -> str:
        """The environment variable that chooses the first node's port when the option is not given."""
        return f"STACK_{self.port_key.upper()}_PORT"


PLAIN_CLUSTER = Cluster("redis-cluster", "redis_cluster", DEFAULT_REDIS_CLUSTER_PORT, tls=False)
TLS_CLUSTER = Cluster("redis-cluster-tls", "redis_cluster_tls", DEFAULT_REDIS_CLUSTER_TLS_PORT, tls=True)
CLUSTERS = (PLAIN_CLUSTER, TLS_CLUSTER)


def cluster_ports(first: int) -> list[int]:
    """The client ports of the cluster's nodes."""
    return [first + index for index in range(CLUSTER_NODES)]


@dataclass(frozen=True)
class Paths:
    """Every file and folder that the stack reads or writes under its state directory."""

    root: Path

    @property
    def logs(self) -> Path:
        """Folder of the service logs."""
        return self.root / "logs"

    @property
    def kafka_data(self) -> Path:
        """Kafka ``log.dirs`` (also the KRaft metadata log)."""
        return self.root / "kafka-data"

    @property
    def redis_data(self) -> Path:
        """Redis working directory (AOF files when ``--redis-aof``)."""
        return self.root / "redis-data"

    @property
    def env_file(self) -> Path:
        """Shell-sourceable file with the connection settings."""
        return self.root / "env"

    @property
    def ports_file(self) -> Path:
        """The ports chosen last time, reused so a restarted broker keeps its address."""
        return self.root / "ports.json"

    @property
    def server_properties(self) -> Path:
        """The broker's configuration, rewritten on every start."""
        return self.root / "server.properties"

    @property
    def redis_tls_data(self) -> Path:
        """Working directory of the TLS-only Redis (``--secure``)."""
        return self.root / "redis-tls-data"

    def cluster_data(self, cluster: Cluster) -> Path:
        """Working directories of a cluster's nodes (``node-<i>/nodes.conf``)."""
        return self.root / cluster.name

    def cluster_node_dir(self, cluster: Cluster, index: int) -> Path:
        """Working directory (and ``nodes.conf``) of node ``index`` of ``cluster``."""
        return self.cluster_data(cluster) / f"node-{index}"

    @property
    def tls(self) -> Path:
        """The generated CA, server and client certificates and keys, and the broker's keystore."""
        return self.root / "tls"

    @property
    def secrets(self) -> Path:
        """Generated passwords (mode 0600) and the TLS servers' ACL file."""
        return self.root / "secrets"

    @property
    def acl_file(self) -> Path:
        """The ACL users of every TLS Redis server (the TLS Redis and the TLS cluster's nodes)."""
        return self.secrets / "redis-users.acl"

    @property
    def secure_env_file(self) -> Path:
        """Shell-sourceable settings that reach the secured services (``--secure``)."""
        return self.root / "secure.env"

    @property
    def lock_file(self) -> Path:
        """Serializes concurrent ``up``/``down`` invocations."""
        return self.root / ".lock"

    def pid_file(self, service: str) -> Path:
        """Pid file of ``service`` (``redis``, ``redis-tls``, ``redis-cluster[-tls]-<i>`` or ``kafka``)."""
        return self.root / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        """Log file of ``service``."""
        return self.logs / f"{service}.log"


def stack_paths() -> Paths:
    """The state directory: ``$STACK_DIR`` or ``.stack`` in the repository root."""
    override = os.environ.get("STACK_DIR")
    return Paths(Path(override).resolve() if override else REPO_ROOT / ".stack")
