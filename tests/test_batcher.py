"""The micro-batcher: batching, coalescing, deadlines, overload, errors, lifecycle, stats.

Most tests drive a fake encoder that records its calls and can be held on a
gate (a threading.Event) so that the queue behind a running encode is scripted
exactly; two run the real INT8 encoder.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Coroutine

import numpy as np
import pytest

from search.batcher import BatcherStats, Embedded, MicroBatcher
from search.errors import DeadlineExceeded, ResourceExhausted, SemsearchError, Unavailable

DIM = 8
TIMEOUT = 5.0  # seconds; only reached when a test is broken


def _vector(text: str) -> np.ndarray:
    """A vector that identifies its text."""
    return np.frombuffer(hashlib.sha256(text.encode()).digest()[:DIM], dtype=np.uint8).astype(np.float32)


class FakeEncoder:
    """Records each call (texts, time, thread); holds on ``gate``; raises for ``fail_on`` texts."""

    def __init__(self, *, held: bool = False, fail_on: frozenset[str] = frozenset()) -> None:
        self.calls: list[list[str]] = []
        self.times: list[float] = []
        self.threads: list[int] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        if not held:
            self.gate.set()
        self.fail_on = fail_on
        self.error = RuntimeError("encoder broke")

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.times.append(time.monotonic())
        self.threads.append(threading.get_ident())
        self.entered.set()
        if not self.gate.wait(TIMEOUT):
            raise TimeoutError("the test never opened the gate")
        if self.fail_on.intersection(texts):
            raise self.error
        return np.stack([_vector(text) for text in texts])

    async def until_encoding(self) -> None:
        """Return once a call has entered the encoder (then re-arm)."""
        assert await asyncio.to_thread(self.entered.wait, TIMEOUT)
        self.entered.clear()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` as the main task (so all_tasks() is just it), bounded in time."""

    async def bounded() -> None:
        async with asyncio.timeout(TIMEOUT * 2):
            await coro

    asyncio.run(bounded())


def _batcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("semsearch-batcher")]


def test_identical_keys_share_one_encode() -> None:
    fake = FakeEncoder()

    async def main() -> None:
        async with MicroBatcher(fake) as batcher:
            results = await asyncio.gather(*(batcher.embed("k", "red shoes") for _ in range(50)))
            stats = batcher.stats
        assert fake.calls == [["red shoes"]]
        assert fake.threads[0] != threading.get_ident()  # never on the event loop
        assert sum(r.coalesced for r in results) == 49
        for result in results:
            np.testing.assert_array_equal(result.vector, _vector("red shoes"))
        assert len({id(r.vector) for r in results}) == 50  # each caller owns its copy
        assert (stats.requests, stats.coalesced, stats.batches, stats.items_encoded) == (50, 49, 1, 1)

    run(main())


def test_distinct_keys_are_batched_and_answered_by_their_own_text() -> None:
    fake = FakeEncoder()
    texts = [f"query {i}" for i in range(40)]

    async def main() -> None:
        async with MicroBatcher(fake, max_batch_size=8) as batcher:
            results = await asyncio.gather(*(batcher.embed(t, t) for t in texts))
        sizes = [len(call) for call in fake.calls]
        assert sum(sizes) == 40 and len(sizes) < 40
        assert max(sizes) == 8
        assert sorted(t for call in fake.calls for t in call) == sorted(texts)
        for text, result in zip(texts, results):
            assert not result.coalesced
            np.testing.assert_array_equal(result.vector, _vector(text))

    run(main())


def test_a_lone_request_waits_at_most_max_wait() -> None:
    fake = FakeEncoder()

    async def main() -> None:
        async with MicroBatcher(fake, max_wait_ms=5.0) as batcher:
            start = time.monotonic()
            await batcher.embed("k", "alone")
        assert fake.times[0] - start < 0.2  # loose: 5 ms window plus scheduling slack

    run(main())


def test_a_full_batch_does_not_wait_for_the_window() -> None:
    fake = FakeEncoder()

    async def main() -> None:
        async with MicroBatcher(fake, max_batch_size=4, max_wait_ms=60_000) as batcher:
            start = time.monotonic()
            await asyncio.gather(*(batcher.embed(t, t) for t in "abcd"))
            assert time.monotonic() - start < TIMEOUT
        assert fake.calls == [list("abcd")]

    run(main())


def test_expired_items_are_dropped_unless_a_waiter_still_has_time() -> None:
    fake, clock = FakeEncoder(held=True), Clock()

    async def main() -> None:
        async with MicroBatcher(fake, clock=clock) as batcher:
            first = asyncio.create_task(batcher.embed("a", "a"))
            await fake.until_encoding()
            soon, later = clock.now + 1, clock.now + 100
            waiters = [
                batcher.embed("b", "b", deadline=soon),  # expires: dropped
                batcher.embed("c", "c", deadline=soon),  # expires, but ...
                batcher.embed("c", "c", deadline=later),  # ... this waiter keeps c alive
                batcher.embed("e", "e", deadline=soon),  # expires, but ...
                batcher.embed("e", "e"),  # ... no deadline keeps e alive
            ]
            tasks = [asyncio.create_task(w) for w in waiters]
            await asyncio.sleep(0)  # let every waiter enqueue
            clock.now += 10
            fake.gate.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await first
            assert batcher.stats.dropped == 1
        assert isinstance(results[0], DeadlineExceeded)
        for result, text in zip(results[1:], "ccee"):
            assert isinstance(result, Embedded)
            np.testing.assert_array_equal(result.vector, _vector(text))
        assert fake.calls == [["a"], ["c", "e"]]

    run(main())


def test_a_cancelled_waiter_leaves_the_others_their_result() -> None:
    fake = FakeEncoder(held=True)

    async def main() -> None:
        async with MicroBatcher(fake) as batcher:
            a = [asyncio.create_task(batcher.embed("a", "a")) for _ in range(2)]
            await fake.until_encoding()  # a is encoding
            b = [asyncio.create_task(batcher.embed("b", "b")) for _ in range(2)]
            c = asyncio.create_task(batcher.embed("c", "c"))
            await asyncio.sleep(0)  # b and c are queued
            for task in (a[0], b[0], c):
                task.cancel()
            fake.gate.set()
            assert (await a[1]).vector.tolist() == _vector("a").tolist()
            assert (await b[1]).vector.tolist() == _vector("b").tolist()
            for task in (a[0], b[0], c):
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert batcher.stats.abandoned == 1
        assert fake.calls == [["a"], ["b"]]  # c lost its only waiter before its batch formed

    run(main())


def test_a_full_queue_rejects_new_items_at_once() -> None:
    fake = FakeEncoder(held=True)

    async def main() -> None:
        async with MicroBatcher(fake, max_batch_size=1, max_queue=2) as batcher:
            tasks = [asyncio.create_task(batcher.embed("a", "a"))]
            await fake.until_encoding()
            tasks += [asyncio.create_task(batcher.embed(k, k)) for k in "bc"]
            await asyncio.sleep(0)
            assert batcher.stats.queue_depth == 2
            with pytest.raises(ResourceExhausted):
                await batcher.embed("d", "d")
            tasks.append(asyncio.create_task(batcher.embed("b", "b")))  # joining a queued item is free
            await asyncio.sleep(0)
            fake.gate.set()
            results = await asyncio.gather(*tasks)
            assert [r.coalesced for r in results] == [False, False, False, True]
            assert (await batcher.embed("d", "d")).vector.tolist() == _vector("d").tolist()
            assert batcher.stats.rejected == 1

    run(main())


def test_an_encoder_error_reaches_every_waiter_of_its_batch_only() -> None:
    fake = FakeEncoder(held=True, fail_on=frozenset({"bad"}))

    async def main() -> None:
        async with MicroBatcher(fake) as batcher:
            first = asyncio.create_task(batcher.embed("ok", "ok"))
            await fake.until_encoding()
            tasks = [asyncio.create_task(batcher.embed(k, k)) for k in ("bad", "x", "bad")]
            await asyncio.sleep(0)
            fake.gate.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(r is fake.error for r in results)
            assert not (await first).coalesced
            assert (await batcher.embed("y", "y")).vector.tolist() == _vector("y").tolist()
            assert (batcher.stats.batches, batcher.stats.failed_batches) == (3, 1)
        assert fake.calls == [["ok"], ["bad", "x"], ["y"]]

    run(main())


def test_a_wrong_row_count_is_an_error_for_the_batch() -> None:
    async def main() -> None:
        async with MicroBatcher(lambda texts: np.zeros((len(texts) + 1, DIM), np.float32)) as batcher:
            with pytest.raises(SemsearchError, match="shape"):
                await batcher.embed("k", "text")

    run(main())


def test_aclose_encodes_what_is_queued_and_refuses_new_work() -> None:
    fake = FakeEncoder(held=True)

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch_size=1)
        batcher.start()
        tasks = [asyncio.create_task(batcher.embed("a", "a"))]
        await fake.until_encoding()
        tasks.append(asyncio.create_task(batcher.embed("b", "b")))
        await asyncio.sleep(0)
        closer = asyncio.create_task(batcher.aclose())
        await asyncio.sleep(0)
        with pytest.raises(Unavailable):
            await batcher.embed("c", "c")
        fake.gate.set()
        await closer
        assert [r.vector.tolist() for r in await asyncio.gather(*tasks)] == [_vector(k).tolist() for k in "ab"]
        await batcher.aclose()  # idempotent
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert _batcher_threads() == []  # the owned executor was shut down

    run(main())
    assert fake.calls == [["a"], ["b"]]


def test_aclose_does_not_wait_out_the_batch_window() -> None:
    fake = FakeEncoder()

    async def main() -> None:
        batcher = MicroBatcher(fake, max_wait_ms=60_000)
        batcher.start()
        task = asyncio.create_task(batcher.embed("k", "k"))
        await asyncio.sleep(0)
        await batcher.aclose()
        assert (await task).vector.tolist() == _vector("k").tolist()

    run(main())  # the run's timeout is far below the 60 s window


def test_lifecycle_misuse_and_a_borrowed_executor() -> None:
    executor = ThreadPoolExecutor(max_workers=1)

    async def main() -> None:
        batcher = MicroBatcher(FakeEncoder(), executor=executor)
        with pytest.raises(Unavailable):
            await batcher.embed("k", "not started")
        batcher.start()
        with pytest.raises(RuntimeError):
            batcher.start()
        await batcher.aclose()
        with pytest.raises(RuntimeError):
            batcher.start()
        with pytest.raises(Unavailable):
            await batcher.embed("k", "closed")

    with pytest.raises(RuntimeError):
        MicroBatcher(FakeEncoder()).start()  # no running loop
    run(main())
    assert executor.submit(lambda: 42).result() == 42  # not ours to shut down
    executor.shutdown()


@pytest.mark.parametrize(
    "settings",
    [{"max_batch_size": 0}, {"max_wait_ms": -1.0}, {"max_queue": 0}],
    ids=["batch-size", "wait", "queue"],
)
def test_invalid_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(settings))):
        MicroBatcher(FakeEncoder(), **settings)


def test_stats_follow_a_scripted_sequence() -> None:
    fake, clock = FakeEncoder(held=True), Clock()
    batches: list[tuple[int, float]] = []

    async def main() -> None:
        async with MicroBatcher(fake, max_queue=3, clock=clock, on_batch=lambda n, s: batches.append((n, s))) as b:
            assert b.stats == BatcherStats()
            tasks = [asyncio.create_task(b.embed("a", "a"))]
            await fake.until_encoding()
            tasks += [asyncio.create_task(b.embed(k, k)) for k in "bbd"]
            tasks.append(asyncio.create_task(b.embed("c", "c", deadline=clock.now + 1)))
            await asyncio.sleep(0)
            assert b.stats.queue_depth == 3
            with pytest.raises(ResourceExhausted):
                await b.embed("e", "e")
            clock.now += 10
            fake.gate.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            stats = b.stats
        assert fake.calls == [["a"], ["b", "d"]]
        assert [n for n, _ in batches] == [1, 2]
        expected = BatcherStats(
            requests=5, coalesced=1, rejected=1, dropped=1, abandoned=0, batches=2, failed_batches=0,
            items_encoded=3, encode_seconds=stats.encode_seconds, encode_cpu_seconds=stats.encode_cpu_seconds,
            queue_depth=0,
        )
        assert stats == expected
        assert stats.encode_seconds == pytest.approx(sum(s for _, s in batches))

    run(main())


def _spin(texts: list[str]) -> np.ndarray:
    start = time.thread_time()
    while time.thread_time() - start < 0.03:
        pass
    return np.stack([_vector(t) for t in texts])


def _nap(texts: list[str]) -> np.ndarray:
    time.sleep(0.05)
    return np.stack([_vector(t) for t in texts])


@pytest.mark.parametrize("encode, busy", [(_spin, True), (_nap, False)], ids=["cpu-bound", "sleeping"])
def test_encode_cpu_seconds_are_the_worker_threads_cpu(encode: Any, busy: bool) -> None:
    async def main() -> None:
        async with MicroBatcher(encode) as batcher:
            await batcher.embed("k", "k")
            stats = batcher.stats
        assert stats.encode_seconds >= 0.03
        assert (stats.encode_cpu_seconds >= 0.03) is busy  # a sleeping encoder costs no CPU

    run(main())


def test_a_failing_on_batch_callback_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    def on_batch(size: int, seconds: float) -> None:
        raise ValueError("metrics backend down")

    async def main() -> None:
        async with MicroBatcher(FakeEncoder(), on_batch=on_batch) as batcher:
            assert (await batcher.embed("k", "k")).vector.tolist() == _vector("k").tolist()
            assert (await batcher.embed("j", "j")).vector.tolist() == _vector("j").tolist()

    with caplog.at_level(logging.ERROR, logger="search.batcher"):
        run(main())
    assert [r.message for r in caplog.records] == ["on_batch callback failed"] * 2


@pytest.mark.model
def test_real_encoder_coalesced_vector_is_the_single_encode(encoder) -> None:
    text = "red running shoes for women"
    expected = encoder.encode([text])[0]

    async def main() -> None:
        async with MicroBatcher(encoder.encode) as batcher:
            results = await asyncio.gather(*(batcher.embed("k", text) for _ in range(50)))
            assert (batcher.stats.batches, batcher.stats.items_encoded) == (1, 1)
        assert sum(r.coalesced for r in results) == 49
        for result in results:
            assert result.vector.dtype == np.float32 and result.vector.shape == (encoder.dimension,)
            np.testing.assert_array_equal(result.vector, expected)

    run(main())


@pytest.mark.model
def test_real_encoder_batched_vectors_match_single_encodes(encoder) -> None:
    texts = ["blue denim jacket", "leather wallet", "cotton kurta with print", "running shoes", "gold earrings"]
    alone = np.stack([encoder.encode([t])[0] for t in texts])

    async def main() -> None:
        async with MicroBatcher(encoder.encode) as batcher:
            results = await asyncio.gather(*(batcher.embed(t, t) for t in texts))
            assert batcher.stats.batches < len(texts)
        got = np.stack([r.vector for r in results])
        # INT8 activations are scaled per batch, so batch-mates move a vector slightly.
        assert np.all(np.sum(got * alone, axis=1) >= 0.97)

    run(main())


def test_on_result_sees_each_vector_before_any_waiter_wakes() -> None:
    seen: dict[str, np.ndarray] = {}
    woke_with_cached: list[bool] = []

    async def body() -> None:
        async with MicroBatcher(FakeEncoder(), max_wait_ms=1, on_result=seen.__setitem__) as batcher:

            async def ask(text: str) -> None:
                result = await batcher.embed(text, text)
                woke_with_cached.append(text in seen and np.array_equal(seen[text], result.vector))

            await asyncio.gather(*(ask(t) for t in ("a", "b", "a", "c")))

    run(body())
    assert sorted(seen) == ["a", "b", "c"]
    assert woke_with_cached == [True] * 4
