"""The stack's users and their passwords: the generated secrets, the TLS Redis servers' ACL file and the
broker's SCRAM credential."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from teststack.layout import Paths

SECURE_USER = "active-users"
# The TLS servers' second ACL user, with every right, for dev/stack's own work (``redis-cli --cluster create``) and
# an operator's look (``ACL LOG``); the service never uses it.
STACK_ADMIN = "stack-admin"
# The least the consumer, the API and the CLI need, as ACL rules: redis-py's handshake and health checks, a cluster
# client's slot map, command table and ASK redirections, the API's readiness check on a cluster, scripts (loaded,
# then run by hash) and every command they and the services send. No pub/sub channels, nothing @admin or
# @dangerous (FLUSHALL, CONFIG, KEYS, DEBUG, ...). Keys: every key here; a deployment narrows ``~*`` to
# ``~<REDIS_KEY_PREFIX>*``.
SERVICE_RIGHTS = (
    "resetchannels", "~*", "-@all",
    "+auth", "+hello", "+ping", "+select",
    "+cluster|slots", "+cluster|info", "+command", "+asking",
    "+script|load", "+evalsha", "+time",
    "+scard", "+sscan", "+scan",
    "+hset", "+hget", "+hmget", "+hgetall", "+hscan", "+hdel", "+hlen",
    "+llen", "+lindex", "+lrange", "+lset", "+rpush",
    "+get", "+mget", "+set", "+del", "+exists", "+expire", "+expireat", "+pexpire", "+incrby", "+multi", "+exec",
    "+setbit", "+bitfield", "+bitop", "+bitcount",
    "+zadd", "+zrevrange", "+zrem", "+zremrangebyscore",
)  # fmt: skip
SCRAM_MECHANISM = "SCRAM-SHA-512"


def secret(paths: Paths, name: str) -> str:
    """The generated password ``name`` (created, mode 0600, on first use; kept until ``down --purge``)."""
    path = paths.secrets / name
    if not path.exists():
        paths.secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = path.with_name(f".{name}.{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))  # no trailing newline: the file is the password
        partial.replace(path)
    return path.read_text()


def render_redis_acl(password: str, admin_password: str) -> str:
    """The TLS servers' ACL file: the service's user with ``SERVICE_RIGHTS``, the stack's admin user with every
    right, the passwordless ``default`` user off."""
    return (
        f"user {SECURE_USER} on >{password} {' '.join(SERVICE_RIGHTS)}\n"
        f"user {STACK_ADMIN} on >{admin_password} ~* &* +@all\n"
        "user default off\n"
    )


def _acl_text(paths: Paths) -> str:
    return render_redis_acl(secret(paths, "redis-password"), secret(paths, "redis-admin-password"))


def write_acl(paths: Paths, folder: Path) -> None:
    """Write the ACL file (mode 0600) for a TLS server about to start in ``folder``, and note there which ACL it
    starts with (a digest, never the passwords): :func:`acl_current` tells a reused server that has another."""
    text = _acl_text(paths)
    partial = paths.acl_file.with_name(f".{paths.acl_file.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    partial.replace(paths.acl_file)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".stack-acl").write_text(hashlib.sha256(text.encode()).hexdigest() + "\n")


def acl_current(paths: Paths, folder: Path) -> bool:
    """Whether the TLS server of ``folder`` was started with the ACL users and rights this ``dev/stack`` gives."""
    marker = folder / ".stack-acl"
    wanted = hashlib.sha256(_acl_text(paths).encode()).hexdigest()
    return marker.exists() and marker.read_text().strip() == wanted


def scram_marker(password: str) -> str:
    """What ``.stack-scram`` holds: which SCRAM credential the storage was formatted with (never the password)."""
    return f"{SECURE_USER} {SCRAM_MECHANISM} sha256:{hashlib.sha256(password.encode()).hexdigest()}"
