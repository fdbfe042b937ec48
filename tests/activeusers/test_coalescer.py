"""The coalescer: the small reads of one turn of the event loop go to the real Redis in one write, each caller
gets its own replies (refusals in place), a failure reaches every caller of the batch, a dropped read leaves no
trace, and a Redis that does not answer is given up after REDIS_POOL_WAIT plus REDIS_TIMEOUT."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from activeusers.coalescer import Coalescer, Pending
from activeusers.connections import async_redis_client, pack_command
from activeusers.errors import StoreUnavailable
from activeusers.settings import Settings


def command(*args: str) -> tuple[str, bytes]:
    return args[1], pack_command(args)


async def test_the_reads_of_one_turn_share_one_write(redis_url: str, redis_prefix: str, redis_client) -> None:
    hash_key, text_key = f"{redis_prefix}h", f"{redis_prefix}t"
    redis_client.hset(hash_key, mapping={"a": "1", "b": "2"})
    redis_client.set(text_key, "x")
    client = async_redis_client(Settings(redis_url=redis_url))
    coalescer = Coalescer(client)
    try:
        first = coalescer.submit([command("HGET", hash_key, "a")])
        wrong = coalescer.submit([command("HGET", text_key, "a"), command("GET", text_key)])
        third = coalescer.send([command("HMGET", hash_key, "b", "zz")])
        assert await third == [[b"2", None]]
        assert await first == [b"1"]
        refused, fine = await wrong
        assert isinstance(refused, redis.ResponseError) and "WRONGTYPE" in str(refused) and fine == b"x"
        assert (coalescer.batches, coalescer.calls) == (1, 3)
        later = await coalescer.send([command("GET", text_key)])  # another turn: another write
        assert later == [b"x"] and coalescer.batches == 2
        with pytest.raises(StoreUnavailable, match="WRONGTYPE"):  # a refusal in a call's replies, raised by Pending
            await Pending(coalescer.submit([command("HGET", text_key, "a")]), lambda replies: replies)
    finally:
        await client.aclose()


@pytest.fixture
def unreachable() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"


async def test_a_failure_reaches_every_caller_and_a_dropped_read_leaves_no_trace(unreachable: str) -> None:
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    client = async_redis_client(Settings(redis_url=unreachable, redis_timeout_s=0.5))
    coalescer = Coalescer(client, 0.5)
    try:
        dropped = coalescer.submit([command("GET", "k")])
        kept = Pending(coalescer.submit([command("GET", "k")]), lambda replies: replies)
        with pytest.raises(StoreUnavailable, match="Redis read failed"):
            await kept
        assert dropped.done() and isinstance(dropped.exception(), redis.ConnectionError)
        del dropped
        gc.collect()
        await asyncio.sleep(0)
        assert unhandled == []  # no "Future exception was never retrieved"
    finally:
        loop.set_exception_handler(None)
        await client.aclose()


async def test_a_redis_that_does_not_answer_is_given_up_after_the_pool_wait_and_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the kernel; nothing ever answers
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        client = async_redis_client(Settings(redis_url=url, redis_timeout_s=0.3, redis_pool_wait_s=0.2))
        coalescer = Coalescer(client, 0.3)
        started = time.monotonic()
        try:
            with pytest.raises(redis.TimeoutError, match=r"did not answer within 0\.5s"):
                await coalescer.send([command("GET", "k")])
            # redis-py alone would spend a health check, the handshake and a retry: about four timeouts.
            assert time.monotonic() - started < 0.5 + 0.4
        finally:
            await client.aclose()
