"""Cache tiers: one contract for every tier, then each tier's own behaviour,
L2 fault handling, the background writer, and a stateful model of the
layered cache against a dict."""

from __future__ import annotations

import errno
import logging
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import diskcache
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from search.cache import (
    ENTRY_OVERHEAD_BYTES,
    BackgroundWriter,
    L1Cache,
    LayeredCache,
    ResultCache,
    Tier,
    embedding_key,
    entry_nbytes,
)
from search.l2_cache import MIN_L2_BYTES, L2Cache, Store, open_diskcache

DIM = 16


def vec(seed: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dim, dtype=np.float32)


def same(a: np.ndarray | None, b: np.ndarray) -> bool:
    """Bit-exact float32 equality (NaN payloads and -0.0 included)."""
    return a is not None and a.dtype == np.float32 and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- contract


@dataclass
class Subject:
    """A tier under the contract, with what the contract needs to observe it."""

    cache: Tier
    settle: Callable[[], None]  # wait for background work
    within_bound: Callable[[], bool]
    evicted: Callable[[], bool]  # the tier that bounds the subject has evicted
    # Entries that fit without eviction, yet more than one eviction batch
    # (diskcache culls in batches of 10 rows until its volume fits).
    fill: int


def _l1_subject(tmp_path: Path) -> Iterator[Subject]:
    l1 = L1Cache(20 * entry_nbytes("k000", vec(0)))
    within_bound = lambda: l1.stats().bytes <= l1.stats().max_bytes  # noqa: E731
    yield Subject(l1, lambda: None, within_bound, lambda: l1.stats().evictions > 0, 12)


def _l2_subject(tmp_path: Path) -> Iterator[Subject]:
    l2 = L2Cache(tmp_path / "l2", MIN_L2_BYTES, dimension=DIM)
    yield Subject(l2, lambda: None, lambda: l2.stats().bytes <= MIN_L2_BYTES, lambda: l2.stats().evictions > 0, 120)
    l2.close()


def _layered_subject(tmp_path: Path) -> Iterator[Subject]:
    # L1 holds a single entry, so reads reach L2 and its recency decides what
    # survives. (An L1 hit deliberately does not refresh L2's recency: that
    # would cost a disk write per hit.)
    l1 = L1Cache(entry_nbytes("k0000", vec(0)))
    l2 = L2Cache(tmp_path / "l2", MIN_L2_BYTES, dimension=DIM)
    layered = LayeredCache(l1, l2)

    def within_bound() -> bool:
        return l1.stats().bytes <= l1.stats().max_bytes and l2.stats().bytes <= MIN_L2_BYTES

    yield Subject(layered, lambda: layered.flush(10), within_bound, lambda: l2.stats().evictions > 0, 120)
    layered.close()


@pytest.fixture(params=[_l1_subject, _l2_subject, _layered_subject], ids=["l1", "l2", "layered"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    yield from request.param(tmp_path)


def _get(cache: Tier, key: str) -> np.ndarray | None:
    got = cache.get(key)
    return got[0] if isinstance(got, tuple) else got  # LayeredCache also names the tier


class TestTierContract:
    def test_missing_key_is_none(self, subject: Subject) -> None:
        assert _get(subject.cache, "absent") is None

    def test_round_trip_is_bit_exact(self, subject: Subject) -> None:
        special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, 3.4028235e38, -1.5] * 2, dtype=np.float32)
        for key, value in [("a", vec(1)), ("special", special)]:
            subject.cache.put(key, value)
            subject.settle()
            assert same(_get(subject.cache, key), value)

    def test_overwrite_returns_the_newer_value(self, subject: Subject) -> None:
        subject.cache.put("a", vec(1))
        subject.cache.put("a", vec(2))
        subject.settle()
        assert same(_get(subject.cache, "a"), vec(2))

    def test_stored_value_is_a_private_read_only_copy(self, subject: Subject) -> None:
        value = vec(1)
        subject.cache.put("a", value)
        value[:] = 0
        subject.settle()
        got = _get(subject.cache, "a")
        assert same(got, vec(1))
        with pytest.raises(ValueError, match="read-only"):
            got[0] = 1.0  # type: ignore[index]

    @pytest.mark.parametrize(
        "bad",
        [np.zeros(DIM, dtype=np.float64), np.zeros((1, DIM), dtype=np.float32), [0.0] * DIM],
        ids=["float64", "2-d", "list"],
    )
    def test_put_rejects_what_is_not_a_float32_vector(self, subject: Subject, bad: object) -> None:
        with pytest.raises(ValueError, match="1-D float32"):
            subject.cache.put("a", bad)  # type: ignore[arg-type]

    def test_size_bound_holds_after_every_put(self, subject: Subject) -> None:
        for i in range(400):
            subject.cache.put(f"k{i:04d}", vec(i))
            subject.settle()
            assert subject.within_bound(), i
        assert subject.evicted()

    def test_recently_read_entry_survives_eviction(self, subject: Subject) -> None:
        for i in range(subject.fill):
            subject.cache.put(f"k{i:04d}", vec(i))
        subject.settle()
        assert not subject.evicted()
        assert same(_get(subject.cache, "k0000"), vec(0))  # now the most recently used
        i = 1000
        while not subject.evicted():
            subject.cache.put(f"k{i:04d}", vec(i))
            subject.settle()
            i += 1
            assert i < 3000, "no eviction happened"
        assert same(_get(subject.cache, "k0000"), vec(0))
        assert _get(subject.cache, "k0001") is None  # the least recently used went first


# --------------------------------------------------------------------------- keys


def test_embedding_key_golden() -> None:
    # Changing this value orphans every cached vector: change it knowingly.
    assert embedding_key("fp", 1, "red shoes") == (
        "fp:n1:61959b3a303f52c5dd5ddc4cfd8c3098c3c353192da8ece706317792018f8da8"
    )
    assert embedding_key("fp", 1, "\ud800") != embedding_key("fp", 1, "")  # total, even on surrogates


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1, max_size=20),
    st.text(min_size=1, max_size=20),
    st.integers(0, 50),
    st.integers(0, 50),
    st.text(st.characters(codec=None)),
)
def test_embedding_key_separates_namespaces(fp_a: str, fp_b: str, ver_a: int, ver_b: int, text: str) -> None:
    key = embedding_key(fp_a, ver_a, text)
    assert key == embedding_key(fp_a, ver_a, text)
    if (fp_a, ver_a) != (fp_b, ver_b):
        assert key != embedding_key(fp_b, ver_b, text)


def test_embedding_key_rejects_an_empty_fingerprint() -> None:
    with pytest.raises(ValueError, match="fingerprint"):
        embedding_key("", 1, "x")


# --------------------------------------------------------------------------- L1


def test_l1_zero_bytes_disables() -> None:
    l1 = L1Cache(0)
    l1.put("a", vec(1))
    assert l1.get("a") is None
    assert l1.stats().bytes == 0


def test_l1_skips_a_value_larger_than_the_bound_and_forgets_the_old_one() -> None:
    l1 = L1Cache(entry_nbytes("a", vec(1)))
    l1.put("a", vec(1))
    l1.put("a", vec(1, dim=DIM * 4))  # too large: not stored, no exception
    assert l1.get("a") is None
    assert l1.stats().bytes == 0


def test_l1_counts_with_the_injected_getsizeof() -> None:
    l1 = L1Cache(3, getsizeof=lambda key, value: 1)  # bound in entries
    for i in range(5):
        l1.put(f"k{i}", vec(i))
    assert [l1.get(f"k{i}") is not None for i in range(5)] == [False, False, True, True, True]
    stats = l1.stats()
    assert (stats.hits, stats.misses, stats.evictions, stats.bytes) == (3, 2, 2, 3)
    with pytest.raises(ValueError, match="size"):
        L1Cache(3, getsizeof=lambda key, value: -1).put("a", vec(1))


def test_l1_default_size_counts_vector_key_and_overhead() -> None:
    assert entry_nbytes("abc", vec(1)) == DIM * 4 + 3 + ENTRY_OVERHEAD_BYTES


def test_l1_is_thread_safe() -> None:
    l1 = L1Cache(50 * entry_nbytes("t0-000", vec(0)))
    errors: list[BaseException] = []

    def hammer(t: int) -> None:
        try:
            for i in range(300):
                key = f"t{t}-{i % 80:03d}"
                l1.put(key, vec(i))
                got = l1.get(key)
                assert got is None or same(got, vec(i))  # only this thread writes this key
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=hammer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stats = l1.stats()
    assert stats.bytes <= stats.max_bytes
    assert stats.hits + stats.misses == 4 * 300


# --------------------------------------------------------------------------- results


def test_result_cache_bound_lru_and_clear() -> None:
    results = ResultCache(100)
    key = lambda i: (f"q{i}", (), 10, 0, "snap-1")  # noqa: E731
    for i in range(4):
        results.put(key(i), [f"hit{i}"], 30)
    assert results.get(key(0)) is None  # 4 x 30 > 100: the oldest went
    assert results.get(key(1)) == ["hit1"]
    results.put(key(4), ["hit4"], 30)  # evicts key(2): key(1) was just read
    assert results.get(key(2)) is None and results.get(key(1)) == ["hit1"]
    stats = results.stats()
    assert stats.bytes == 90 and stats.evictions == 2
    results.put(key(5), ["huge"], 101)  # larger than the bound: not stored
    assert results.get(key(5)) is None
    results.clear()
    assert results.get(key(1)) is None and results.stats().bytes == 0


def test_result_cache_rejects_bad_puts() -> None:
    results = ResultCache(100)
    with pytest.raises(ValueError, match="size"):
        results.put(("q",), ["x"], -1)
    with pytest.raises(ValueError, match="None"):
        results.put(("q",), None, 1)


# --------------------------------------------------------------------------- L2


def test_l2_survives_close_and_reopen(tmp_path: Path) -> None:
    l2 = L2Cache(tmp_path / "l2", MIN_L2_BYTES, dimension=DIM)
    l2.put("a", vec(1))
    l2.close()
    assert l2.get("a") is None  # closed: a miss, not an error
    reopened = L2Cache(tmp_path / "l2", MIN_L2_BYTES, dimension=DIM)
    assert same(reopened.get("a"), vec(1))
    reopened.close()


def test_l2_wrong_size_blob_is_a_miss(tmp_path: Path) -> None:
    with diskcache.Cache(str(tmp_path / "l2")) as raw:
        raw.set("short", b"\0" * (4 * DIM - 4))
        raw.set("pickled", [1.0] * DIM)
    l2 = L2Cache(tmp_path / "l2", MIN_L2_BYTES, dimension=DIM)
    assert l2.get("short") is None and l2.get("pickled") is None
    assert l2.stats().misses == 2 and l2.stats().errors == 0
    with pytest.raises(ValueError, match="dimension"):
        l2.put("a", vec(1, dim=DIM + 1))
    l2.close()


def test_l2_rejects_a_too_small_bound(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        L2Cache(tmp_path, MIN_L2_BYTES - 1, dimension=DIM)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FaultyStore:
    """A real diskcache store that raises ``faults.error`` while it is set."""

    def __init__(self, inner: Store, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    def _check(self) -> None:
        if self._faults.error is not None:
            raise self._faults.error

    def get(self, key: str) -> object:
        self._check()
        return self._inner.get(key)

    def set(self, key: str, value: bytes) -> object:
        self._check()
        return self._inner.set(key, value)

    def volume(self) -> int:
        self._check()
        return self._inner.volume()

    def cull(self) -> int:
        return self._inner.cull()

    def close(self) -> None:
        self._inner.close()


@dataclass
class Faults:
    error: BaseException | None = None


def _sqlite_error(cls: type[sqlite3.Error], message: str, name: str) -> sqlite3.Error:
    err = cls(message)
    err.sqlite_errorname = name  # type: ignore[attr-defined]
    return err


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "search.l2_cache" and r.levelno == logging.WARNING]


INJECTED = [
    pytest.param(OSError(errno.ENOSPC, "No space left on device"), "OSError[ENOSPC]", id="disk-full"),
    pytest.param(
        _sqlite_error(sqlite3.OperationalError, "attempt to write a readonly database", "SQLITE_READONLY"),
        "OperationalError[SQLITE_READONLY]",
        id="read-only",
    ),
    pytest.param(
        _sqlite_error(sqlite3.DatabaseError, "database disk image is malformed", "SQLITE_CORRUPT"),
        "DatabaseError[SQLITE_CORRUPT]",
        id="corrupt",
    ),
    pytest.param(diskcache.Timeout(), "Timeout", id="busy"),
    pytest.param(RuntimeError("unexpected"), "RuntimeError", id="anything"),
]


@pytest.mark.parametrize(("error", "kind"), INJECTED)
def test_l2_injected_fault_degrades_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, error: BaseException, kind: str
) -> None:
    faults, clock = Faults(), FakeClock()
    l2 = L2Cache(
        tmp_path / "l2",
        MIN_L2_BYTES,
        dimension=DIM,
        retry_after=5.0,
        timer=clock,
        opener=lambda d, m: FaultyStore(open_diskcache(d, m), faults),
    )
    l2.put("kept", vec(1))
    faults.error = error
    with caplog.at_level(logging.WARNING, logger="search.l2_cache"):
        for i in range(10):
            assert l2.get("kept") is None
            l2.put(f"k{i}", vec(i))  # must not raise
            clock.now += 1.0
    errors = l2.stats().errors
    # A busy store stays open and every call fails; any other fault closes the
    # store, and it is retried once per retry_after (at t=0 and t=5).
    assert errors == (20 if isinstance(error, diskcache.Timeout) else 2)
    assert len(_warnings(caplog)) == 1 and kind in _warnings(caplog)[0]

    faults.error = None
    clock.now += 5.0
    l2.put("new", vec(2))
    assert same(l2.get("new"), vec(2))
    if kind != "DatabaseError[SQLITE_CORRUPT]":  # a corrupt store is recreated empty
        assert same(l2.get("kept"), vec(1))
    assert l2.stats().errors == errors
    l2.close()


def test_l2_directory_deleted_while_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    l2 = L2Cache(tmp_path / "l2", MIN_L2_BYTES, dimension=DIM)
    l2.put("a", vec(1))
    shutil.rmtree(tmp_path / "l2")
    with caplog.at_level(logging.WARNING, logger="search.l2_cache"):
        # sqlite would keep serving the unlinked file; the cache notices and
        # starts over in a recreated directory.
        assert l2.get("a") is None
        l2.put("b", vec(2))
        assert same(l2.get("b"), vec(2))
    assert l2.stats().errors == 1
    assert len(_warnings(caplog)) == 1 and "vanished" in _warnings(caplog)[0]
    assert (tmp_path / "l2" / "cache.db").is_file()
    l2.close()


def test_l2_directory_replaced_by_a_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    l2 = L2Cache(tmp_path / "l2", MIN_L2_BYTES, dimension=DIM, timer=clock, retry_after=5.0)
    l2.put("a", vec(1))
    shutil.rmtree(tmp_path / "l2")
    (tmp_path / "l2").write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="search.l2_cache"):
        for i in range(6):
            assert l2.get("a") is None
            l2.put(f"k{i}", vec(i))
            clock.now += 2.5
    # One warning per kind: the database vanished, then reopening it failed.
    kinds = sorted(m.split("(")[1].split(")")[0] for m in _warnings(caplog))
    assert kinds == ["OperationalError[SQLITE_CANTOPEN]", "vanished"]
    assert l2.stats().errors == 1 + 3  # the vanishing, then a reopen every 5 s
    (tmp_path / "l2").unlink()
    clock.now += 5.0
    l2.put("b", vec(2))
    assert same(l2.get("b"), vec(2))
    l2.close()


def test_l2_corrupt_database_is_recreated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    l2 = L2Cache(tmp_path / "l2", MIN_L2_BYTES, dimension=DIM)
    l2.put("a", vec(1))
    l2.close()
    (tmp_path / "l2" / "cache.db").write_bytes(b"this is not sqlite" * 500)
    with caplog.at_level(logging.WARNING, logger="search.l2_cache"):
        reopened = L2Cache(tmp_path / "l2", MIN_L2_BYTES, dimension=DIM)
        assert reopened.get("a") is None
        reopened.put("b", vec(2))
    assert same(reopened.get("b"), vec(2))
    assert reopened.stats().errors == 1
    assert len(_warnings(caplog)) == 1 and "SQLITE_NOTADB" in _warnings(caplog)[0]
    reopened.close()


def _permissions_enforced() -> bool:
    """False where the process ignores file modes (root, CAP_DAC_OVERRIDE)."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "ro"
        probe.mkdir(mode=0o500)
        try:
            (probe / "f").touch()
        except PermissionError:
            return True
        finally:
            probe.chmod(0o700)
        return False


@pytest.mark.skipif(not _permissions_enforced(), reason="file modes are not enforced for this user (root)")
def test_l2_read_only_directory(tmp_path: Path) -> None:
    clock = FakeClock()
    l2 = L2Cache(tmp_path / "l2", MIN_L2_BYTES, dimension=DIM, timer=clock)
    l2.close()
    (tmp_path / "l2").chmod(0o500)
    try:
        for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
            if (tmp_path / "l2" / name).exists():
                (tmp_path / "l2" / name).chmod(0o400)
        ro = L2Cache(tmp_path / "l2", MIN_L2_BYTES, dimension=DIM, timer=clock)
        ro.put("a", vec(1))
        assert ro.get("a") is None and ro.stats().errors >= 1
        ro.close()
    finally:
        (tmp_path / "l2").chmod(0o700)
        for path in (tmp_path / "l2").iterdir():
            path.chmod(0o600)


# --------------------------------------------------------------------------- write-behind


class GatedTier:
    """A tier whose put blocks until ``gate`` is set, to hold the writer busy."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.data: dict[str, np.ndarray] = {}

    def get(self, key: str) -> np.ndarray | None:
        return self.data.get(key)

    def put(self, key: str, value: np.ndarray) -> None:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        self.data[key] = value


def test_put_does_not_wait_for_l2_and_reads_see_pending_writes() -> None:
    slow = GatedTier()
    layered = LayeredCache(None, slow)
    started = time.perf_counter()
    layered.put("a", vec(1))
    layered.put("b", vec(2))
    assert time.perf_counter() - started < 2.0  # the gate is closed: a waiting put would take 10 s
    assert slow.entered.wait(5)
    value, tier = layered.get("a")  # in flight
    assert same(value, vec(1)) and tier == "l2"
    assert same(layered.get("b")[0], vec(2))  # still queued
    assert not layered.flush(timeout=0.05)
    slow.gate.set()
    assert layered.flush(timeout=5)
    assert same(slow.data["a"], vec(1)) and same(slow.data["b"], vec(2))
    layered.close()


def test_full_queue_drops_new_keys_and_coalesces_waiting_ones() -> None:
    slow = GatedTier()
    layered = LayeredCache(L1Cache(1 << 20), slow, l2_writer=BackgroundWriter(slow, maxsize=2))
    layered.put("k0", vec(0))
    assert slow.entered.wait(5)  # k0 is in flight; the queue is empty
    layered.put("k1", vec(1))
    layered.put("k2", vec(2))
    layered.put("k3", vec(3))  # queue full: dropped
    layered.put("k1", vec(11))  # already waiting: takes the newer value, not a slot
    stats = layered.stats()
    assert (stats.writes_dropped, stats.writes_pending) == (1, 3)
    assert same(layered.get("k3")[0], vec(3))  # L1 still has it
    slow.gate.set()
    assert layered.flush(timeout=5)
    assert sorted(slow.data) == ["k0", "k1", "k2"]
    assert same(slow.data["k1"], vec(11))
    assert layered.stats().writes_done == 3
    layered.close()


class BrokenTier:
    def get(self, key: str) -> np.ndarray | None:
        return None

    def put(self, key: str, value: np.ndarray) -> None:
        raise RuntimeError("broken tier")


def test_writer_survives_a_failing_tier_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    broken = BrokenTier()
    layered = LayeredCache(None, broken)
    with caplog.at_level(logging.WARNING, logger="search.cache"):
        for i in range(5):
            layered.put(f"k{i}", vec(i))
        assert layered.flush(timeout=5)
    assert layered.stats().writes_failed == 5
    assert len([r for r in caplog.records if r.name == "search.cache"]) == 1
    layered.close()


def test_layered_promotes_l2_hits_and_reports_the_tier(tmp_path: Path) -> None:
    l2 = L2Cache(tmp_path / "l2", MIN_L2_BYTES, dimension=DIM)
    l2.put("a", vec(1))
    l1 = L1Cache(1 << 20)
    layered = LayeredCache(l1, l2)
    assert layered.get("missing") == (None, "miss")
    value, tier = layered.get("a")
    assert same(value, vec(1)) and tier == "l2"
    value, tier = layered.get("a")
    assert same(value, vec(1)) and tier == "l1"
    stats = layered.stats()
    assert (stats.hits_l1, stats.hits_l2, stats.misses) == (1, 1, 1)
    layered.close()  # flushes and closes L2
    assert l2.get("a") is None


def test_layered_without_tiers_always_misses() -> None:
    layered = LayeredCache(None, None)
    layered.put("a", vec(1))
    assert layered.get("a") == (None, "miss")
    assert layered.flush(0)
    with pytest.raises(ValueError, match="l2"):
        LayeredCache(None, None, l2_writer=BackgroundWriter(BrokenTier()))


# --------------------------------------------------------------------------- stateful model

SM_DIM = 256  # 1 KiB vectors: a 64 KiB L2 holds 24, L1 holds 2
SM_KEYS = st.integers(0, 19).map(lambda i: f"k{i:02d}")


def sm_vec(seed: int) -> np.ndarray:
    value = vec(seed, SM_DIM)
    value[seed % SM_DIM] = [np.nan, -0.0, np.inf, 1e-45][seed % 4]  # bits must survive too
    return value


def _unsynced_diskcache(directory: Path, max_bytes: int) -> Store:
    """The production store without fsync: the model checks logic, not crash
    safety, and an fsync per reopen would make it five times slower."""
    return diskcache.Cache(
        str(directory),
        size_limit=max_bytes,
        eviction_policy="least-recently-used",
        cull_limit=0,
        sqlite_synchronous=0,
    )


class HeldWrites:
    """Wraps L2 so that background writes wait until ``released``: reads must
    then find unwritten values through the writer, deterministically."""

    def __init__(self, l2: L2Cache) -> None:
        self.l2 = l2
        self.released = threading.Event()

    def get(self, key: str) -> np.ndarray | None:
        return self.l2.get(key)

    def put(self, key: str, value: np.ndarray) -> None:
        assert self.released.wait(10), "writes held for too long"
        self.l2.put(key, value)


class LayeredCacheMachine(RuleBasedStateMachine):
    """LayeredCache against a dict: a get returns the last value put, or None
    only once L2 has evicted something; never another vector."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="layered-sm-"))
        self.model: dict[str, np.ndarray] = {}
        self.evictions = 0  # over all restarts
        self._open()

    def _open(self) -> None:
        self.l1 = L1Cache(2 * entry_nbytes("k00", sm_vec(0)))
        self.l2 = L2Cache(self.dir, MIN_L2_BYTES, dimension=SM_DIM, opener=_unsynced_diskcache)
        self.held = HeldWrites(self.l2)
        writer = BackgroundWriter(self.held, maxsize=1000)
        self.cache = LayeredCache(self.l1, self.l2, l2_writer=writer)

    keys = Bundle("keys")

    @rule(target=keys, key=SM_KEYS, seed=st.integers(0, 2**32 - 1))
    def put(self, key: str, seed: int) -> str:
        self.cache.put(key, sm_vec(seed))
        self.model[key] = sm_vec(seed)
        return key

    @rule(key=keys, seed=st.integers(0, 2**32 - 1))
    def overwrite(self, key: str, seed: int) -> None:
        self.put(key, seed)

    @rule(key=st.one_of(keys, keys, SM_KEYS))
    def get(self, key: str) -> None:
        value, tier = self.cache.get(key)
        expected = self.model.get(key)
        if value is None:
            assert tier == "miss"
            assert expected is None or self.evictions + self.l2.stats().evictions > 0
        else:
            assert expected is not None and same(value, expected), tier

    # The rules below act on one draw in four: requests outnumber them, so
    # reads meet evicted-from-L1, still-unwritten entries often.
    @rule(skip=st.integers(0, 3))
    def write_through(self, skip: int) -> None:
        """Let the writer catch up, then hold writes again."""
        if skip:
            return
        self.held.released.set()
        assert self.cache.flush(timeout=10)
        self.held.released.clear()

    @rule(skip=st.integers(0, 3))
    def restart(self, skip: int) -> None:
        """A graceful restart: L1 and the writer are gone, L2 is reopened from disk."""
        if skip:
            return
        self.evictions += self.l2.stats().evictions
        self.held.released.set()
        self.cache.close(timeout=10)
        self._open()

    @invariant()
    def healthy(self) -> None:
        assert self.l1.stats().bytes <= self.l1.stats().max_bytes
        stats = self.cache.stats()
        assert stats.writes_dropped == 0 and stats.writes_failed == 0 and self.l2.stats().errors == 0

    def teardown(self) -> None:
        self.held.released.set()
        self.cache.close(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


TestLayeredCacheMachine = LayeredCacheMachine.TestCase
TestLayeredCacheMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)


def test_cache_modules_import_neither_torch_nor_indexer() -> None:
    code = (
        "import sys, search.cache, search.l2_cache, search.normalize\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'indexer')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
