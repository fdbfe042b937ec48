"""Coalescing the small reads of concurrent requests: every call made during one turn of the event loop goes to
Redis in one write (per node), on one pooled connection, and each caller gets its own replies back.

Every API request reads a few small values before anything else (its token's record, the index versions of its
days): two round trips of a few hundred bytes each. Sent one by one, each costs the API process a write, a read
and a connection taken from the pool and given back, and Redis a read and a write of its own, which on a loaded
machine weigh more than the commands themselves. Under load many requests are at that point in the same turn of
the loop; sent together they share all of that (the calls per batch are counted: :attr:`Coalescer.calls`,
:attr:`Coalescer.batches`).

Nothing is cached: each call's commands are sent after the call is made, so its replies are as fresh as those of
a call sent alone (a revoked token is refused at once, a day written before the request is read). Only small
commands should come here: the replies of a batch are read together, so a big one would hold the others back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Sequence
from typing import Any, Generic, TypeVar

import redis

from activeusers.connections import REDIS_ERRORS, AsyncClient, Routed, gate_of
from activeusers.errors import StoreUnavailable
from activeusers.transport import send_commands_async

T = TypeVar("T")


class Coalescer:
    """Sends the commands of the calls made during one turn of the event loop together
    (:func:`~activeusers.transport.send_commands_async`, one permit of the client's gate a batch)."""

    def __init__(self, client: AsyncClient, timeout_s: float | None = None) -> None:
        self._client = client
        # A batch is small: a Redis that has not answered it within REDIS_TIMEOUT once it has a connection does not
        # answer. One deadline for the whole batch (the wait for a connection included): redis-py would otherwise
        # spend up to four timeouts on a new connection to a hung server (health check, handshake, one retry).
        gate = gate_of(client)
        self._deadline_s = None if timeout_s is None else timeout_s + (gate.wait_s if gate is not None else 0.0)
        self._queue: list[tuple[Sequence[Routed], asyncio.Future[list[Any]]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self.calls = 0
        self.batches = 0

    async def send(self, commands: Sequence[Routed]) -> list[Any]:
        """The replies of ``commands`` in order (refusals as exception objects in their place), sent with the
        commands of the other calls of this turn of the loop; raises what the batch's send raised."""
        return await self.submit(commands)

    def submit(self, commands: Sequence[Routed]) -> asyncio.Future[list[Any]]:
        """Queue ``commands`` for this turn's batch at once (without waiting): the future's result is their
        replies, as :meth:`send` returns them. A caller may queue several reads before it waits for any, so that
        they share one round trip, and may drop a future it no longer needs."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if not self._queue:
            # After the callbacks already due in this turn: the requests that reach here in it join the batch.
            loop.call_soon(self._flush)
        self._queue.append((commands, future))
        return future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        self.calls += len(batch)
        self.batches += 1
        # A task of its own: a caller that goes away (a client closed the connection) must not cut the others'
        # round trip short, and the task is kept referenced until it ends.
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _send(self, batch: list[tuple[Sequence[Routed], asyncio.Future[list[Any]]]]) -> None:
        commands = [command for call, _ in batch for command in call]
        try:
            try:
                async with asyncio.timeout(self._deadline_s):
                    replies = await send_commands_async(self._client, commands)
            except TimeoutError:
                raise redis.TimeoutError(f"Redis did not answer within {self._deadline_s:g}s") from None
        except asyncio.CancelledError:  # the app is stopping: so are its callers
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # every caller of the batch gets it, as it would have alone
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
                    # Marked as seen: a caller that dropped its future (its request ended first) does not
                    # want asyncio to log it as never retrieved; one that waits still gets it raised.
                    future.exception()
            return
        start = 0
        for call, future in batch:
            if not future.done():  # its caller may be gone
                future.set_result(replies[start : start + len(call)])
            start += len(call)

    async def aclose(self) -> None:
        """Wait for the batches in flight (the app's Redis pool closes after this)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


class Pending(Generic[T]):
    """A read queued with :meth:`Coalescer.submit`, awaited later (``await pending``) for its replies turned into
    a value by ``decode``; a Redis failure raises :class:`StoreUnavailable`. Unlike a coroutine, one that is never
    awaited (its request ended first) leaves nothing behind."""

    __slots__ = ("_decode", "_future")

    def __init__(self, future: asyncio.Future[list[Any]] | None, decode: Callable[[list[Any]], T]) -> None:
        self._future = future
        self._decode = decode

    def __await__(self) -> Generator[Any, None, T]:
        if self._future is None:  # nothing to read
            return self._decode([])
        try:
            replies = yield from self._future.__await__()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis read failed: {exc}") from exc
        for reply in replies:
            if isinstance(reply, Exception):
                raise StoreUnavailable(f"Redis read failed: {reply}")
        return self._decode(replies)
