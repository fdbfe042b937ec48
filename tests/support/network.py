"""Loopback networking for tests: free ports, plain HTTP GETs, and a relay that slows a connection down."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import orjson


class SlowRelay:
    """A TCP relay on 127.0.0.1 to a real server (a Redis URL's): what a client sends reaches the server
    ``delay_s`` late, and nothing passes while paused. A slow network path on demand, the server untouched."""

    def __init__(self, url: str, delay_s: float) -> None:
        parts = urllib.parse.urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._delay_s = delay_s
        self._server = socket.create_server(("127.0.0.1", 0))
        port = self._server.getsockname()[1]
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
        self.url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def pause(self) -> None:
        """Hold everything not yet passed on (what a client sent less than ``delay_s`` ago, too)."""
        self._open.clear()

    def resume(self) -> None:
        """Pass on what was held, and everything after it."""
        self._open.set()

    def close(self) -> None:
        """Stop accepting and cut every relayed connection."""
        self._open.set()
        self._server.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, self._delay_s), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, 0.0), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, delay_s: float) -> None:
        try:
            while data := source.recv(65536):
                time.sleep(delay_s)
                self._open.wait()
                target.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answered(served: tuple[str, Mapping[str, str]], path: str) -> dict[str, Any]:
    """The JSON answer of ``path`` on an API served at ``served`` (its base URL and auth headers), which must be a
    200 with ``success`` true; returned without ``success``."""
    status, body = http_get(served[0] + path, served[1])
    assert status == 200, body
    found: dict[str, Any] = orjson.loads(body)
    assert found.pop("success") is True
    return found


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 15) -> tuple[int, bytes]:
    """Status and body of a GET (error statuses included)."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
