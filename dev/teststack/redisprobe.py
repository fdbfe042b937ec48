"""Whether a Redis server or cluster is up: single commands in the Redis protocol (RESP) over a raw socket,
over TLS as the service's ACL user for the TLS servers."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from teststack.accounts import SECURE_USER
from teststack.layout import CLUSTER_NODES, HOST, Paths
from teststack.tls import tls_client_context


def encode_redis_command(*args: str) -> bytes:
    """One command in the Redis protocol (RESP)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def redis_call(port: int, *args: str, timeout: float = 5.0) -> bytes:
    """Send one command to Redis on ``127.0.0.1:port`` and return the first line of its reply."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(encode_redis_command(*args))
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.strip()


def _reply_line(sock: socket.socket) -> tuple[bytes, bytes]:
    """The first line of a reply (without its CRLF) and what was read after it."""
    reply = b""
    while b"\r\n" not in reply:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"connection closed by peer (after {reply!r})")
        reply += chunk
    line, _, rest = reply.partition(b"\r\n")
    return line, rest


@contextlib.contextmanager
def redis_socket(port: int, timeout: float, tls: Paths | None = None) -> Iterator[socket.socket]:
    """A connection to the Redis on ``127.0.0.1:port``; with ``tls`` over TLS, presenting the stack's client
    certificate and authenticated as the service's ACL user (the TLS servers have no passwordless user)."""
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        if tls is None:
            yield raw
            return
        with tls_client_context(tls).wrap_socket(raw, server_hostname=HOST) as sock:
            sock.sendall(encode_redis_command("AUTH", SECURE_USER, (tls.secrets / "redis-password").read_text()))
            answer, _ = _reply_line(sock)
            if answer != b"+OK":
                raise ConnectionError(f"AUTH as {SECURE_USER} answered {answer!r}")
            yield sock


def redis_bulk(port: int, *args: str, timeout: float = 5.0, tls: Paths | None = None) -> str:
    """Send one command whose reply is a bulk string (``CLUSTER INFO``) and return that string."""
    with redis_socket(port, timeout, tls) as sock:
        sock.sendall(encode_redis_command(*args))
        header, body = _reply_line(sock)
        if not header.startswith(b"$"):
            raise ConnectionError(f"unexpected reply {header!r}")
        size = int(header[1:])
        while len(body) < size:
            chunk = sock.recv(size - len(body) + 2)
            if not chunk:
                raise ConnectionError("connection closed by peer")
            body += chunk
    return body[:size].decode(errors="replace")


def redis_ready(port: int, timeout: float = 2.0, tls: Paths | None = None) -> str | None:
    """``None`` when Redis on ``127.0.0.1:port`` answers PING with PONG (``tls``: a TLS server, over TLS and as
    the service's ACL user), else why not."""
    try:
        with redis_socket(port, timeout, tls) as sock:
            sock.sendall(b"PING\r\n")
            reply, _ = _reply_line(sock)
    except OSError as exc:  # ssl.SSLError included
        return f"{type(exc).__name__}: {exc}"
    if reply == b"+PONG":
        return None
    return f"unexpected reply {reply!r}"


def parse_cluster_info(text: str) -> dict[str, str]:
    """``CLUSTER INFO``'s ``field:value`` lines as a mapping."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        field, sep, value = line.strip().partition(":")
        if sep:
            found[field] = value
    return found


def cluster_problem(port: int, timeout: float = 3.0, tls: Paths | None = None) -> str | None:
    """``None`` when the cluster node on ``port`` reports ``cluster_state:ok`` with every slot served by its
    ``CLUSTER_NODES`` known nodes, else why not (``tls``: a node of the TLS cluster)."""
    try:
        info = parse_cluster_info(redis_bulk(port, "CLUSTER", "INFO", timeout=timeout, tls=tls))
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    state, known, slots = info.get("cluster_state"), info.get("cluster_known_nodes"), info.get("cluster_slots_ok")
    if state == "ok" and known == str(CLUSTER_NODES) and slots == "16384":
        return None
    return f"cluster_state:{state} cluster_known_nodes:{known} cluster_slots_ok:{slots}"
