"""Two trees of the project side by side in one benchmark run: this tree and a baseline git ref.

The baseline is the ref's files (``git archive``) in a temporary directory outside the repository, run by the
same ``.venv`` interpreter with ``PYTHONPATH`` naming that directory: the same dependencies, that tree's code.
``python -m`` puts the working directory first on ``sys.path``, so each side's processes start in its own tree.
The ``active-users`` command finds its subcommands through entry points; the baseline directory gets a minimal
``.dist-info`` with the entry points of *its* ``pyproject.toml``, found before the editable install of this tree
(so a subcommand this tree added is not loaded from a tree that lacks it).

Each side writes the dataset through its own writer (``bench/treescript.py seed``) under its own key prefix, in the
same Redis, and serves it with its own ``active-users serve``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import REPO_ROOT, Server, service_env

from activeusers.settings import Settings

TREE_SCRIPT = Path(__file__).resolve().parent / "treescript.py"
API_REDIS_TIMEOUT_S = "60"


@dataclass(frozen=True)
class Side:
    """One tree of the project: its label in tables (``new``, ``baseline``), commit, root and settings."""

    label: str
    commit: str
    root: Path
    settings: Settings
    baseline: bool
    # A baseline whose files are this tree's: a comparison then measures run-to-run noise only.
    same_as_new: bool = False

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of this side's processes: its settings, and its tree first on the path."""
        # Today's API reading 100k-member day sets on a loaded machine can exceed the default 2 s Redis timeout
        # (answering 503): both sides get a long one, so a slow side is measured instead of failing.
        env = service_env(self.settings, BENCH_SIDE=self.label, REDIS_TIMEOUT=API_REDIS_TIMEOUT_S, **extra)
        if self.baseline:
            env["PYTHONPATH"] = str(self.root)
        else:
            env.pop("PYTHONPATH", None)
        return env

    def start(self, *args: str) -> subprocess.Popen[str]:
        """``bench/treescript.py ARGS`` in this side's tree, started (:func:`answer` waits for its JSON answer)."""
        argv = [sys.executable, str(TREE_SCRIPT), *args]
        return subprocess.Popen(argv, env=self.env(), cwd=self.root, stdout=subprocess.PIPE, text=True)

    def run(self, *args: str) -> Any:
        """``bench/treescript.py ARGS`` in this side's tree; its JSON answer."""
        return answer(self.start(*args))

    def api(self, log_dir: Path, name: str) -> Server:
        """This side's ``active-users serve`` on a free loopback port."""
        argv = [sys.executable, "-m", "activeusers.cli", "serve"]
        return Server(argv, self.env(), log_dir / f"{self.label}-{name}.log", cwd=self.root)


def answer(process: subprocess.Popen[str]) -> Any:
    """The JSON answer of a ``bench/treescript.py`` process (raises if it failed)."""
    out, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, process.args))}: exit {process.returncode}")
    return json.loads(out)


def resolve(ref: str) -> str:
    """The full commit id of ``ref`` in this repository."""
    done = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
        sys.exit(f"--baseline-ref {ref!r}: not a commit of this repository")
    return done.stdout.strip()


def same_tree(commit: str, root: Path = REPO_ROOT) -> bool:
    """Whether the tracked files of the tree at ``root`` equal ``commit``'s (a clean clone's HEAD beside its own
    merge-base with main)."""
    done = subprocess.run(["git", "diff", "--quiet", commit, "--"], cwd=root, check=False)
    return done.returncode == 0


def default_ref() -> str:
    """The merge-base of HEAD with ``main`` (what this branch started from), else HEAD."""
    done = subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    return done.stdout.strip() or "HEAD"


def _entry_points_shim(root: Path) -> None:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    info = root / f"{project['name'].replace('-', '_')}-0+bench.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: 0+bench\n")
    lines = []
    for group, points in {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@contextmanager
def baseline_tree(commit: str) -> Iterator[Path]:
    """The files of ``commit`` in a temporary directory (removed afterwards), ready to run with PYTHONPATH."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-baseline-{commit[:9]}-"))
    try:
        archive = subprocess.run(["git", "archive", commit], cwd=REPO_ROOT, stdout=subprocess.PIPE, check=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(root, filter="data")
        _entry_points_shim(root)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def side_settings(name: str, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment with a key prefix ``bench-<name>-<random>:`` of this side, UTC days."""
    prefix = f"bench-{name}-{uuid.uuid4().hex[:8]}:"
    return Settings.from_env({**(env or os.environ), "REDIS_KEY_PREFIX": prefix, "ACTIVITY_TIMEZONE": "UTC"})


@contextmanager
def sides(baseline_ref: str) -> Iterator[tuple[Side, Side]]:
    """(new, baseline): this tree and the baseline ref's tree, each with a key prefix of its own."""
    commit = resolve(baseline_ref)
    with baseline_tree(commit) as root:
        head = resolve("HEAD")
        new = Side("new", head, REPO_ROOT, side_settings("cmp-new"), baseline=False)
        old = Side("baseline", commit, root, side_settings("cmp-base"), baseline=True, same_as_new=same_tree(commit))
        yield new, old
