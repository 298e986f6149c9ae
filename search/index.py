"""The snapshot's vector index: FAISS over L2-normalized vectors, filters inside FAISS.

Similarity is inner product (cosine, since vectors are unit length). FAISS ids
are row numbers 0..n-1, the same row ids as the snapshot's product store.

Filters are applied by FAISS itself through a per-call ID selector, so a
filtered search ranks only allowed rows and returns ``k`` of them whenever ``k``
exist -- never "top-k, then drop what the filter rejects".

Threads: a ``VectorIndex`` is read-only after construction and every per-call
setting (selector, efSearch) travels in per-call search parameters, so several
threads may search one index at once. FAISS releases the GIL while it searches
and parallelizes a batch of queries with OpenMP; this module never changes the
OpenMP thread count (process-wide state), which is the entry point's call:
when many threads search at once, one OpenMP thread each avoids oversubscribing
the cores (on 2 cores, one 44k x 384 exact query took 16 ms with 2 OpenMP
threads against 2.4 ms with 1).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import faiss
import numpy as np

from search.errors import InvalidArgument, SnapshotError

KINDS = ("flat", "hnsw")
# Measured on the 44k fashion catalog (bench/RESULTS.md, indexer section):
# exact search costs 2.4 ms a query and grows linearly, so below 20k vectors
# it stays under ~1.1 ms, less than one encoder miss, with perfect recall and
# no build. HNSW M=32, efConstruction=200, efSearch=128 reaches recall@10
# 0.983 against exact (ties counted) at 0.17 ms, 7% of exact's latency;
# efSearch=64 gives 0.960, M=16 or efConstruction=100 need efSearch=256.
EXACT_BELOW = 20_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 128
# An HNSW walk under a selective filter loses recall (it steps through
# rejected nodes) and can come back short; an exact scan of the allowed rows
# is right and, when they are few, as cheap. Exact when allowed rows <=
# max(ROWS, FRACTION * ntotal). Measured on 44k x 384 clustered vectors,
# random allowed sets, k=10, efSearch=64, one query: filtered HNSW ~0.23 ms
# at any selectivity with recall@10 0.49 / 0.80 / 0.99 at 2% / 5% / 10%
# allowed; the exact scan 0.11 / 0.19 / 0.35-0.6 ms there.
EXACT_FILTER_ROWS = 2_000
EXACT_FILTER_FRACTION = 0.10
_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True, kw_only=True)
class IndexSpec:
    """How to build an index: ``"flat"`` (exact) or ``"hnsw"`` with its parameters.

    ``m``, ``ef_construction`` and ``ef_search`` only matter for HNSW.
    Raises InvalidArgument naming the field when a value is invalid.
    """

    kind: str
    m: int = HNSW_M
    ef_construction: int = HNSW_EF_CONSTRUCTION
    ef_search: int = HNSW_EF_SEARCH

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidArgument(f"index.kind: must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name, least in (("m", 2), ("ef_construction", 1), ("ef_search", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise InvalidArgument(f"index.{name}: must be an integer >= {least}, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> IndexSpec:
        """The inverse of ``to_dict``; raises InvalidArgument on unknown keys or bad values."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InvalidArgument(f"index: unknown settings {sorted(unknown)}")
        if "kind" not in d:
            raise InvalidArgument("index.kind: missing")
        return cls(**d)


def choose_spec(
    n: int,
    *,
    exact_below: int = EXACT_BELOW,
    m: int = HNSW_M,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
    ef_search: int = HNSW_EF_SEARCH,
) -> IndexSpec:
    """Exact below ``exact_below`` vectors, HNSW from there on."""
    kind = "flat" if n < exact_below else "hnsw"
    return IndexSpec(kind=kind, m=m, ef_construction=ef_construction, ef_search=ef_search)


def _as_matrix(array: np.ndarray, what: str) -> np.ndarray:
    matrix = np.ascontiguousarray(array, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise InvalidArgument(f"{what}: expected a 2-d array (n, d) with d > 0, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise InvalidArgument(f"{what}: contains NaN or infinity")
    return matrix


def build_index(vectors: np.ndarray, spec: IndexSpec) -> faiss.Index:
    """An index over ``vectors`` (n, d), L2-normalized; row i gets FAISS id i.

    Raises InvalidArgument when the vectors are not a finite 2-d array of unit rows.
    """
    matrix = _as_matrix(vectors, "vectors")
    norms = np.linalg.norm(matrix, axis=1)
    if len(norms) and np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
        raise InvalidArgument("vectors: rows must be L2-normalized (inner product is the similarity)")
    d = matrix.shape[1]
    if spec.kind == "flat":
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, spec.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec.ef_construction
        index.hnsw.efSearch = spec.ef_search
    index.add(matrix)
    return index


def write_index(index: faiss.Index, path: Path) -> None:
    """Write ``index`` to ``path`` and fsync it. Raises SnapshotError naming the path."""
    path = Path(path)
    try:
        faiss.write_index(index, str(path))
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    except (RuntimeError, OSError) as err:
        raise SnapshotError(f"cannot write index {path}: {err}") from err


def read_index(path: Path) -> faiss.Index:
    """Read an index written by ``write_index``.

    Raises SnapshotError naming the path when it is missing, truncated or corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"index {path} does not exist")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as err:
        raise SnapshotError(f"index {path} is corrupt or truncated: {err}") from err


class VectorIndex:
    """Top-k inner-product search over a built index, optionally restricted to allowed rows.

    Raises SnapshotError when ``index`` is not of ``spec.kind``.
    """

    def __init__(
        self,
        index: faiss.Index,
        spec: IndexSpec,
        *,
        exact_filter_rows: int = EXACT_FILTER_ROWS,
        exact_filter_fraction: float = EXACT_FILTER_FRACTION,
    ):
        # downcast_index returns a wrapper that does not own the C++ object:
        # keep the caller's (owning) wrapper referenced for the index's lifetime.
        self._owner = index
        index = faiss.downcast_index(index)
        expected = faiss.IndexFlat if spec.kind == "flat" else faiss.IndexHNSW
        if not isinstance(index, expected) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise SnapshotError(f"index is a {type(index).__name__}, expected an inner-product {spec.kind} index")
        self._index = index
        self._spec = spec
        # HNSW keeps its vectors in a flat index: exact fallbacks search that,
        # costing no extra memory.
        self._exact = index if spec.kind == "flat" else faiss.downcast_index(index.storage)
        self._exact_filter_rows = max(exact_filter_rows, int(exact_filter_fraction * index.ntotal))

    @property
    def spec(self) -> IndexSpec:
        return self._spec

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def dimension(self) -> int:
        return int(self._index.d)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows per query, best first: ``(scores (m, k) float32, ids (m, k) int64)``.

        ``allowed``: the row ids results must come from (sorted int64 from
        ``ProductStore.matching_rows``; order and repeats don't matter); None
        allows all. Whenever ``min(k, len(allowed))`` rows exist, that many are
        returned; the rest of a row is padded with id -1 and score -inf.
        Exact for flat; for HNSW, exact when few rows are allowed, else
        approximate with efSearch >= k.
        Raises InvalidArgument on a bad shape, dimension, ``k`` or row id.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidArgument(f"k: must be an integer >= 1, got {k!r}")
        k = int(k)
        matrix = _as_matrix(queries, "queries") if len(queries) else np.empty((0, self.dimension), np.float32)
        if matrix.shape[1] != self.dimension:
            raise InvalidArgument(f"queries: dimension {matrix.shape[1]} != index dimension {self.dimension}")
        scores = np.full((len(matrix), k), -np.inf, dtype=np.float32)
        ids = np.full((len(matrix), k), -1, dtype=np.int64)
        if allowed is None:
            selector, n_allowed = None, self.ntotal
        else:
            bitmap, n_allowed = self._bitmap(allowed)
            # IDSelectorBitmap holds a raw pointer into `bitmap`; the local
            # keeps the array alive until the search below returns.
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        if len(matrix) == 0 or n_allowed == 0:
            return scores, ids
        if self._spec.kind == "flat" or n_allowed <= self._exact_filter_rows:
            self._search_exact(matrix, k, selector, scores, ids)
        else:
            params = faiss.SearchParametersHNSW(efSearch=max(self._spec.ef_search, k))
            if selector is not None:
                params.sel = selector
            self._index.search(matrix, k, params=params, D=scores, I=ids)
            # A filtered graph walk can run out of allowed candidates; redo
            # short rows exactly so top_k is honored.
            short = np.flatnonzero((ids >= 0).sum(axis=1) < min(k, n_allowed))
            if len(short):
                redo_scores, redo_ids = scores[short], ids[short]
                self._search_exact(np.ascontiguousarray(matrix[short]), k, selector, redo_scores, redo_ids)
                scores[short], ids[short] = redo_scores, redo_ids
        # FAISS pads with -FLT_MAX (or +/-inf for HNSW); make padding uniform.
        scores[ids < 0] = -np.inf
        return scores, ids

    def search_exact(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top ``k`` (brute force over the stored vectors), whatever the index kind."""
        matrix = _as_matrix(queries, "queries")
        k = min(int(k), max(self.ntotal, 1))
        scores = np.full((len(matrix), k), -np.inf, dtype=np.float32)
        ids = np.full((len(matrix), k), -1, dtype=np.int64)
        self._search_exact(matrix, k, None, scores, ids)
        return scores, ids

    def reconstruct(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows``, (len(rows), d) float32."""
        return np.stack([self._exact.reconstruct(int(r)) for r in rows]) if len(rows) else np.empty((0, self.dimension), np.float32)

    def _search_exact(
        self, matrix: np.ndarray, k: int, selector: faiss.IDSelector | None, scores: np.ndarray, ids: np.ndarray
    ) -> None:
        params = faiss.SearchParameters(sel=selector) if selector is not None else None
        self._exact.search(matrix, k, params=params, D=scores, I=ids)

    def _bitmap(self, allowed: np.ndarray) -> tuple[np.ndarray, int]:
        rows = np.asarray(allowed)
        if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise InvalidArgument(f"allowed: expected a 1-d array of row ids, got {rows.dtype} {rows.shape}")
        mask = np.zeros(self.ntotal, dtype=bool)
        if rows.size:
            if rows.min() < 0 or rows.max() >= self.ntotal:
                raise InvalidArgument(f"allowed: row ids must be in [0, {self.ntotal}), got {rows.min()}..{rows.max()}")
            mask[rows] = True
        # A bitmap, not IDSelectorBatch: built in ~30 us vs ~1.5 ms for 40k of
        # 44k rows, and a cheaper membership test. Id i is bit i & 7 of byte
        # i >> 3 (little bit order).
        return np.packbits(mask, bitorder="little"), int(np.count_nonzero(mask))
