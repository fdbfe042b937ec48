"""Storing one classified batch: its user sets into Redis, then its dead letters into Kafka, each retried until
done or until shutdown is requested. The store worker and the replay both store through :func:`store_batch`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kafka.errors import KafkaError

from activeusers.errors import StoreUnavailable
from activeusers.usersets import UserSets
from consumer.ingest import Batch, DeadLetter
from consumer.retry import until_done


def store_batch(
    batch: Batch,
    write: Callable[[UserSets], None],
    publish: Callable[[Sequence[DeadLetter]], None] | None,
    wait_for_stop: Callable[[float], bool],
    on_failure: Callable[[BaseException], None],
    on_written: Callable[[], None] = lambda: None,
) -> bool:
    """Write the batch's user sets with ``write``, then (``on_written`` called in between) publish its dead letters
    with ``publish`` (none published when it is ``None``); whether both were done.

    A :class:`StoreUnavailable` from ``write`` or a :class:`KafkaError` from ``publish`` is passed to
    ``on_failure`` and that step is tried again after a backoff, unless ``wait_for_stop`` says to stop (False).
    The letters are published only once the writes are in Redis, so a batch acknowledged later is whole.
    """

    def write_sets() -> None:
        if batch.user_sets:
            write(batch.user_sets)

    if not until_done(write_sets, (StoreUnavailable,), wait_for_stop, on_failure):
        return False
    on_written()
    letters = batch.dead_letters
    if publish is None or not letters:
        return True
    return until_done(lambda: publish(letters), (KafkaError,), wait_for_stop, on_failure)
