"""The L2 embedding cache: float32 vectors on disk in a diskcache store.

It survives restarts, and it degrades instead of failing: any error from the
store (sqlite3.Error, OSError, diskcache.Timeout, anything else diskcache
raises) makes ``get`` a miss and ``put`` a no-op, is counted, and is logged as
one warning per kind of failure per outage. After a failure the store is
closed and reopened on the first call ``retry_after`` seconds later, so the
cache comes back by itself once the disk does.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import diskcache
import numpy as np

from search.cache import CacheStats, frozen_vector

__all__ = ["MIN_L2_BYTES", "L2Cache", "Store", "open_diskcache"]

log = logging.getLogger(__name__)

# An empty diskcache database is 32 KiB; below twice that nothing useful fits
# and the volume could never get under the limit.
MIN_L2_BYTES = 64 * 1024
# sqlite's busy timeout. L2 reads happen on the request path; waiting longer
# than this for a lock is worse than a miss.
_SQLITE_TIMEOUT_S = 0.1
_DB_FILES = ("cache.db", "cache.db-wal", "cache.db-shm")
_CORRUPT = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})


class Store(Protocol):
    """The part of ``diskcache.Cache`` that L2Cache uses."""

    def get(self, key: str) -> object: ...

    def set(self, key: str, value: bytes) -> object: ...

    def volume(self) -> int: ...

    def cull(self) -> int: ...

    def close(self) -> None: ...


def open_diskcache(directory: Path, max_bytes: int) -> Store:
    """Open (creating if needed) the diskcache store of an L2 cache."""
    # cull_limit=0: diskcache's own cull-on-set drops a fixed 10 entries and
    # cannot report how many; L2Cache.put culls explicitly and counts.
    return diskcache.Cache(
        str(directory),
        size_limit=max_bytes,
        eviction_policy="least-recently-used",
        cull_limit=0,
        timeout=_SQLITE_TIMEOUT_S,
    )


class L2Cache:
    """Disk tier of ``dimension``-float32 vectors, LRU-bounded to ``max_bytes``
    of store volume (diskcache's estimate: database pages + files).

    Never raises from ``get``/``put``/``stats``/``close`` because of the store.
    Raises ValueError for ``max_bytes < MIN_L2_BYTES`` or ``dimension < 1``
    (construction) and for a ``put`` value that is not a 1-D float32 array
    of ``dimension`` elements (a caller bug, not a storage fault).
    ``timer`` and ``opener`` are injectable for tests.
    """

    def __init__(
        self,
        directory: Path | str,
        max_bytes: int,
        *,
        dimension: int,
        retry_after: float = 5.0,
        timer: Callable[[], float] = time.monotonic,
        opener: Callable[[Path, int], Store] = open_diskcache,
    ) -> None:
        if max_bytes < MIN_L2_BYTES:
            raise ValueError(f"max_bytes must be >= {MIN_L2_BYTES}, got {max_bytes}")
        if dimension < 1:
            raise ValueError(f"dimension must be >= 1, got {dimension}")
        self._directory = Path(directory)
        self._max_bytes = max_bytes
        self._dimension = dimension
        self._retry_after = retry_after
        self._timer = timer
        self._opener = opener
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._identity: tuple[int, int] | None = None
        self._retry_at = -math.inf
        self._wipe_on_open = False
        self._closed = False
        self._degraded = False  # the store was lost; the next success ends the outage
        self._warned: set[str] = set()
        self._hits = self._misses = self._evictions = self._errors = 0
        with self._lock:
            self._open()

    @property
    def directory(self) -> Path:
        return self._directory

    def get(self, key: str) -> np.ndarray | None:
        store = self._usable_store()
        blob: object = None
        if store is not None:
            try:
                blob = store.get(key)
            except Exception as err:  # noqa: BLE001 - see the module docstring
                self._failed(store, err)
            else:
                self._succeeded()
        with self._lock:
            # A blob of the wrong size (another dimension, a torn write) is a miss.
            if not isinstance(blob, bytes) or len(blob) != 4 * self._dimension:
                self._misses += 1
                return None
            self._hits += 1
        vector = np.frombuffer(blob, dtype="<f4").astype(np.float32)
        vector.flags.writeable = False
        return vector

    def put(self, key: str, value: np.ndarray) -> None:
        vector = frozen_vector(value)
        if vector.shape != (self._dimension,):
            raise ValueError(f"expected a vector of dimension {self._dimension}, got {vector.shape[0]}")
        store = self._usable_store()
        if store is None:
            return
        try:
            store.set(key, vector.astype("<f4").tobytes())
            evicted = store.cull() if store.volume() > self._max_bytes else 0
        except Exception as err:  # noqa: BLE001 - see the module docstring
            self._failed(store, err)
            return
        self._succeeded(evicted)

    def stats(self) -> CacheStats:
        with self._lock:
            store = self._store
            volume = 0
            if store is not None:
                with contextlib.suppress(Exception):
                    volume = store.volume()
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                bytes=volume,
                max_bytes=self._max_bytes,
                errors=self._errors,
            )

    def close(self) -> None:
        """Close the store; later calls miss and drop. Idempotent."""
        with self._lock:
            self._closed = True
            self._drop_store()

    def _usable_store(self) -> Store | None:
        """The open store, reopened if its retry time has come; None while down."""
        with self._lock:
            if self._closed:
                return None
            if self._store is None:
                if self._timer() >= self._retry_at:
                    self._open()
                return self._store
            # sqlite keeps using an unlinked database file, so a deleted or
            # replaced directory would otherwise go unnoticed until restart.
            if self._database_identity() != self._identity:
                self._record(f"database {self._directory / _DB_FILES[0]} vanished or was replaced", "vanished")
                self._degraded = True
                self._drop_store()
                self._open()
            return self._store

    def _open(self) -> None:
        """Open the store (lock held). On failure, stay down until ``retry_after``."""
        if self._wipe_on_open:
            self._wipe()
        try:
            try:
                store = self._opener(self._directory, self._max_bytes)
            except sqlite3.DatabaseError as err:
                if getattr(err, "sqlite_errorname", None) not in _CORRUPT:
                    raise
                # The cache holds only derived data: start over rather than stay down.
                self._record(f"corrupt database, recreating it: {err}", _kind(err))
                self._degraded = True
                self._wipe()
                store = self._opener(self._directory, self._max_bytes)
        except Exception as err:  # noqa: BLE001 - see the module docstring
            self._record(f"cannot open: {err}", _kind(err))
            self._degraded = True
            self._retry_at = self._timer() + self._retry_after
            return
        self._store = store
        self._identity = self._database_identity()

    def _failed(self, store: Store, err: Exception) -> None:
        with self._lock:
            self._record(str(err), _kind(err))
            if isinstance(err, diskcache.Timeout) or store is not self._store:
                return  # busy, not broken; or another thread already reacted
            self._wipe_on_open = getattr(err, "sqlite_errorname", None) in _CORRUPT
            self._degraded = True
            self._drop_store()
            self._retry_at = self._timer() + self._retry_after

    def _succeeded(self, evicted: int = 0) -> None:
        with self._lock:
            self._evictions += evicted
            if self._degraded:
                self._degraded = False
                self._warned.clear()
                log.info("L2 cache at %s works again", self._directory)

    def _record(self, message: str, kind: str) -> None:
        """Count a failure; warn once per kind until the store recovers from an outage (lock held)."""
        self._errors += 1
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(
                "L2 cache at %s failed (%s): %s; its reads miss until it recovers, and further %s failures"
                " are not logged until then",
                self._directory,
                kind,
                message,
                kind,
            )

    def _drop_store(self) -> None:
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
        self._store = None
        self._identity = None

    def _database_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._directory / _DB_FILES[0])
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _wipe(self) -> None:
        self._wipe_on_open = False
        for name in _DB_FILES:
            # Whatever stops the unlink will stop the open too, and be reported there.
            with contextlib.suppress(OSError):
                (self._directory / name).unlink()


def _kind(err: BaseException) -> str:
    """A failure's kind for rate-limited logging: its class plus errno or sqlite code."""
    name = type(err).__qualname__
    if isinstance(err, OSError) and err.errno is not None:
        return f"{name}[{errno.errorcode.get(err.errno, err.errno)}]"
    if isinstance(err, sqlite3.Error) and getattr(err, "sqlite_errorname", None):
        return f"{name}[{err.sqlite_errorname}]"
    return name
