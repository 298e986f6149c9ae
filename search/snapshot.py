"""A loaded index snapshot: manifest, FAISS index and product store, searchable with filters.

The indexer writes snapshots (indexer/snapshots.py); the service and the
indexer's ``verify``/``upsert`` open them here. A snapshot is refused when its
files fail their checksums, its counts disagree, or its model fingerprint is
not the encoder's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import SnapshotError, Unavailable
from search.filters import Filters
from search.index import IndexSpec, VectorIndex, read_index
from search.product import Product
from search.product_store import ProductStore
from search.snapshot_dir import current_path, read_manifest, verify_files

INDEX_FILE = "index.faiss"
STORE_FILE = "products.sqlite"


@dataclass(frozen=True)
class Hit:
    product: Product
    score: float


@dataclass(frozen=True)
class Snapshot:
    """One published snapshot, opened for search. Thread-safe for searches."""

    path: Path
    manifest: dict[str, Any]
    index: VectorIndex
    store: ProductStore

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["model_fingerprint"])

    @property
    def product_count(self) -> int:
        return len(self.store)

    def find(
        self, queries: np.ndarray, top_k: int, *, filters: Filters | None = None, offset: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row ids of hits ``offset .. offset+top_k`` per query, best first, id -1 padded.

        Filters are applied inside FAISS (an ID selector), so a page holds
        ``top_k`` hits whenever that many products match.
        """
        allowed = None if filters is None or filters.is_empty else self.store.matching_rows(filters)
        if allowed is not None and len(allowed) == 0:
            empty = np.full((len(queries), 0), -1, dtype=np.int64)
            return empty.astype(np.float32), empty
        scores, ids = self.index.search(queries, offset + top_k, allowed)
        return scores[:, offset:], ids[:, offset:]

    def hydrate(self, scores: np.ndarray, ids: np.ndarray) -> list[Hit]:
        """One row of ``find``'s output as products, padding dropped."""
        keep = ids >= 0
        products = self.store.get_many(ids[keep].tolist())
        return [Hit(p, float(s)) for p, s in zip(products, scores[keep])]

    def search(
        self, queries: np.ndarray, top_k: int, *, filters: Filters | None = None, offset: int = 0
    ) -> list[list[Hit]]:
        """``find`` then ``hydrate``, per query."""
        scores, ids = self.find(queries, top_k, filters=filters, offset=offset)
        return [self.hydrate(s, i) for s, i in zip(scores, ids)]

    def close(self) -> None:
        self.store.close()


def open_snapshot(path: Path, *, expected_fingerprint: str | None = None, verify: bool = True) -> Snapshot:
    """Open the snapshot at ``path``.

    Raises SnapshotError naming the path when a file is missing or fails its
    checksum (with ``verify``), the counts disagree, or the model fingerprint
    differs from ``expected_fingerprint``.
    """
    manifest = read_manifest(path)
    if expected_fingerprint is not None and manifest.get("model_fingerprint") != expected_fingerprint:
        raise SnapshotError(
            f"snapshot {path} was built with model {manifest.get('model_fingerprint')}, "
            f"the encoder is {expected_fingerprint}; re-ingest with this model"
        )
    if verify and (problems := verify_files(path, manifest)):
        raise SnapshotError(f"snapshot {path} failed verification: {'; '.join(problems[:3])}")
    try:
        spec = IndexSpec.from_dict(manifest["index"])
        expected_count = int(manifest["counts"]["products"])
    except (KeyError, TypeError, ValueError) as err:
        raise SnapshotError(f"snapshot {path}: manifest lacks index or counts ({err})") from err
    index = VectorIndex(read_index(path / INDEX_FILE), spec)
    store = ProductStore.open(path / STORE_FILE)
    if not index.ntotal == len(store) == expected_count:
        store.close()
        raise SnapshotError(
            f"snapshot {path}: counts disagree (index {index.ntotal}, store {len(store)}, manifest {expected_count})"
        )
    if index.dimension != int(manifest.get("dimension", index.dimension)):
        store.close()
        raise SnapshotError(f"snapshot {path}: index dimension {index.dimension} != manifest {manifest['dimension']}")
    return Snapshot(path=path, manifest=manifest, index=index, store=store)


def open_current(index_dir: Path, **kwargs: Any) -> Snapshot:
    """Open the snapshot CURRENT points at. Raises Unavailable when there is none yet."""
    path = current_path(Path(index_dir))
    if path is None:
        raise Unavailable(f"no snapshot in {index_dir} yet; run: semsearch-index ingest CATALOG --index-dir {index_dir}")
    return open_snapshot(path, **kwargs)
