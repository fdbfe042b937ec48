"""What a benchmark needs from one tree of the project, run with that tree's packages on the path.

``bench/compare.py`` runs this script twice: once with this tree's packages and once with a baseline tree's
(``PYTHONPATH=<baseline tree>``), so each side writes the dataset through its own writer and describes its own
key layout. It imports only the project's packages (whichever tree is on the path) and ``bench/dataset.py``.

Subcommands (settings from the environment: REDIS_URL, REDIS_KEY_PREFIX, ACTIVITY_TIMEZONE, ...), each prints
one JSON document on stdout:

- ``seed NAME DAYS YYYY-MM-DD``: write dataset NAME (``standard`` or ``large``) of DAYS days ending that day
  through the tree's ``ActivityWriter``; prints the (user, day) pairs and the seconds it took.
- ``schema``: the tree's key kinds as regular expressions, derived from its ``KeySchema`` methods (each called
  with sentinel arguments), and the retention settings (days) the tree has.
- ``token``: a token with the dashboard permission, created through the tree's token store.
- ``touch YYYY-MM-DD``: write one activity of the user ``TOUCH_USER`` on that day (what a consumer does all day
  long while users are active: after the first time the data stays the same, but a tree with index versions
  gets a new one for that day).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import re
import sys
import time
import typing
from collections.abc import Callable, Iterable
from dataclasses import fields, is_dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import redis
from dataset import DATASETS, Dataset, DayActivity, activity

import activeusers
import api
from activeusers.days import day_start_ms
from activeusers.keys import KeySchema
from activeusers.settings import Settings
from api.auth import VIEW_ENGAGEMENT_DASHBOARD
from api.tokens import TokenStore

TOUCH_USER = "bench-touch-user"
SENTINEL_DATE = date(1999, 12, 31)
SENTINEL_INT = 987_654_321
SENTINEL_TEXT = "QQsentinelQQ"
# The retention settings a tree may have; each names the days a kind of key is kept.
RETENTIONS = ("retention_days", "member_retention_days", "hour_retention_days")
# KeySchema fields filled from the settings of the same meaning when the schema has them.
SCHEMA_FIELDS = {"prefix": "redis_key_prefix", "zone_name": "activity_timezone", "buckets": "user_buckets"}
# Constructors from settings a tree's KeySchema may have.
SCHEMA_FACTORIES = ("of", "from_settings")


def _own_module(*names: str) -> Any:
    """The first of the modules ``names`` that the imported ``activeusers`` package has, imported. Looked up in
    the package's own directory: the editable install's finder would find this tree's module for a baseline tree
    too (a baseline tree has ``activeusers/store.py``, this one ``writer.py``, ``reader.py`` ...)."""
    package = _package_dir()
    for name in names:
        if (package / f"{name.rsplit('.', 1)[1]}.py").exists():
            return importlib.import_module(name)
    raise ImportError(f"none of {', '.join(names)} in {package}")


def _package_dir() -> Path:
    """The directory of the imported ``activeusers`` package."""
    return Path(activeusers.__file__).parent


# The writer and its batch: in ``activeusers.writer`` since issue 22, in ``activeusers.store`` before.
_WRITER = _own_module("activeusers.writer", "activeusers.store")
ActivityWriter = _WRITER.ActivityWriter
UserSets = _WRITER.UserSets
# The values of the platform property a user reports on a day (bench/segments.py's).
Platforms = Callable[[str, date], Iterable[str]]


def _async_redis_client(settings: Settings) -> Any:
    """The tree's asyncio client factory: in ``activeusers.connections`` since issue 23, in
    ``activeusers.redisconn`` from issue 14, in ``activeusers.store`` before (a baseline tree)."""
    return _own_module("activeusers.connections", "activeusers.redisconn", "activeusers.store").async_redis_client(
        settings
    )


def schema_of(settings: Settings) -> KeySchema:
    """The tree's key schema for these settings (its constructor from settings if it has one, else its fields
    filled from the settings by name)."""
    for name in SCHEMA_FACTORIES:
        factory = getattr(KeySchema, name, None)
        if factory is not None:
            return typing.cast(KeySchema, factory(settings))
    assert is_dataclass(KeySchema)
    values = {}
    for f in fields(KeySchema):
        source = SCHEMA_FIELDS.get(f.name, f.name)
        if hasattr(settings, source):
            values[f.name] = getattr(settings, source)
    return KeySchema(**values)


def writer_of(client: redis.Redis, settings: Settings) -> Any:
    """The tree's writer for these settings: its constructor from settings if it has one (since issue 23), else
    built from :func:`schema_of`."""
    of = getattr(ActivityWriter, "of", None)
    return of(client, settings) if of is not None else ActivityWriter(client, schema_of(settings), settings)


def day_sets(today: DayActivity, settings: Settings, platforms: Platforms | None = None) -> Any:
    """One day of the dataset as the user sets a consumer builds of it: each active user in its hour (and, with
    ``platforms``, in the ``platform`` segments of the values it reports that day), the day's created users."""
    base_ms = day_start_ms(today.day, settings.zone)
    sets = UserSets()
    for user, hour in today.active:
        sets.add_active(today.day, hour, user, base_ms + hour * 3_600_000)
        for value in platforms(user, today.day) if platforms else ():
            sets.add_segment(today.day, user, "platform", value)
    for user in today.created:
        sets.add_created(today.day, user, base_ms)
    return sets


def write_dataset(settings: Settings, data: Dataset, last_day: date, label: str = "") -> int:
    """Store the dataset (days ending ``last_day``) through the tree's writer; returns (user, day) pairs."""
    client = redis.Redis.from_url(settings.redis_url)
    writer = writer_of(client, settings)
    started = time.monotonic()
    pairs = 0
    try:
        for i, today in enumerate(activity(data, last_day)):
            writer.write(day_sets(today, settings))
            pairs += len(today.active)
            elapsed = time.monotonic() - started
            sys.stderr.write(f"\r{label} writing {data.name} dataset: {i + 1}/{data.days} ({elapsed:,.0f} s)   ")
            sys.stderr.flush()
    finally:
        client.close()
    sys.stderr.write("\n")
    return pairs


def touch(day: date) -> dict[str, Any]:
    settings = Settings.from_env(os.environ)
    buckets = UserSets()
    buckets.add_active(day, 0, TOUCH_USER, day_start_ms(day, settings.zone))
    client = redis.Redis.from_url(settings.redis_url)
    try:
        writer_of(client, settings).write(buckets)
    finally:
        client.close()
    return {"user": TOUCH_USER}


def seed(name: str, days: int, last_day: date) -> dict[str, Any]:
    started = time.monotonic()
    data = replace(DATASETS[name], days=days)
    pairs = write_dataset(Settings.from_env(os.environ), data, last_day, os.environ.get("BENCH_SIDE", ""))
    return {"pairs": pairs, "seconds": time.monotonic() - started}


def _sample(annotation: Any) -> object | None:
    if annotation is date:
        return SENTINEL_DATE
    if annotation is int:
        return SENTINEL_INT
    if annotation is str:
        return SENTINEL_TEXT
    return None


def _regex(text: str) -> str:
    pattern = re.escape(text)
    # A key of two days (a kept union: first and last) is dated by its first.
    day = re.escape(SENTINEL_DATE.isoformat())
    pattern = pattern.replace(day, r"(?P<date>\d{4}-\d{2}-\d{2})", 1).replace(day, r"\d{4}-\d{2}-\d{2}")
    pattern = pattern.replace(re.escape(str(SENTINEL_INT)), r"\d+")
    return pattern.replace(re.escape(SENTINEL_TEXT), r".+")


def kinds(keys: KeySchema) -> list[dict[str, Any]]:
    """Every key-building method of the schema as ``{name, regex, dated, bucketed}`` (``bucketed``: one key per
    user bucket, the method takes a ``bucket``); the dated ones first."""
    found = []
    for name, method in inspect.getmembers(keys, inspect.ismethod):
        if name.startswith("_") or name == "pattern":
            continue
        try:
            hints = typing.get_type_hints(method)
        except NameError:  # an annotation imported for type checking only (e.g. a constructor from Settings)
            continue
        if hints.get("return") is not str:
            continue
        params = [p for p in inspect.signature(method).parameters.values()]
        samples = [_sample(hints.get(p.name)) for p in params]
        if any(s is None for s in samples):
            continue
        regex = _regex(method(*samples))
        bucketed = any(p.name == "bucket" for p in params)
        found.append({"name": name, "regex": regex, "dated": "(?P<date>" in regex, "bucketed": bucketed})
    return sorted(found, key=lambda kind: (not kind["dated"], kind["name"]))


def schema() -> dict[str, Any]:
    settings = Settings.from_env(os.environ)
    retention = {name: getattr(settings, name) for name in RETENTIONS if hasattr(settings, name)}
    modules = {"activeusers": activeusers.__file__, "api": api.__file__}
    return {"kinds": kinds(schema_of(settings)), "retention": retention, "modules": modules}


def token() -> dict[str, Any]:
    settings = Settings.from_env(os.environ)

    async def create() -> str:
        client = _async_redis_client(settings)
        try:
            made, _ = await TokenStore(client, schema_of(settings)).create(
                "bench-admin", (VIEW_ENGAGEMENT_DASHBOARD,), int(time.time() * 1000)
            )
        finally:
            await client.aclose()
        return str(made)

    return {"user": "bench-admin", "token": asyncio.run(create())}


def main() -> int:
    command, *rest = sys.argv[1:] or ["--help"]
    if command in ("-h", "--help"):
        print("usage: treescript.py seed|schema|token|touch ...\n" + (__doc__ or ""))
        return 0
    if command == "seed":
        result = seed(rest[0], int(rest[1]), date.fromisoformat(rest[2]))
    elif command == "schema":
        result = schema()
    elif command == "token":
        result = token()
    elif command == "touch":
        result = touch(date.fromisoformat(rest[0]))
    else:
        sys.exit(f"unknown subcommand {command!r}: seed, schema, token or touch")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
