"""Embedding and result caches: in-memory tiers and the layered front.

``L1Cache`` (memory, LRU, bounded in bytes) and ``L2Cache`` (disk, in
``search.l2_cache``) both satisfy ``Tier``; ``LayeredCache`` puts L1 in front of
L2 and writes L2 behind the caller's back through ``BackgroundWriter``.
``ResultCache`` holds finished search results for the live snapshot.

Vectors are 1-D float32 arrays. Tiers store a private copy and hand out
read-only arrays, so neither side can corrupt the other's data.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Literal, Protocol, cast

import numpy as np
from cachetools import LRUCache

__all__ = [
    "BackgroundWriter", "CacheStats", "L1Cache", "LayeredCache", "LayeredStats",
    "ResultCache", "Tier", "embedding_key", "entry_nbytes", "frozen_vector",
]  # fmt: skip

log = logging.getLogger(__name__)

# Per-entry memory beyond the vector's data and the key's characters: the
# ndarray and str headers, the (value, size) tuple and the slots in
# cachetools' dicts. tracemalloc measured 356 B (CPython 3.11, numpy 2, 384-d
# vectors, 84-char keys); rounded up so the real footprint stays under the bound.
ENTRY_OVERHEAD_BYTES = 384

TierName = Literal["l1", "l2", "miss"]


class Tier(Protocol):
    """What callers use of one embedding cache tier."""

    def get(self, key: str) -> np.ndarray | None: ...

    def put(self, key: str, value: np.ndarray) -> None: ...


@dataclass(frozen=True)
class CacheStats:
    """A snapshot of one cache's counters; ``bytes`` is the current size."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    bytes: int = 0
    max_bytes: int = 0
    errors: int = 0


def embedding_key(fingerprint: str, normalization_version: int, normalized_text: str) -> str:
    """The cache key of one query's vector: ``"<fingerprint>:n<version>:<sha256 hex>"``.

    The text is always hashed, so keys have a fixed length whatever the query
    (the L1 byte estimate and the L2 index stay small) and any character is
    safe. The fingerprint stays readable so a key's namespace shows in a
    debugger. Raises ValueError for an empty fingerprint.
    """
    if not fingerprint:
        raise ValueError("fingerprint must be non-empty")
    # surrogatepass: the key function is total even for text that skipped normalize().
    digest = hashlib.sha256(normalized_text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{fingerprint}:n{normalization_version}:{digest}"


def entry_nbytes(key: str, value: np.ndarray) -> int:
    """Default L1 size estimate: vector data + key characters + fixed overhead."""
    return int(value.nbytes) + len(key) + ENTRY_OVERHEAD_BYTES


def frozen_vector(value: np.ndarray) -> np.ndarray:
    """A read-only float32 copy of a 1-D vector; raises ValueError for anything else."""
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype != np.float32:
        got = f"{value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
        raise ValueError(f"a cached vector must be a 1-D float32 array, got {got}")
    copy = value.copy()
    copy.flags.writeable = False
    return copy


class _CountingLRU(LRUCache):
    """cachetools' LRU, counting the evictions it makes to honour its size bound."""

    evictions = 0

    def popitem(self):
        item = super().popitem()
        self.evictions += 1
        return item


class _ByteLRU:
    """A locked LRU of (value, size) entries bounded in total size: the base of
    L1Cache and ResultCache. An entry larger than the bound is not stored."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self._lock = threading.Lock()
        self._data = _CountingLRU(max_bytes, getsizeof=lambda entry: entry[1])
        self._hits = self._misses = 0

    def get(self, key: Hashable) -> object | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self._misses += 1
                return None
            self._hits += 1
            return entry[0]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._data.evictions,
                bytes=int(self._data.currsize),
                max_bytes=int(self._data.maxsize),
            )

    def _store(self, key: Hashable, value: object, size: int) -> None:
        if size < 0:
            raise ValueError(f"an entry's size must be >= 0, got {size}")
        with self._lock:
            if size > self._data.maxsize:
                # cachetools would raise; a too-large entry is just not cached,
                # and an older value under the same key must not outlive it.
                self._data.pop(key, None)
                return
            self._data[key] = (value, size)


class L1Cache(_ByteLRU):
    """In-memory LRU of vectors, bounded in bytes; thread-safe.

    ``getsizeof(key, value)`` estimates one entry's bytes (default
    ``entry_nbytes``). ``max_bytes=0`` disables the cache. ``put`` raises
    ValueError for a value that is not a 1-D float32 array, or a negative size.
    """

    def __init__(self, max_bytes: int, *, getsizeof: Callable[[str, np.ndarray], int] = entry_nbytes) -> None:
        super().__init__(max_bytes)
        self._getsizeof = getsizeof

    def get(self, key: str) -> np.ndarray | None:
        return cast("np.ndarray | None", super().get(key))

    def put(self, key: str, value: np.ndarray) -> None:
        vector = frozen_vector(value)
        self._store(key, vector, self._getsizeof(key, vector))


class ResultCache(_ByteLRU):
    """In-memory LRU of search results, bounded by caller-supplied sizes.

    The key is a hashable tuple the caller builds (normalized query, filters,
    top_k, offset, snapshot version); the value is opaque and must not be
    None. ``clear()`` drops everything when a new snapshot goes live.
    """

    def put(self, key: Hashable, value: object, nbytes: int) -> None:
        """Store ``value`` as ``nbytes`` bytes; raises ValueError for a negative size or a None value."""
        if value is None:
            raise ValueError("None cannot be cached: get() returns None for a miss")
        self._store(key, value, nbytes)


class BackgroundWriter:
    """Writes vectors to a tier on one daemon thread, never blocking the caller.

    At most ``maxsize`` distinct keys wait; a new key beyond that is dropped
    and counted. A key already waiting takes the newer value in place, so
    the tier always ends with the last value submitted. ``pending(key)``
    exposes waiting and in-flight values so readers see their own writes.
    """

    def __init__(self, tier: Tier, *, maxsize: int = 1024, name: str = "semsearch-l2-writer") -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._tier = tier
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._waiting: dict[str, np.ndarray] = {}
        self._inflight: tuple[str, np.ndarray] | None = None
        self._closed = False
        self.written = self.dropped = self.failed = 0
        self._failure_kinds: set[str] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: str, value: np.ndarray) -> bool:
        """Queue a write; False (and counted in ``dropped``) when full or closed."""
        with self._cond:
            if self._closed or (key not in self._waiting and len(self._waiting) >= self._maxsize):
                self.dropped += 1
                return False
            self._waiting[key] = value
            self._cond.notify_all()
            return True

    def pending(self, key: str) -> np.ndarray | None:
        """The newest value for ``key`` not yet written, if any."""
        with self._cond:
            value = self._waiting.get(key)
            if value is None and self._inflight is not None and self._inflight[0] == key:
                value = self._inflight[1]
            return value

    def depth(self) -> int:
        with self._cond:
            return len(self._waiting) + (self._inflight is not None)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every accepted write is done; False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._waiting and self._inflight is None, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Stop accepting writes, finish the accepted ones, stop the thread.
        Returns False if the thread was still busy after ``timeout``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting or self._closed)
                if not self._waiting:
                    return
                key = next(iter(self._waiting))
                self._inflight = (key, self._waiting.pop(key))
            try:
                self._tier.put(*self._inflight)
                failure = None
            except Exception as err:  # noqa: BLE001 - the thread must outlive any tier bug
                failure = err
            with self._cond:
                self._inflight = None
                if failure is None:
                    self.written += 1
                else:
                    self._record_failure(failure)
                self._cond.notify_all()

    def _record_failure(self, err: Exception) -> None:
        self.failed += 1
        kind = type(err).__qualname__
        if kind not in self._failure_kinds:
            self._failure_kinds.add(kind)
            log.warning("background cache write failed (%s: %s); further %s failures are not logged", kind, err, kind)


@dataclass(frozen=True)
class LayeredStats:
    """Counters of a LayeredCache; ``writes_*`` describe the L2 write-behind."""

    hits_l1: int
    hits_l2: int
    misses: int
    writes_pending: int
    writes_done: int
    writes_dropped: int
    writes_failed: int


class LayeredCache:
    """L1 in front of L2: ``get`` promotes L2 hits into L1, ``put`` fills L1
    now and L2 later through a ``BackgroundWriter`` (default ``maxsize=1024``).

    ``l2_writer`` must write to ``l2`` (tests inject one with a small queue).
    Either tier may be None (disabled). Reads see writes still waiting for L2.
    A dropped or failed L2 write leaves L2 as it was: when L2 held an older
    vector for the same key it may be served after L1 forgets the newer one.
    Keys are content-addressed (model fingerprint + normalized text), so that
    older vector is the same model's encoding of the same text. A ``get``
    racing a ``put`` of the same key on another thread may promote the older
    value; the service calls both from its event-loop thread.
    """

    def __init__(self, l1: Tier | None, l2: Tier | None, *, l2_writer: BackgroundWriter | None = None) -> None:
        if l2 is None and l2_writer is not None:
            raise ValueError("l2_writer needs the l2 tier it writes to")
        self._l1 = l1
        self._l2 = l2
        self._writer = l2_writer or (BackgroundWriter(l2) if l2 is not None else None)
        self._lock = threading.Lock()
        self._answers: dict[TierName, int] = {"l1": 0, "l2": 0, "miss": 0}

    def get(self, key: str) -> tuple[np.ndarray | None, TierName]:
        """The vector for ``key`` and the tier that answered (``"miss"`` with None)."""
        if self._l1 is not None and (vector := self._l1.get(key)) is not None:
            return self._count(vector, "l1")
        vector = self._writer.pending(key) if self._writer is not None else None
        if vector is None and self._l2 is not None:
            vector = self._l2.get(key)
        if vector is None:
            return self._count(None, "miss")
        if self._l1 is not None:
            self._l1.put(key, vector)
        return self._count(vector, "l2")

    def put(self, key: str, value: np.ndarray) -> None:
        """Store in L1 and queue for L2; raises ValueError for a non-1-D-float32 value."""
        vector = frozen_vector(value)
        if self._l1 is not None:
            self._l1.put(key, vector)
        if self._writer is not None:
            self._writer.submit(key, vector)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for queued L2 writes; False if ``timeout`` passed first."""
        return self._writer.flush(timeout) if self._writer is not None else True

    def close(self, timeout: float | None = None) -> None:
        """Finish queued L2 writes (up to ``timeout``), stop the writer, close L2."""
        if self._writer is not None and not self._writer.close(timeout):
            log.warning("L2 writer still busy after %s s at close; unwritten entries are lost", timeout)
        close = getattr(self._l2, "close", None)
        if close is not None:
            close()

    def stats(self) -> LayeredStats:
        w = self._writer
        with self._lock:
            return LayeredStats(
                hits_l1=self._answers["l1"],
                hits_l2=self._answers["l2"],
                misses=self._answers["miss"],
                writes_pending=w.depth() if w else 0,
                writes_done=w.written if w else 0,
                writes_dropped=w.dropped if w else 0,
                writes_failed=w.failed if w else 0,
            )

    def __enter__(self) -> LayeredCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _count(self, vector: np.ndarray | None, tier: TierName) -> tuple[np.ndarray | None, TierName]:
        with self._lock:
            self._answers[tier] += 1
        return vector, tier
