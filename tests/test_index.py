"""The FAISS vector index, checked against exact numpy search on seeded data."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np
import pytest

from search.errors import InvalidArgument, SnapshotError
from search.index import IndexSpec, VectorIndex, build_index, choose_spec, read_index, write_index

N, D, K = 5000, 32, 10
# Small graph for a fast build; ef_search 128 gives recall@10 ~0.99 here.
HNSW_SPEC = IndexSpec(kind="hnsw", m=16, ef_construction=100, ef_search=128)


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit_rows(np.random.default_rng(7), N)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return unit_rows(np.random.default_rng(8), 100)


@pytest.fixture(scope="module")
def flat(vectors: np.ndarray) -> VectorIndex:
    spec = IndexSpec(kind="flat")
    return VectorIndex(build_index(vectors, spec), spec)


@pytest.fixture(scope="module")
def hnsw_raw(vectors: np.ndarray) -> faiss.Index:
    return build_index(vectors, HNSW_SPEC)


@pytest.fixture(scope="module")
def hnsw(hnsw_raw: faiss.Index) -> VectorIndex:
    return VectorIndex(hnsw_raw, HNSW_SPEC)


@pytest.fixture(scope="module")
def hnsw_graph_only(hnsw_raw: faiss.Index) -> VectorIndex:
    """Never picks the exact scan up front, so filtered searches walk the graph (and its fallback)."""
    return VectorIndex(hnsw_raw, HNSW_SPEC, exact_filter_rows=0, exact_filter_fraction=0.0)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
    """Exact top-k by numpy: (scores, ids), padded like VectorIndex.search."""
    sims = queries @ vectors.T
    if allowed is not None:
        masked = np.full_like(sims, -np.inf)
        masked[:, allowed] = sims[:, allowed]
        sims = masked
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(sims, order, axis=1)
    ids = np.where(np.isfinite(scores), order, -1)
    pad = k - ids.shape[1]
    return (np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf),
            np.pad(ids, ((0, 0), (0, pad)), constant_values=-1))


def assert_valid(scores: np.ndarray, ids: np.ndarray, vectors, queries, k: int, allowed: np.ndarray | None) -> None:
    """Shapes, dtypes, padding, uniqueness, allowed membership, true scores, and honored top_k."""
    assert scores.shape == ids.shape == (len(queries), k)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    n_allowed = len(vectors) if allowed is None else len(allowed)
    for row_scores, row_ids, query in zip(scores, ids, queries):
        valid = row_ids[row_ids >= 0]
        assert len(valid) == min(k, n_allowed)
        assert (row_ids[: len(valid)] >= 0).all() and (row_ids[len(valid):] == -1).all()
        assert np.isneginf(row_scores[len(valid):]).all()
        assert len(set(valid.tolist())) == len(valid)
        if allowed is not None:
            assert np.isin(valid, allowed).all()
        np.testing.assert_allclose(row_scores[: len(valid)], vectors[valid] @ query, atol=1e-5)
        assert (np.diff(row_scores[: len(valid)]) <= 1e-6).all()


def assert_exact(result, vectors, queries, k: int, allowed: np.ndarray | None = None) -> None:
    """Same as the brute force, ties aside: equal scores, and equal ids wherever a score is untied."""
    scores, ids = result
    assert_valid(scores, ids, vectors, queries, k, allowed)
    truth_scores, truth_ids = brute_force(vectors, queries, k + 1, allowed)
    np.testing.assert_allclose(scores, truth_scores[:, :k], atol=1e-5)
    s = truth_scores
    with np.errstate(invalid="ignore"):  # -inf - -inf in the padding
        gap_prev = np.abs(s[:, :k] - np.concatenate([np.full((len(s), 1), np.inf), s[:, : k - 1]], axis=1))
        gap_next = np.abs(s[:, :k] - s[:, 1:])
    untied = np.isfinite(s[:, :k]) & (gap_prev > 1e-5) & (gap_next > 1e-5)
    assert untied.sum() > 0.5 * np.isfinite(s[:, :k]).sum()  # the check below checks something
    assert (ids[untied] == truth_ids[:, :k][untied]).all()


def recall(ids: np.ndarray, truth_ids: np.ndarray) -> float:
    hits = [len(set(a[a >= 0].tolist()) & set(b[b >= 0].tolist())) / max(1, (b >= 0).sum()) for a, b in zip(ids, truth_ids)]
    return float(np.mean(hits))


# Allowed-set sizes from 3 rows to 90% of rows; seeded per size.
SELECTIVITIES = [3, 9, 10, 11, 50, 250, 1000, 2500, 4500]


def allowed_rows(size: int) -> np.ndarray:
    return np.sort(np.random.default_rng(size).choice(N, size, replace=False)).astype(np.int64)


def test_flat_equals_brute_force(flat: VectorIndex, vectors, queries) -> None:
    assert (flat.ntotal, flat.dimension) == (N, D)
    for k in (1, K, 100):
        assert_exact(flat.search(queries, k), vectors, queries, k)


@pytest.mark.parametrize("size", SELECTIVITIES, ids=lambda s: f"{s}-rows")
def test_flat_filtered_equals_brute_force(flat: VectorIndex, vectors, queries, size: int) -> None:
    allowed = allowed_rows(size)
    assert_exact(flat.search(queries, K, allowed), vectors, queries, K, allowed)


def test_hnsw_recall_at_10(hnsw: VectorIndex, vectors, queries) -> None:
    scores, ids = hnsw.search(queries, K)
    assert_valid(scores, ids, vectors, queries, K, None)
    assert recall(ids, brute_force(vectors, queries, K)[1]) >= 0.95


@pytest.mark.parametrize("size", SELECTIVITIES, ids=lambda s: f"{s}-rows")
def test_hnsw_filtered_honors_top_k_with_high_recall(hnsw: VectorIndex, vectors, queries, size: int) -> None:
    allowed = allowed_rows(size)
    scores, ids = hnsw.search(queries, K, allowed)
    assert_valid(scores, ids, vectors, queries, K, allowed)
    assert recall(ids, brute_force(vectors, queries, K, allowed)[1]) >= 0.95


@pytest.mark.parametrize("size", SELECTIVITIES, ids=lambda s: f"{s}-rows")
def test_hnsw_graph_walk_honors_top_k(hnsw_graph_only: VectorIndex, vectors, queries, size: int) -> None:
    # Selective filters make the graph walk come back short; short rows are
    # redone exactly, so exactly min(k, allowed) allowed ids come back.
    allowed = allowed_rows(size)
    scores, ids = hnsw_graph_only.search(queries, K, allowed)
    assert_valid(scores, ids, vectors, queries, K, allowed)
    if size <= K:
        assert_exact((scores, ids), vectors, queries, K, allowed)


def test_raw_filtered_hnsw_comes_back_short(hnsw_raw: faiss.Index, queries) -> None:
    """Why the fallback exists: FAISS's filtered graph walk misses allowed rows when they are few."""
    allowed = allowed_rows(9)
    mask = np.zeros(N, dtype=bool)
    mask[allowed] = True
    bitmap = np.packbits(mask, bitorder="little")
    params = faiss.SearchParametersHNSW(sel=faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), efSearch=128)
    _, ids = hnsw_raw.search(queries, K, params=params)
    assert ((ids >= 0).sum(axis=1) < len(allowed)).mean() > 0.5


def test_hnsw_raises_ef_search_to_k(hnsw: VectorIndex, vectors, queries) -> None:
    k = 300  # above the spec's ef_search of 128
    scores, ids = hnsw.search(queries, k)
    assert_valid(scores, ids, vectors, queries, k, None)
    assert recall(ids, brute_force(vectors, queries, k)[1]) >= 0.95


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_fewer_allowed_than_k_returns_all_then_padding(kind: str, request, vectors, queries) -> None:
    index: VectorIndex = request.getfixturevalue(kind)
    allowed = np.array([4, 17, 4999], dtype=np.int64)
    scores, ids = index.search(queries, K, allowed)
    assert_exact((scores, ids), vectors, queries, K, allowed)
    assert (np.sort(ids[:, :3], axis=1) == allowed).all()
    assert (ids[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_edge_cases(kind: str, request, vectors, queries) -> None:
    index: VectorIndex = request.getfixturevalue(kind)
    scores, ids = index.search(queries, K, np.array([], dtype=np.int64))
    assert (ids == -1).all() and np.isneginf(scores).all()
    scores, ids = index.search(np.empty((0, D), np.float32), K)
    assert scores.shape == ids.shape == (0, K)
    # Unsorted, repeated allowed ids mean the same set.
    allowed = allowed_rows(50)
    shuffled = np.concatenate([allowed[::-1], allowed[:5]])
    np.testing.assert_array_equal(index.search(queries, K, shuffled)[1], index.search(queries, K, allowed)[1])


def test_k_beyond_ntotal_pads(vectors) -> None:
    spec = IndexSpec(kind="flat")
    index = VectorIndex(build_index(vectors[:5], spec), spec)
    scores, ids = index.search(vectors[:2], 8)
    assert_exact((scores, ids), vectors[:5], vectors[:2], 8)
    assert (ids[:, 5:] == -1).all()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ix, q: ix.search(q, 0), "k: must be an integer >= 1"),
        (lambda ix, q: ix.search(q[:, :5], K), "dimension 5 != index dimension 32"),
        (lambda ix, q: ix.search(q[0], K), "queries: expected a 2-d array"),
        (lambda ix, q: ix.search(q, K, np.array([0, N])), r"allowed: row ids must be in \[0, 5000\)"),
        (lambda ix, q: ix.search(q, K, np.array([-1])), "allowed: row ids must be in"),
        (lambda ix, q: ix.search(q, K, np.zeros((2, 2), np.int64)), "allowed: expected a 1-d array"),
        (lambda ix, q: ix.search(q, K, np.array([0.5])), "allowed: expected a 1-d array"),
    ],
    ids=["k-zero", "wrong-dimension", "1-d-queries", "id-past-end", "negative-id", "2-d-allowed", "float-allowed"],
)
def test_search_rejects_bad_input(flat: VectorIndex, queries, call, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        call(flat, queries)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_concurrent_searches_match_serial(kind: str, request, queries) -> None:
    index: VectorIndex = request.getfixturevalue(kind)
    jobs = [(queries[i % 96: i % 96 + 4], allowed_rows(SELECTIVITIES[i % len(SELECTIVITIES)])) for i in range(36)]
    serial = [index.search(q, K, a) for q, a in jobs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(lambda job: index.search(job[0], K, job[1]), jobs))
    for (s_scores, s_ids), (c_scores, c_ids) in zip(serial, concurrent):
        np.testing.assert_array_equal(c_ids, s_ids)
        np.testing.assert_array_equal(c_scores, s_scores)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_write_read_round_trip(kind: str, request, tmp_path: Path, queries) -> None:
    index: VectorIndex = request.getfixturevalue(kind)
    path = tmp_path / "index.faiss"
    write_index(index._index, path)
    loaded = VectorIndex(read_index(path), index.spec)
    assert (loaded.ntotal, loaded.dimension) == (N, D)
    allowed = allowed_rows(2500)
    for a in (None, allowed):
        for got, want in zip(loaded.search(queries, K, a), index.search(queries, K, a)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_read_damaged_index_raises_snapshot_error(flat: VectorIndex, tmp_path: Path, damage: str) -> None:
    path = tmp_path / "index.faiss"
    write_index(flat._index, path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00garbage" * 64, "empty": b""}[damage])
    with pytest.raises(SnapshotError, match=r"index\.faiss is corrupt or truncated"):
        read_index(path)


def test_read_missing_index_raises_snapshot_error(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match=r"nowhere\.faiss does not exist"):
        read_index(tmp_path / "nowhere.faiss")


def test_write_into_missing_directory_raises_snapshot_error(flat: VectorIndex, tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match=r"no-dir"):
        write_index(flat._index, tmp_path / "no-dir" / "index.faiss")


def test_index_of_another_kind_is_refused(hnsw_raw: faiss.Index, vectors) -> None:
    with pytest.raises(SnapshotError, match="expected an inner-product flat index"):
        VectorIndex(hnsw_raw, IndexSpec(kind="flat"))
    l2 = faiss.IndexFlatL2(D)
    with pytest.raises(SnapshotError, match="expected an inner-product flat index"):
        VectorIndex(l2, IndexSpec(kind="flat"))


@pytest.mark.parametrize(
    "bad",
    [np.ones((3, D), np.float32), np.zeros((0,), np.float32), np.full((2, D), np.nan, np.float32)],
    ids=["not-normalized", "1-d", "nan"],
)
def test_build_rejects_bad_vectors(bad: np.ndarray) -> None:
    with pytest.raises(InvalidArgument, match="vectors"):
        build_index(bad, IndexSpec(kind="flat"))


def test_build_empty_index_searches_to_padding() -> None:
    spec = IndexSpec(kind="hnsw")
    index = VectorIndex(build_index(np.empty((0, D), np.float32), spec), spec)
    scores, ids = index.search(unit_rows(np.random.default_rng(0), 2), 3)
    assert (ids == -1).all() and np.isneginf(scores).all()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "ivf"}, "index.kind"),
        ({"kind": "hnsw", "m": 1}, "index.m"),
        ({"kind": "hnsw", "m": 16.0}, "index.m"),
        ({"kind": "hnsw", "ef_construction": 0}, "index.ef_construction"),
        ({"kind": "hnsw", "ef_search": True}, "index.ef_search"),
    ],
    ids=["kind", "m-small", "m-float", "ef-construction", "ef-search-bool"],
)
def test_index_spec_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidArgument, match=field):
        IndexSpec(**kwargs)


@pytest.mark.parametrize(
    "spec",
    [IndexSpec(kind="flat"), IndexSpec(kind="hnsw", m=8, ef_construction=40, ef_search=300)],
    ids=["flat", "hnsw"],
)
def test_index_spec_dict_round_trip(spec: IndexSpec) -> None:
    assert IndexSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("d", "message"),
    [({"kind": "flat", "nlist": 4}, "unknown settings"), ({"m": 4}, "index.kind: missing")],
    ids=["unknown-key", "missing-kind"],
)
def test_index_spec_from_bad_dict(d: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        IndexSpec.from_dict(d)


def test_choose_spec() -> None:
    assert choose_spec(19_999).kind == "flat"
    assert choose_spec(20_000) == IndexSpec(kind="hnsw")
    assert choose_spec(500, exact_below=100, m=8, ef_search=20) == IndexSpec(kind="hnsw", m=8, ef_search=20)
