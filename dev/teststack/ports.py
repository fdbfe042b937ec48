"""Choosing loopback ports (explicit, remembered in ``ports.json``, the default, else a free one)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence

from teststack.layout import HOST, Paths
from teststack.output import StackError, progress


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``127.0.0.1:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) != 0


def free_port(avoid: Sequence[int] = ()) -> int:
    """A port that the kernel reports free on loopback (and not in ``avoid``)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        if port not in avoid:
            return port
    raise StackError("could not find a free loopback port")


def load_ports(paths: Paths) -> dict[str, int]:
    """Ports recorded by the previous ``up`` (empty when none)."""
    try:
        data = json.loads(paths.ports_file.read_text())
    except (OSError, ValueError):
        return {}
    return {key: int(value) for key, value in data.items() if isinstance(value, int)}


def save_ports(paths: Paths, ports: dict[str, int]) -> None:
    """Record the ports in use."""
    paths.ports_file.write_text(json.dumps(ports, indent=2, sort_keys=True) + "\n")


def choose_port(name: str, explicit: int | None, remembered: int | None, default: int, avoid: Sequence[int]) -> int:
    """Pick a port: an explicit one must be free; otherwise the remembered/default one, else any free one."""
    if explicit is not None:
        if not port_is_free(explicit):
            raise StackError(f"{name}: port {HOST}:{explicit} is taken by another process")
        return explicit
    for candidate in (remembered, default):
        if candidate is not None and candidate not in avoid and port_is_free(candidate):
            return candidate
    port = free_port(avoid)
    progress(f"{name}: port {remembered or default} is taken by something else, using {port}")
    return port


def env_port(name: str) -> int | None:
    """An integer port from the environment variable ``name`` (``None`` when unset)."""
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise StackError(f"{name}={value!r} is not a port number") from exc
