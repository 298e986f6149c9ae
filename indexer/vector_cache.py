"""Vectors kept by content hash, so an unchanged product is never encoded twice.

Rows are keyed by (model fingerprint, sha256 of the text encoded), so a
vector from another model, tokenizer or vector setting is never mixed in:
it simply is not found. The store is one SQLite file (WAL) that the indexer
keeps beside its snapshots; it is a cache, so a lost last transaction after
a power cut costs only re-encoding.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

# Little-endian explicitly, so the file reads the same on any machine.
DTYPE = np.dtype("<f4")
# SQLite builds before 3.32 allow 999 bound variables; one goes to the fingerprint.
CHUNK = 900

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    fingerprint TEXT NOT NULL,
    key TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (fingerprint, key)
)
"""


def text_key(text: str) -> str:
    """Hex SHA-256 of the UTF-8 text: the cache key of the text's vector."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class VectorCache:
    """A persistent map text_key -> float32 vector for one model fingerprint.

    ``get_many`` sees only rows of this fingerprint whose blob holds exactly
    ``dimension`` float32s; any other row is treated as absent. Not for use
    from several threads; several processes may share the file (SQLite locks).
    """

    def __init__(self, path: Path, *, fingerprint: str, dimension: int) -> None:
        """Open or create the store at ``path``.

        Raises ValueError for an empty fingerprint or a dimension below 1;
        sqlite3.DatabaseError when ``path`` is not an SQLite file.
        """
        if not isinstance(fingerprint, str) or not fingerprint:
            raise ValueError(f"fingerprint must be a non-empty string, got {fingerprint!r}")
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise ValueError(f"dimension must be an integer >= 1, got {dimension!r}")
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.dimension = dimension
        self._blob_size = dimension * DTYPE.itemsize
        self._conn = sqlite3.connect(self.path)
        try:
            # Rows are ~1.5 KB; big pages hold several per page and halve write time.
            # It only takes effect on a new file, before WAL is switched on.
            self._conn.execute("PRAGMA page_size=16384")
            self._conn.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL never corrupts; it may drop the last commit on power loss.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            with self._conn:
                self._conn.execute(_SCHEMA)
        except BaseException:
            self._conn.close()
            raise

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys``, as {key: float32 array of shape (dimension,)}.

        Missing keys are simply absent from the result. The arrays are
        writable views into one block allocated per call.
        """
        wanted = list(dict.fromkeys(keys))
        found: list[str] = []
        blobs: list[bytes] = []
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT key, vector FROM vectors WHERE fingerprint = ? AND key IN ({marks})",
                (self.fingerprint, *chunk),
            )
            for key, blob in rows:
                if len(blob) == self._blob_size:
                    found.append(key)
                    blobs.append(blob)
        if not found:
            return {}
        # One join and one copy beat a frombuffer + copy per row.
        block = np.frombuffer(b"".join(blobs), dtype=DTYPE).reshape(len(found), self.dimension).copy()
        return dict(zip(found, block))

    def put_many(self, items: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]) -> None:
        """Store (or replace) vectors under this fingerprint in one transaction.

        Raises ValueError, storing nothing, when a vector does not have
        ``dimension`` elements.
        """
        pairs = items.items() if isinstance(items, Mapping) else items
        rows: list[tuple[str, str, bytes]] = []
        for key, vector in pairs:
            array = np.asarray(vector, dtype=DTYPE)
            if array.shape != (self.dimension,):
                raise ValueError(f"vector for {key!r} has shape {array.shape}, expected ({self.dimension},)")
            rows.append((self.fingerprint, key, array.tobytes()))
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO vectors (fingerprint, key, vector) VALUES (?, ?, ?)", rows
            )

    def fingerprints(self) -> dict[str, int]:
        """Row count per fingerprint in the file, this one's and any other model's."""
        rows = self._conn.execute("SELECT fingerprint, COUNT(*) FROM vectors GROUP BY fingerprint")
        return {fingerprint: count for fingerprint, count in rows}

    def prune(self, keep_keys: set[str], *, drop_other_fingerprints: bool = False) -> int:
        """Delete this fingerprint's rows not in ``keep_keys``; return how many rows went.

        Rows of this fingerprint with a wrong blob size go too, whatever
        their key. With ``drop_other_fingerprints`` every other model's rows
        go as well. One transaction.
        """
        with self._conn:
            self._conn.execute("CREATE TEMP TABLE IF NOT EXISTS keep (key TEXT PRIMARY KEY)")
            self._conn.execute("DELETE FROM temp.keep")
            self._conn.executemany("INSERT OR IGNORE INTO temp.keep VALUES (?)", ((k,) for k in keep_keys))
            deleted = self._conn.execute(
                "DELETE FROM vectors WHERE fingerprint = ?"
                " AND (key NOT IN (SELECT key FROM temp.keep) OR length(vector) != ?)",
                (self.fingerprint, self._blob_size),
            ).rowcount
            self._conn.execute("DELETE FROM temp.keep")
            if drop_other_fingerprints:
                deleted += self._conn.execute(
                    "DELETE FROM vectors WHERE fingerprint != ?", (self.fingerprint,)
                ).rowcount
        return deleted

    def close(self) -> None:
        """Close the file; calling it again is harmless."""
        self._conn.close()

    def __enter__(self) -> VectorCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
