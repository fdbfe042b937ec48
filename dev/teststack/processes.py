"""The stack's processes: starting one detached, its pid file, stopping it, and one ``up``/``down`` at a time."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from teststack.layout import Paths
from teststack.output import progress


def read_pid(path: Path) -> int | None:
    """The pid in ``path``, or ``None``."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def process_alive(pid: int, needle: str) -> bool:
    """Whether ``pid`` runs (not a zombie) and its command line contains ``needle`` (guards pid reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    return state not in ("Z", "X") and needle in cmdline


def stop_pid(pid: int, needle: str, name: str, grace_s: float) -> None:
    """SIGTERM ``pid``, wait up to ``grace_s``, then SIGKILL; only when it is still our ``needle`` process."""
    if not process_alive(pid, needle):
        return
    progress(f"stopping {name} (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not process_alive(pid, needle):
            return
        time.sleep(0.1)
    progress(f"{name} (pid {pid}) did not stop within {grace_s:.0f}s: SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process_alive(pid, needle):
        time.sleep(0.1)


@contextlib.contextmanager
def locked(paths: Paths) -> Iterator[None]:
    """Hold an exclusive lock on the state directory (concurrent ``up`` calls run one after the other)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with paths.lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def spawn(cmd: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` detached (own session, no stdin), output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n=== dev/stack: {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc


def run_quiet(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (fixed argv, no shell) capturing its output as text."""
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)  # noqa: S603
