"""The seeded datasets, as plain data: no project imports, so a benchmark can replay the same dataset through
the writer of another tree of the project (``bench/treescript.py``) as through this one (``common.write_dataset``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

# One user in NEW_SHARE of each day's active users is also created that day (new-user sets).
NEW_SHARE = 50
# Rocket.Chat's id alphabet (Random.id(): 17 characters without look-alikes), so sets hold realistic members.
ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"
ID_CHARS = 17


@dataclass(frozen=True)
class Dataset:
    """A seeded population: ``dau`` of ``users`` active on each of the ``days`` days ending today."""

    name: str
    users: int
    dau: int
    days: int
    seed: int = 20260

    def describe(self) -> str:
        return f"{self.users:,} users, {self.dau:,} daily active, {self.days} days, seed {self.seed}"


STANDARD = Dataset("standard", users=50_000, dau=10_000, days=90)
LARGE = Dataset("large", users=500_000, dau=100_000, days=90)
DATASETS = {data.name: data for data in (STANDARD, LARGE)}


@dataclass(frozen=True)
class DayActivity:
    """One day of the dataset: each active user with its one hour, and the users created that day."""

    day: date
    active: list[tuple[str, int]]
    created: list[str]


def user_ids(count: int, seed: int) -> list[str]:
    """``count`` distinct Rocket.Chat-style ids, the same for the same seed."""
    rng = random.Random(seed)
    seen: set[str] = set()
    ids: list[str] = []
    while len(ids) < count:
        candidate = "".join(rng.choices(ID_ALPHABET, k=ID_CHARS))
        if candidate not in seen:
            seen.add(candidate)
            ids.append(candidate)
    return ids


def activity(data: Dataset, last_day: date) -> Iterator[DayActivity]:
    """The dataset's days, oldest first, ending ``last_day``: the same users and hours for the same seed."""
    population = user_ids(data.users, data.seed)
    rng = random.Random(data.seed + 1)
    for i in range(data.days):
        day = last_day - timedelta(days=data.days - 1 - i)
        hours = rng.choices(range(24), k=data.dau)
        active = list(zip(rng.sample(population, data.dau), hours, strict=True))
        created = rng.sample(population, data.dau // NEW_SHARE)
        yield DayActivity(day, active, created)
