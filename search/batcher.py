"""Micro-batching of encoder misses: concurrent queries share one encoder call.

Queries whose embedding was in no cache come here. The dispatcher task forms a
batch from what is queued -- up to ``max_batch_size`` items, waiting at most
``max_wait_ms`` after the oldest queued item arrived -- and encodes it on one
worker thread. While a batch encodes, new arrivals queue up and form the next
batch, so batches grow with load without any tuning. Identical in-flight keys
are coalesced onto one item, and the queue is bounded so that overload is an
explicit ``ResourceExhausted`` rather than unbounded latency.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from search.errors import DeadlineExceeded, ResourceExhausted, SemsearchError, Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embedded:
    """One request's answer: its own copy of the (d,) float32 vector."""

    vector: np.ndarray
    coalesced: bool  # True when this request joined another's in-flight item


@dataclass
class BatcherStats:
    """Counters since start; ``MicroBatcher.stats`` returns a copy."""

    requests: int = 0  # embed calls accepted (coalesced ones included)
    coalesced: int = 0  # requests that joined an item already queued or encoding
    rejected: int = 0  # requests refused with ResourceExhausted (queue full)
    dropped: int = 0  # items failed with DeadlineExceeded instead of being encoded
    abandoned: int = 0  # queued items removed because every waiter was cancelled
    batches: int = 0  # encoder calls, failed ones included
    failed_batches: int = 0  # encoder calls that raised
    items_encoded: int = 0  # texts passed to the encoder, failed calls included
    encode_seconds: float = 0.0  # wall time inside the encoder
    encode_cpu_seconds: float = 0.0  # worker-thread CPU time inside the encoder
    queue_depth: int = 0  # items waiting for a batch (not the one encoding)


@dataclass(eq=False)
class _Item:
    key: str
    text: str
    deadline: float | None  # the latest of the waiters' deadlines; None: no deadline
    enqueued_at: float  # loop.time(), for the max_wait window
    future: asyncio.Future[np.ndarray]
    waiters: int = 1
    queued: bool = True  # False once taken into a batch


@dataclass(frozen=True)
class _Outcome:
    result: np.ndarray | Exception  # (n, d) float32, or what the encoder raised
    seconds: float
    cpu_seconds: float


def _timed_encode(encode: Callable[[list[str]], np.ndarray], texts: list[str]) -> _Outcome:
    # Runs on the worker thread: thread_time() there is the encoder's own CPU
    # cost, not the event loop's. Errors travel back as values so the timing
    # of a failed call is still counted.
    wall, cpu = time.perf_counter(), time.thread_time()
    result: np.ndarray | Exception
    try:
        result = np.asarray(encode(texts), dtype=np.float32)
        if result.ndim != 2 or result.shape[0] != len(texts):
            result = SemsearchError(f"encoder returned shape {result.shape} for {len(texts)} texts")
    except Exception as err:
        result = err
    return _Outcome(result, time.perf_counter() - wall, time.thread_time() - cpu)


class MicroBatcher:
    """Groups concurrent ``embed`` calls into batched calls of ``encode``.

    ``encode`` takes a list of texts and returns (n, d) float32; it runs on
    ``executor`` (default: an owned single-thread pool), one call at a time.
    ``on_result(key, vector)``, if given, is called for each encoded item
    before its waiters wake (the service caches the vector there).
    Deadlines are absolute ``clock()`` values. ``on_batch(size, seconds)``, if
    given, is called on the event loop after every encoder call (failed ones
    too). Raises ValueError for a size or queue bound below 1 or a negative wait.
    """

    def __init__(
        self,
        encode: Callable[[list[str]], np.ndarray],
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        max_queue: int = 1024,
        executor: ThreadPoolExecutor | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_batch: Callable[[int, float], None] | None = None,
        on_result: Callable[[str, np.ndarray], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self._encode = encode
        self._max_batch = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self._max_queue = max_queue
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="semsearch-batcher")
        self._clock = clock
        self._on_batch = on_batch
        self._on_result = on_result
        self._queue: collections.deque[_Item] = collections.deque()
        self._pending: dict[str, _Item] = {}  # queued or encoding, by key
        self._arrived = asyncio.Event()  # set on every enqueue and on close
        self._stats = BatcherStats()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def stats(self) -> BatcherStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats, queue_depth=len(self._queue))

    def start(self) -> None:
        """Start the dispatcher on the running loop; RuntimeError if started before or no loop runs."""
        if self._task is not None or self._closing:
            raise RuntimeError("MicroBatcher.start() called twice or after aclose()")
        self._task = asyncio.get_running_loop().create_task(self._dispatch(), name="semsearch-batcher")

    async def aclose(self) -> None:
        """Stop accepting, then encode what is already queued (deadlines still apply).

        Returns when every queued item has been answered and the dispatcher has
        exited; shuts down the executor if the batcher created it. Idempotent.
        """
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task
        if self._owns_executor:
            # The dispatcher awaited its last encode, so the worker is idle
            # and this join does not block the loop.
            self._executor.shutdown(wait=True)

    async def __aenter__(self) -> MicroBatcher:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def embed(self, key: str, text: str, *, deadline: float | None = None) -> Embedded:
        """The vector of ``text``, encoded in a batch; requests with the same ``key`` share one encode.

        Raises Unavailable before start() or after aclose(), ResourceExhausted
        at once when ``max_queue`` items are waiting, DeadlineExceeded when the
        item's latest deadline passed before its batch formed, and whatever
        the encoder raised for the batch. Cancelling one caller leaves the
        others' result alone.
        """
        if self._task is None or self._closing:
            raise Unavailable("the micro-batcher is not running")
        item = self._pending.get(key)
        coalesced = item is not None
        if item is not None:
            item.waiters += 1
            # None means "no deadline", which outlives any number.
            if item.deadline is not None:
                item.deadline = None if deadline is None else max(item.deadline, deadline)
            self._stats.coalesced += 1
        else:
            if len(self._queue) >= self._max_queue:
                self._stats.rejected += 1
                raise ResourceExhausted(f"encoder queue full ({self._max_queue} items waiting)")
            loop = asyncio.get_running_loop()
            item = _Item(key, text, deadline, loop.time(), loop.create_future())
            self._pending[key] = item
            self._queue.append(item)
            self._arrived.set()
        self._stats.requests += 1
        try:
            # shield: a cancelled waiter must not cancel the future others await.
            vector = await asyncio.shield(item.future)
        finally:
            item.waiters -= 1
            if item.waiters == 0 and item.queued:
                # Nobody wants it any more and it has not been sent: skip the work.
                self._queue.remove(item)
                del self._pending[key]
                self._stats.abandoned += 1
        return Embedded(vector.copy(), coalesced)

    async def _dispatch(self) -> None:
        try:
            while True:
                while not self._queue:
                    if self._closing:
                        return
                    self._arrived.clear()
                    await self._arrived.wait()
                await self._wait_for_company()
                batch = self._take_batch()
                if batch:
                    await self._run_batch(batch)
        finally:
            # Reached on close and on any crash: nobody may wait forever.
            self._closing = True
            for item in self._pending.values():
                item.queued = False
                if not item.future.done():
                    item.future.set_exception(Unavailable("the micro-batcher stopped"))
            self._pending.clear()
            self._queue.clear()

    async def _wait_for_company(self) -> None:
        # The window counts from the oldest item's arrival, so items that
        # queued up behind a running encode are dispatched at once.
        loop = asyncio.get_running_loop()
        opened = self._queue[0].enqueued_at
        while len(self._queue) < self._max_batch and not self._closing:
            remaining = opened + self._max_wait - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Item]:
        now = self._clock()
        batch: list[_Item] = []
        while self._queue and len(batch) < self._max_batch:
            item = self._queue.popleft()
            item.queued = False
            if item.deadline is not None and item.deadline <= now:
                del self._pending[item.key]
                item.future.set_exception(DeadlineExceeded("deadline passed while waiting for the encoder"))
                self._stats.dropped += 1
            else:
                batch.append(item)
        return batch

    async def _run_batch(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        texts = [item.text for item in batch]
        outcome = await loop.run_in_executor(self._executor, _timed_encode, self._encode, texts)
        stats = self._stats
        stats.batches += 1
        stats.items_encoded += len(batch)
        stats.encode_seconds += outcome.seconds
        stats.encode_cpu_seconds += outcome.cpu_seconds
        if isinstance(outcome.result, Exception):
            stats.failed_batches += 1
            log.warning("encoding a batch of %d texts failed: %r", len(batch), outcome.result)
        for row, item in enumerate(batch):
            if self._pending.get(item.key) is item:
                del self._pending[item.key]
            if isinstance(outcome.result, Exception):
                item.future.set_exception(outcome.result)
                continue
            vector = outcome.result[row].copy()  # a copy: no view pins the batch
            if self._on_result is not None:
                # In the same loop step that retires the key, so a request
                # arriving next finds the vector cached instead of encoding it again.
                try:
                    self._on_result(item.key, vector)
                except Exception:
                    log.exception("on_result callback failed")
            item.future.set_result(vector)
        if self._on_batch is not None:
            try:
                self._on_batch(len(batch), outcome.seconds)
            except Exception:
                # Metrics must never stop the encoding of queries.
                log.exception("on_batch callback failed")
