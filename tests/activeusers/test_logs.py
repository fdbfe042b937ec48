"""Structured JSON log lines."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import orjson
import pytest

from activeusers.logs import JsonFormatter, configure


@pytest.fixture
def stream() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.activeusers.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)
    logger.propagate = True


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    text = buffer.getvalue()
    assert text.endswith("\n")
    return [orjson.loads(line) for line in text.splitlines()]


def test_fixed_record_renders_exactly() -> None:
    record = logging.LogRecord("svc.part", logging.WARNING, __file__, 1, "stored %d events", (3,), None)
    record.created = 1_710_074_096.789
    record.msecs = 789.0
    record.topic = "user-activity"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert orjson.loads(line) == {
        "ts": "2024-03-10T12:34:56.789Z",
        "level": "warning",
        "logger": "svc.part",
        "event": "stored 3 events",
        "topic": "user-activity",
    }
    assert line.startswith('{"ts":"2024-03-10T12:34:56.789Z","level":"warning"')


def test_one_object_per_line_with_extras(stream: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = stream
    logger.info("hello %s", "world", extra={"user": "u1", "count": 3, "tags": ["a", "b"], "obj": None})
    logger.debug("second line\nwith a newline", extra={"where": object()})
    logger.error("ünïcode ✓")
    first, second, third = lines(buffer)
    assert first["event"] == "hello world"
    assert first["level"] == "info"
    assert first["logger"] == "tests.activeusers.logs"
    assert (first["user"], first["count"], first["tags"], first["obj"]) == ("u1", 3, ["a", "b"], None)
    assert isinstance(first["ts"], str)
    assert len(first["ts"]) == 24
    assert first["ts"].endswith("Z")
    assert second["event"] == "second line\nwith a newline"
    assert str(second["where"]).startswith("<object object at")  # not JSON: rendered with str()
    assert second["level"] == "debug"
    assert third == {"ts": third["ts"], "level": "error", "logger": "tests.activeusers.logs", "event": "ünïcode ✓"}


def test_no_standard_record_attributes_leak(stream: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = stream
    logger.warning("plain")
    (line,) = lines(buffer)
    assert set(line) == {"ts", "level", "logger", "event"}


def test_exceptions_are_formatted(stream: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = stream
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logger.exception("batch failed", extra={"batch": 7})
    text = buffer.getvalue()
    assert text.count("\n") == 1  # the traceback is escaped inside the one line
    (line,) = lines(buffer)
    assert line["event"] == "batch failed"
    assert line["level"] == "error"
    assert line["batch"] == 7
    exception = str(line["exception"])
    assert exception.startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError: division by zero" in exception
    assert "test_exceptions_are_formatted" in exception


def test_exc_info_tuple(stream: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = stream
    try:
        raise KeyError("missing")
    except KeyError:
        logger.warning("lookup", exc_info=sys.exc_info())
    (line,) = lines(buffer)
    assert "KeyError: 'missing'" in str(line["exception"])
    assert line["level"] == "warning"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    kafka_level = logging.getLogger("kafka").level
    access_level = logging.getLogger("aiohttp.access").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(kafka_level)
    logging.getLogger("aiohttp.access").setLevel(access_level)


@pytest.mark.usefixtures("restore_logging")
def test_configure(capsys: pytest.CaptureFixture[str]) -> None:
    configure("debug")
    root = logging.getLogger()
    assert root.level == logging.DEBUG
    assert len(root.handlers) == 1
    assert isinstance(root.handlers[0].formatter, JsonFormatter)
    assert logging.getLogger("kafka").level == logging.WARNING
    assert logging.getLogger("aiohttp.access").level == logging.WARNING
    logging.getLogger("some.module").debug("configured", extra={"k": 1})
    logging.getLogger("kafka.conn").info("noise")
    err = capsys.readouterr().err
    assert [orjson.loads(line)["event"] for line in err.splitlines()] == ["configured"]
    assert orjson.loads(err)["k"] == 1


@pytest.mark.usefixtures("restore_logging")
def test_configure_error_level_quiets_kafka_further() -> None:
    configure("ERROR")
    assert logging.getLogger().level == logging.ERROR
    assert logging.getLogger("kafka").level == logging.ERROR
