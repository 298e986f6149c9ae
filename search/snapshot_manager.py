"""The live snapshot: loaded, hot-swapped when CURRENT moves, leased to requests.

A request leases the snapshot it starts with and keeps it to the end, so a
swap never changes the ground under an in-flight request; a retired snapshot
is closed when its last lease ends. A snapshot that fails verification or
was built with another model is refused and logged once; the old one keeps
serving.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from search.errors import SnapshotError, Unavailable
from search.snapshot import Snapshot, open_snapshot
from search.snapshot_dir import current_path, read_manifest

log = logging.getLogger(__name__)


class SnapshotManager:
    """Holds the live snapshot of ``index_dir`` for an encoder with ``fingerprint``."""

    def __init__(
        self,
        index_dir: Path,
        *,
        fingerprint: str,
        on_swap: Callable[[Snapshot], None] | None = None,
        opener: Callable[..., Snapshot] = open_snapshot,
    ) -> None:
        self.index_dir = Path(index_dir)
        self.fingerprint = fingerprint
        self._on_swap = on_swap
        self._opener = opener
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._current: Snapshot | None = None
        self._leases: dict[int, int] = {}  # id(snapshot) -> active leases
        self._retired: dict[int, Snapshot] = {}
        self._refused: Path | None = None
        self.swaps = 0
        self.refusals = 0
        self.last_error: str | None = None
        self._closed = False

    @property
    def current(self) -> Snapshot | None:
        return self._current

    def reload(self) -> bool:
        """Load what CURRENT points at if it is not live yet; True when a new snapshot went live.

        Blocking (opens and verifies files): call it from a worker thread.
        Never raises for a bad snapshot: it is refused and logged once.
        """
        with self._reload_lock:
            if self._closed:
                return False
            try:
                path = current_path(self.index_dir)
            except (SnapshotError, OSError) as err:
                self._refuse(None, str(err))
                return False
            live = self._current
            if path is None or path == self._refused:
                return False
            if live is not None and live.path == path and not self._replaced(live):
                return False
            try:
                snapshot = self._opener(path, expected_fingerprint=self.fingerprint, verify=True)
            except (SnapshotError, OSError) as err:  # OSError: e.g. a file it may not read
                self._refuse(path, str(err))
                return False
            if self._closed:  # shut down while this snapshot was being verified
                snapshot.close()
                return False
            self._swap(snapshot)
            return True

    @staticmethod
    def _replaced(live: Snapshot) -> bool:
        """True when the live snapshot's directory now holds another snapshot (index dir rebuilt from scratch)."""
        try:
            return read_manifest(live.path).get("created") != live.manifest.get("created")
        except SnapshotError:
            return True

    def _refuse(self, path: Path | None, message: str) -> None:
        # Log once per refused snapshot (or once per broken CURRENT), not every reload.
        if (path is not None and path == self._refused) or (path is None and message == self.last_error):
            return
        self._refused = path
        self.refusals += 1
        self.last_error = message
        log.error("snapshot refused, the previous one keeps serving: %s", message)

    def _swap(self, snapshot: Snapshot) -> None:
        with self._lock:
            old, self._current = self._current, snapshot
            self._refused = None
            self.swaps += 1
            if old is not None:
                self._retire(old)
        log.info("snapshot v%s is live (%s products)", snapshot.version, snapshot.product_count)
        if self._on_swap is not None:
            self._on_swap(snapshot)

    def _retire(self, snapshot: Snapshot) -> None:
        # Called with self._lock held.
        if self._leases.get(id(snapshot), 0) == 0:
            snapshot.close()
        else:
            self._retired[id(snapshot)] = snapshot

    @contextmanager
    def lease(self) -> Iterator[Snapshot]:
        """The live snapshot, kept open until the block ends. Raises Unavailable when none is loaded."""
        with self._lock:
            snapshot = self._current
            if snapshot is None:
                raise Unavailable(f"no index snapshot is loaded (index dir {self.index_dir})")
            self._leases[id(snapshot)] = self._leases.get(id(snapshot), 0) + 1
        try:
            yield snapshot
        finally:
            with self._lock:
                left = self._leases[id(snapshot)] - 1
                if left:
                    self._leases[id(snapshot)] = left
                else:
                    del self._leases[id(snapshot)]
                    retired = self._retired.pop(id(snapshot), None)
                    if retired is not None:
                        retired.close()

    def close(self) -> None:
        self._closed = True
        with self._reload_lock, self._lock:
            current, self._current = self._current, None
            for snapshot in [*self._retired.values(), *([current] if current else [])]:
                snapshot.close()
            self._retired.clear()
