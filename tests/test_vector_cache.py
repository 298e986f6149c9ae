"""The content-hash vector cache: round trip, fingerprint isolation, pruning, speed."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.vector_cache import CHUNK, VectorCache, text_key

DIM = 8
FP = "fp-int8-aaaa"


def _vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)


@pytest.fixture
def cache(tmp_path: Path):
    with VectorCache(tmp_path / "vectors.sqlite", fingerprint=FP, dimension=DIM) as opened:
        yield opened


@given(st.text())
def test_text_key_is_the_sha256_of_the_utf8_text(text: str) -> None:
    key = text_key(text)
    assert key == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert len(key) == 64 and key == text_key(text)


def test_text_key_distinguishes_near_identical_texts() -> None:
    assert text_key("Red shoes") != text_key("red shoes") != text_key("red shoes ")


def test_round_trip(cache: VectorCache) -> None:
    vectors = _vectors(3)
    keys = [text_key(t) for t in ("a", "b", "c")]
    cache.put_many(dict(zip(keys, vectors)))
    got = cache.get_many([keys[2], text_key("never stored"), keys[0], keys[0]])
    assert list(got) == [keys[2], keys[0]]
    np.testing.assert_array_equal(got[keys[0]], vectors[0])
    np.testing.assert_array_equal(got[keys[2]], vectors[2])
    assert got[keys[0]].dtype == np.float32 and got[keys[0]].shape == (DIM,)
    got[keys[0]][0] = 123.0  # results are the caller's to modify
    assert cache.get_many([keys[0]])[keys[0]][0] == vectors[0][0]
    assert cache.get_many([]) == {}


def test_put_accepts_pairs_and_replaces(cache: VectorCache) -> None:
    first, second = _vectors(2)
    cache.put_many([("k", first)])
    cache.put_many(iter([("k", second)]))
    np.testing.assert_array_equal(cache.get_many(["k"])["k"], second)
    assert cache.fingerprints() == {FP: 1}


def test_float64_input_is_stored_as_float32(cache: VectorCache) -> None:
    vector = np.linspace(0, 1, DIM)  # float64
    cache.put_many({"k": vector})
    np.testing.assert_array_equal(cache.get_many(["k"])["k"], vector.astype(np.float32))


@pytest.mark.parametrize("shape", [(DIM - 1,), (DIM + 1,), (1, DIM), ()], ids=["short", "long", "2d", "scalar"])
def test_wrong_shape_is_refused_and_nothing_stored(cache: VectorCache, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"vector for 'bad' has shape"):
        cache.put_many([("good", np.zeros(DIM)), ("bad", np.zeros(shape))])
    assert cache.get_many(["good", "bad"]) == {}


def test_fingerprint_isolation(tmp_path: Path) -> None:
    path = tmp_path / "vectors.sqlite"
    ours, theirs = _vectors(2)
    with VectorCache(path, fingerprint="model-a", dimension=DIM) as a, VectorCache(
        path, fingerprint="model-b", dimension=DIM
    ) as b:
        a.put_many({"shared": ours, "only-a": ours})
        assert b.get_many(["shared", "only-a"]) == {}
        b.put_many({"shared": theirs})
        np.testing.assert_array_equal(a.get_many(["shared"])["shared"], ours)
        np.testing.assert_array_equal(b.get_many(["shared"])["shared"], theirs)
        assert a.fingerprints() == {"model-a": 2, "model-b": 1}


def test_same_fingerprint_other_dimension_reads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "vectors.sqlite"
    with VectorCache(path, fingerprint=FP, dimension=DIM) as cache:
        cache.put_many({"k": _vectors(1)[0]})
    with VectorCache(path, fingerprint=FP, dimension=DIM * 2) as wider:
        assert wider.get_many(["k"]) == {}


def test_bad_blob_size_is_treated_as_absent(cache: VectorCache) -> None:
    cache.put_many({"good": _vectors(1)[0]})
    raw = sqlite3.connect(cache.path)
    with raw:
        raw.execute("INSERT INTO vectors VALUES (?, 'short', ?)", (FP, b"\0" * (DIM * 4 - 1)))
        raw.execute("INSERT INTO vectors VALUES (?, 'long', ?)", (FP, b"\0" * (DIM * 4 + 4)))
    raw.close()
    assert list(cache.get_many(["short", "good", "long"])) == ["good"]
    assert cache.prune({"short", "good", "long"}) == 2  # broken rows go whatever their key


def test_prune(tmp_path: Path) -> None:
    path = tmp_path / "vectors.sqlite"
    vectors = _vectors(5)
    keys = [f"k{i}" for i in range(5)]
    with VectorCache(path, fingerprint="old", dimension=DIM) as old:
        old.put_many(dict(zip(keys, vectors)))
    with VectorCache(path, fingerprint=FP, dimension=DIM) as cache:
        cache.put_many(dict(zip(keys, vectors)))
        assert cache.prune({"k1", "k3", "not-stored"}) == 3
        assert sorted(cache.get_many(keys)) == ["k1", "k3"]
        assert cache.fingerprints() == {"old": 5, FP: 2}
        assert cache.prune({"k1", "k3"}) == 0
        assert cache.prune({"k1"}, drop_other_fingerprints=True) == 1 + 5
        assert cache.fingerprints() == {FP: 1}
        assert cache.prune(set()) == 1
        assert cache.fingerprints() == {}


def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "vectors.sqlite"
    vectors = _vectors(3)
    with VectorCache(path, fingerprint=FP, dimension=DIM) as cache:
        cache.put_many({f"k{i}": v for i, v in enumerate(vectors)})
    with VectorCache(path, fingerprint=FP, dimension=DIM) as cache:
        got = cache.get_many(["k0", "k1", "k2"])
    np.testing.assert_array_equal(np.stack([got[f"k{i}"] for i in range(3)]), vectors)


def test_more_keys_than_one_query_may_bind(cache: VectorCache) -> None:
    n = 2 * CHUNK + 7
    vectors = _vectors(n)
    keys = [f"k{i}" for i in range(n)]
    cache.put_many(zip(keys, vectors))
    got = cache.get_many(keys[::-1] + ["missing"])
    assert len(got) == n
    np.testing.assert_array_equal(np.stack([got[k] for k in keys]), vectors)
    assert cache.prune(set(keys[: CHUNK + 1])) == n - CHUNK - 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"fingerprint": "", "dimension": 4}, "fingerprint"), ({"fingerprint": "x", "dimension": 0}, "dimension")],
    ids=["empty-fingerprint", "zero-dimension"],
)
def test_bad_settings_are_refused(tmp_path: Path, kwargs: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        VectorCache(tmp_path / "v.sqlite", **kwargs)


def test_close_twice_is_harmless(tmp_path: Path) -> None:
    cache = VectorCache(tmp_path / "v.sqlite", fingerprint=FP, dimension=DIM)
    cache.close()
    cache.close()


def test_full_catalog_batch_timing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """44k x 384, the size of the full catalog; timings are printed, not asserted (2-core CI)."""
    n, dim = 44_000, 384
    vectors = _vectors(n, dim, seed=7)
    keys = [text_key(f"product {i}") for i in range(n)]
    with VectorCache(tmp_path / "vectors.sqlite", fingerprint=FP, dimension=dim) as cache:
        start = time.perf_counter()
        cache.put_many(zip(keys, vectors))
        put_s = time.perf_counter() - start
        start = time.perf_counter()
        got = cache.get_many(keys)
        get_s = time.perf_counter() - start
    assert len(got) == n
    np.testing.assert_array_equal(got[keys[-1]], vectors[-1])
    with capsys.disabled():
        print(f"\nvector cache {n} x {dim}: put_many {put_s:.3f} s, get_many {get_s:.3f} s")
