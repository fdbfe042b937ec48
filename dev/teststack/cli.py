"""The command line of ``dev/stack``: ``up``, ``status`` and ``down``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from teststack.down import cmd_down
from teststack.layout import (
    CLUSTER_BUS_OFFSET,
    CLUSTER_NODES,
    DEFAULT_CONTROLLER_PORT,
    DEFAULT_KAFKA_PORT,
    DEFAULT_REDIS_CLUSTER_PORT,
    DEFAULT_REDIS_CLUSTER_TLS_PORT,
    DEFAULT_REDIS_PORT,
    DEFAULT_REDIS_TLS_PORT,
    DEFAULT_SASL_SSL_PORT,
)
from teststack.output import StackError
from teststack.status import cmd_status
from teststack.up import cmd_up

DEFAULT_TIMEOUT_S = 90.0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="dev/stack",
        description="Run a real Kafka broker and Redis server on loopback for tests, demos and benchmarks.",
        epilog="State lives in $STACK_DIR (default: .stack/ in the repository root).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (or reuse) Redis and Kafka and write .stack/env")
    up.add_argument(
        "--redis-aof",
        action="store_true",
        help="Redis with appendonly yes, appendfsync everysec (a running server is switched in place; "
        "without the flag a running server is reused as it is)",
    )
    up.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for each service")
    up.add_argument("--redis-port", type=int, help=f"Redis port (default {DEFAULT_REDIS_PORT}, else a free one)")
    up.add_argument("--kafka-port", type=int, help=f"broker port (default {DEFAULT_KAFKA_PORT}, else a free one)")
    up.add_argument("--controller-port", type=int, help=f"controller port (default {DEFAULT_CONTROLLER_PORT})")
    up.add_argument(
        "--secure",
        action="store_true",
        help="also a SASL_SSL listener (SCRAM-SHA-512, client certificates) on the broker and a TLS-only Redis "
        "with an ACL user; writes .stack/secure.env (a running broker without that listener is restarted)",
    )
    up.add_argument("--sasl-ssl-port", type=int, help=f"SASL_SSL listener port (default {DEFAULT_SASL_SSL_PORT})")
    up.add_argument("--redis-tls-port", type=int, help=f"TLS Redis port (default {DEFAULT_REDIS_TLS_PORT})")
    up.add_argument(
        "--cluster",
        action="store_true",
        help=f"also a Redis Cluster of {CLUSTER_NODES} masters (no replicas) on loopback; adds REDIS_CLUSTER_URL "
        "to .stack/env (a running cluster is reused); with --secure also a TLS-only cluster with the TLS Redis's "
        "ACL users and certificates, its REDIS_CLUSTER_URL in .stack/secure.env",
    )
    bus = f"the nodes use P..P+{CLUSTER_NODES - 1}, their cluster bus ports +{CLUSTER_BUS_OFFSET}"
    up.add_argument(
        "--redis-cluster-port",
        type=int,
        help=f"first cluster node's port (default {DEFAULT_REDIS_CLUSTER_PORT}; {bus})",
    )
    up.add_argument(
        "--redis-cluster-tls-port",
        type=int,
        help=f"first TLS cluster node's port (--cluster --secure; default {DEFAULT_REDIS_CLUSTER_TLS_PORT}; {bus})",
    )
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop the services started by up")
    down.add_argument("--purge", action="store_true", help="also delete the Kafka/Redis data and the logs")
    down.set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="show each service; exit 1 when one is not running")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StackError as exc:
        print(f"dev/stack {args.command}: ERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"dev/stack {args.command}: interrupted", file=sys.stderr)
        return 130
