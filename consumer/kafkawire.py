"""The little of Kafka's wire protocol spoken by hand: the broker check (``consumer/brokercheck.py``) and the test
bed's readiness probe (``dev/teststack``) frame their requests and read their answers here.

A request is a size prefix, header v1 (api key, version, correlation id, client id) and a body; a response is a
size prefix, the correlation id and a body. Standard library only: ``dev/stack`` imports this module by path
with the system's python3, before any virtualenv exists.
"""

from __future__ import annotations

import socket
import struct

# recv() allocates the size it is asked for: a size prefix that is garbage must not become one huge buffer.
_CHUNK = 65536


def encode_request(api_key: int, version: int, correlation_id: int, client_id: bytes, body: bytes = b"") -> bytes:
    """A request with header v1 (api key, version, correlation id, client id) and its size prefix."""
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(header) + len(body)) + header + body


def encode_string(text: bytes) -> bytes:
    """A STRING: its length as INT16, then its bytes."""
    return struct.pack(">h", len(text)) + text


def recv_exact(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes or raise ``ConnectionResetError`` when the peer closes first."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), _CHUNK))
        if not chunk:
            raise ConnectionResetError("the connection was closed")
        data += chunk
    return bytes(data)


def recv_response_header(sock: socket.socket) -> tuple[int, int]:
    """The size prefix and the correlation id of the next response (its body is left unread)."""
    size, correlation_id = struct.unpack(">ii", recv_exact(sock, 8))
    return int(size), int(correlation_id)


def recv_frame(sock: socket.socket) -> bytes:
    """The next response without its size prefix (its correlation id first)."""
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    return recv_exact(sock, int(size))


class Decoder:
    """Reads a response's fields in order; a payload that ends too early raises ``struct.error``."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload
        self._offset = 0

    def _take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self._payload, self._offset)
        self._offset += struct.calcsize(fmt)
        return int(value)

    def int16(self) -> int:
        """The next INT16."""
        return self._take(">h")

    def int32(self) -> int:
        """The next INT32."""
        return self._take(">i")

    def string(self, errors: str = "strict") -> str | None:
        """The next NULLABLE_STRING (``None`` for null), decoded as UTF-8 with ``errors``."""
        length = self.int16()
        if length < 0:
            return None
        text = self._payload[self._offset : self._offset + length].decode(errors=errors)
        self._offset += length
        return text
