"""The plain Redis server and the TLS-only one: their start."""

from __future__ import annotations

from teststack.accounts import SECURE_USER, write_acl
from teststack.layout import HOST, Paths
from teststack.output import progress
from teststack.processes import spawn
from teststack.rediscommands import redis_command, redis_tls_command
from teststack.services import wait_until_ready
from teststack.tools import ensure_redis_server


def start_redis(paths: Paths, port: int, aof: bool, timeout: float) -> None:
    """Start the private Redis server and wait for PONG."""
    redis_bin = ensure_redis_server()
    paths.redis_data.mkdir(parents=True, exist_ok=True)
    proc = spawn(redis_command(redis_bin, port, paths, aof), paths.log_file("redis"), paths.redis_data)
    pid = proc.pid
    paths.pid_file("redis").write_text(f"{pid}\n")
    (paths.root / "redis.mode").write_text("aof\n" if aof else "memory\n")
    took = wait_until_ready(paths, "redis", pid, port, timeout, proc)
    progress(f"redis: started pid {pid} on {HOST}:{port} ({'AOF' if aof else 'no persistence'}, {took:.1f}s)")


def start_redis_tls(paths: Paths, port: int, timeout: float) -> None:
    """Start the TLS-only Redis with its ACL users and wait until the service's user gets PONG."""
    redis_bin = ensure_redis_server()
    write_acl(paths, paths.redis_tls_data)
    proc = spawn(redis_tls_command(redis_bin, port, paths), paths.log_file("redis-tls"), paths.redis_tls_data)
    pid = proc.pid
    paths.pid_file("redis-tls").write_text(f"{pid}\n")
    took = wait_until_ready(paths, "redis-tls", pid, port, timeout, proc)
    progress(f"redis-tls: started pid {pid} on {HOST}:{port} (TLS only, ACL user {SECURE_USER}, {took:.1f}s)")
