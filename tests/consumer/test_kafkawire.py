"""Kafka's wire framing as the broker check and dev/stack speak it: requests, response frames, field decoding, and
that the module stays importable by dev/stack before any virtualenv exists."""

from __future__ import annotations

import ast
import socket
import struct
import sys
from pathlib import Path

import pytest

from consumer import kafkawire


def test_a_request_is_its_size_header_v1_and_body() -> None:
    request = kafkawire.encode_request(17, 1, 0x61750001, b"client", kafkawire.encode_string(b"PLAIN"))
    (size,) = struct.unpack(">i", request[:4])
    assert size == len(request) - 4
    assert struct.unpack(">hhih", request[4:14]) == (17, 1, 0x61750001, 6)
    assert request[14:20] == b"client"
    assert request[20:] == b"\x00\x05PLAIN"


def test_frames_are_read_whole_and_headers_alone() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(struct.pack(">ii", 6, 7) + b"\x00\x21" + struct.pack(">ii", 8, 9) + b"rest")
        assert kafkawire.recv_response_header(left) == (6, 7)
        assert kafkawire.recv_exact(left, 2) == b"\x00\x21"
        assert kafkawire.recv_frame(left) == struct.pack(">i", 9) + b"rest"
        right.close()
        with pytest.raises(ConnectionResetError):
            kafkawire.recv_exact(left, 1)


def test_the_decoder_reads_fields_in_order_and_refuses_a_short_payload() -> None:
    payload = struct.pack(">hi", 33, 2) + kafkawire.encode_string(b"SCRAM") + struct.pack(">h", -1) + b"\xff"
    answer = kafkawire.Decoder(payload)
    assert (answer.int16(), answer.int32(), answer.string(), answer.string()) == (33, 2, "SCRAM", None)
    with pytest.raises(struct.error):
        answer.int32()
    bad = kafkawire.Decoder(kafkawire.encode_string(b"\xff"))
    assert bad.string(errors="replace") == "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        kafkawire.Decoder(kafkawire.encode_string(b"\xff")).string()


def test_it_imports_only_the_standard_library() -> None:
    """dev/stack runs it with the system's python3, before any virtualenv (and the service's packages) exist."""
    tree = ast.parse(Path(kafkawire.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= sys.stdlib_module_names | {"__future__"}
