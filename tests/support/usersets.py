"""Inspecting :class:`activeusers.writer.UserSets` (a batch of the writer's) in tests."""

from __future__ import annotations

from activeusers.usersets import UserSets


def members(sets: UserSets) -> int:
    """How many (user, day / hour / creation day) additions the sets hold."""
    groups = (sets.days, sets.hours, sets.created)
    return sum(len(users) for group in groups for users in group.values())
