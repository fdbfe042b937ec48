"""The Lua scripts the writer, the reader and ``reindex`` run in Redis, one ``.lua`` file each in
``activeusers/lua/`` (shipped in the wheel), each called by its SHA-1.

Every script touches the keys of one user bucket only (one hash tag, so one Redis Cluster slot); what each one
does, and why it is shaped so, is said at the top of its file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from activeusers.days import DAY_S
from activeusers.keys import SLOTS

# Beside this module, in the wheel too (pyproject.toml's package data).
LUA_DIR: Final = Path(__file__).parent / "lua"


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, called by its SHA-1 (Redis' name for it, not a security measure)."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest())

    @classmethod
    def named(cls, name: str) -> Script:
        """The script of ``activeusers/lua/<name>.lua``."""
        return cls((LUA_DIR / f"{name}.lua").read_text(encoding="utf-8"))


# Numbers user ids in a bucket's ids hash and lists each new number's id in its names list, atomically.
NUMBER_USERS: Final = Script.named("number_users")
# Lists the ids of numbers given before the names list existed (reindex), where they belong.
APPEND_NAMES: Final = Script.named("append_names")
# Sets a bucket's bits of a batch and adds the bits that were new to the days' counters.
SET_BITS: Final = Script.named("set_bits")
# Moves a bucket's users' first active day earlier when a day of theirs precedes it (cohort=first's index).
FIRST_DAYS: Final = Script.named("first_days")
# Gives an indexed property's values their ids in its registry, capped, first come first served (segments).
REGISTER_VALUES: Final = Script.named("register_values")
# A new bitmap's room beyond the bucket's numbered users, for the users numbered later that day (SETBIT past a
# string's end reallocates it with room for as much again), and a counts key's size: set_bits.lua states them.
HEADROOM_MIN_BITS: Final = 64
HEADROOM_SHARE: Final = 64
COUNTS_BYTES: Final = 4 * SLOTS
# Forgets user ids (tombstones, retired numbers), clears their bits with the counters, and restores ids.
FORGET_USERS: Final = Script.named("forget_users")
CLEAR_BITS: Final = Script.named("clear_bits")
RESTORE_USERS: Final = Script.named("restore_users")
# Counts the users of unions of a bucket's bitmaps, keeping the unions of past days that many reads share.
UNION_COUNTS: Final = Script.named("union_counts")
# How long a kept union lives: the summary's windows end today all day, and a union of 89 past days is made once.
UNION_TTL_S: Final = DAY_S
