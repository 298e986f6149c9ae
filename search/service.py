"""The query path: normalize -> result cache -> L1 -> L2 -> micro-batched encoder -> FAISS -> hydrate.

``SearchService`` is the one orchestrator; its parts (normalizer, caches,
batcher, snapshot manager) don't know each other. It speaks plain Python:
``server.py`` translates to and from protobuf and status codes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from search.batcher import MicroBatcher
from search.cache import LayeredCache, ResultCache, embedding_key
from search.config import ServiceSettings
from search.encoder import Encoder
from search.drift import DriftMonitor, query_signals
from search.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted
from search.filters import Filters
from search.normalize import NORMALIZATION_VERSION, normalize
from search.snapshot import Hit, Snapshot
from search.snapshot_manager import SnapshotManager

log = logging.getLogger(__name__)

# Where a response's embedding came from (the proto's EmbeddingTier names).
RESULT_CACHE, L1, L2, ENCODER, COALESCED = "RESULT_CACHE", "L1", "L2", "ENCODER", "COALESCED"
STAGES = ("normalize", "result_cache", "l1", "l2", "encode", "search", "hydrate")
_HIT_OVERHEAD_BYTES = 160  # a Hit and its Product, before their strings


@dataclass(frozen=True, kw_only=True)
class SearchQuery:
    text: str
    top_k: int = 0
    offset: int = 0
    filters: Filters = field(default_factory=Filters)


@dataclass(frozen=True, kw_only=True)
class SearchOutcome:
    hits: tuple[Hit, ...]
    snapshot_version: int
    model_fingerprint: str
    tier: str
    normalized: str
    timings_ms: dict[str, float]  # the STAGES that ran, plus "total"


class SearchObserver(Protocol):
    """Told about every answered search (metrics); must be quick and must not raise."""

    def observe_search(self, outcome: SearchOutcome) -> None: ...


def _result_bytes(hits: tuple[Hit, ...]) -> int:
    return sum(
        _HIT_OVERHEAD_BYTES + len(h.product.id) + len(h.product.title) + len(h.product.category) + len(h.product.brand)
        for h in hits
    )


class SearchService:
    """Answers searches; every public method is a coroutine on the service's event loop."""

    def __init__(
        self,
        *,
        settings: ServiceSettings,
        encoder: Encoder,
        snapshots: SnapshotManager,
        embeddings: LayeredCache,
        results: ResultCache,
        batcher: MicroBatcher,
        search_executor: ThreadPoolExecutor,
        observer: SearchObserver | None = None,
        drift: DriftMonitor | None = None,
        token_stats: Callable[[list[str]], list[tuple[int, int]]] | None = None,
    ) -> None:
        self.settings = settings
        self.drift = drift
        self._token_stats = token_stats
        self.encoder = encoder
        self.snapshots = snapshots
        self.embeddings = embeddings
        self.results = results
        self.batcher = batcher
        self._executor = search_executor
        self._observer = observer
        self.in_flight = 0

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Count a request in flight; past the limit, ResourceExhausted at once."""
        if self.in_flight >= self.settings.max_in_flight:
            raise ResourceExhausted(f"server busy: {self.in_flight} requests in flight; retry with backoff")
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def validate(self, query: SearchQuery) -> tuple[str, int]:
        """(normalized text, effective top_k); InvalidArgument names the bad field."""
        s = self.settings
        if not query.text.strip():
            raise InvalidArgument("query: must not be empty")
        if len(query.text) > s.max_query_chars:
            raise InvalidArgument(f"query: longer than {s.max_query_chars} characters ({len(query.text)})")
        top_k = query.top_k or s.default_top_k
        if not 1 <= top_k <= s.max_top_k:
            raise InvalidArgument(f"top_k: must be within 1..{s.max_top_k} (0 means {s.default_top_k}), got {query.top_k}")
        if query.offset < 0:
            raise InvalidArgument(f"offset: must be >= 0, got {query.offset}")
        if query.offset + top_k > s.max_results:
            raise InvalidArgument(f"offset: offset + top_k must be <= {s.max_results}, got {query.offset + top_k}")
        normalized = normalize(query.text, max_chars=s.max_query_chars)
        if not normalized:
            raise InvalidArgument("query: has no searchable characters after normalization")
        return normalized, top_k

    async def search(self, query: SearchQuery, *, deadline: float | None = None) -> SearchOutcome:
        """Answer one query. ``deadline`` is absolute, on time.monotonic().

        Raises InvalidArgument, Unavailable (no snapshot), ResourceExhausted
        (encoder queue full) or DeadlineExceeded.
        """
        # Only the stages that ran get an entry: a stage histogram must not
        # count a cache hit's skipped encode as a 0 ms encode.
        timings: dict[str, float] = {}
        started = time.perf_counter()
        normalized, top_k = self.validate(query)
        mark = time.perf_counter()
        timings["normalize"] = (mark - started) * 1000
        with self.snapshots.lease() as snapshot:
            result_key = (normalized, query.filters, top_k, query.offset, snapshot.version)
            cached = self.results.get(result_key)
            timings["result_cache"] = (time.perf_counter() - mark) * 1000
            if cached is not None:
                return self._outcome(cached, snapshot, RESULT_CACHE, normalized, timings, started)
            vector, tier = await self._embedding(normalized, deadline, timings)
            hits = await self._find(snapshot, vector, top_k, query, deadline, timings)
            self.results.put(result_key, hits, _result_bytes(hits))
            if query.filters.is_empty and query.offset == 0:
                self._observe_drift(normalized, hits)
            return self._outcome(hits, snapshot, tier, normalized, timings, started)

    async def _embedding(self, normalized: str, deadline: float | None, timings: dict[str, float]) -> tuple[np.ndarray, str]:
        key = embedding_key(self.encoder.fingerprint, NORMALIZATION_VERSION, normalized)
        mark = time.perf_counter()
        # On the event loop, L2 included: a read of a few hundred microseconds
        # costs less than a worker-thread hop, whose wait for the busy loop
        # doubled the Zipf stream's p99 at c=32 (131-144 vs 64-65 ms; bench/RESULTS.md).
        vector, tier = self.embeddings.get(key)
        # The lookup tried L1, and L2 unless L1 answered.
        timings["l1" if tier == "l1" else "l2"] = (time.perf_counter() - mark) * 1000
        if vector is not None:
            return vector, L1 if tier == "l1" else L2
        mark = time.perf_counter()
        embedded = await self.batcher.embed(key, normalized, deadline=deadline)
        timings["encode"] = (time.perf_counter() - mark) * 1000
        # The batcher's on_result hook has cached the vector already.
        return embedded.vector, COALESCED if embedded.coalesced else ENCODER

    async def _find(
        self, snapshot: Snapshot, vector: np.ndarray, top_k: int, query: SearchQuery, deadline: float | None,
        timings: dict[str, float],
    ) -> tuple[Hit, ...]:
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExceeded("deadline passed before the index search")
        mark = time.perf_counter()

        def find_and_hydrate() -> tuple[tuple[Hit, ...], float, float]:
            # One worker-thread hop for both: the store read is SQLite, kept off the event loop.
            scores, ids = snapshot.find(vector[None, :], top_k, filters=query.filters, offset=query.offset)
            found = time.perf_counter()
            hits = tuple(snapshot.hydrate(scores[0], ids[0])) if ids.shape[1] else ()
            return hits, found, time.perf_counter()

        hits, found, hydrated = await asyncio.get_running_loop().run_in_executor(self._executor, find_and_hydrate)
        timings["search"] = (found - mark) * 1000
        timings["hydrate"] = (hydrated - found) * 1000
        return hits

    def _observe_drift(self, normalized: str, hits: tuple[Hit, ...]) -> None:
        """Feed the drift monitor: unfiltered first pages only, whose scores mean the same thing.

        Result-cache answers never get here, so repeats of a head query count once.
        """
        if self.drift is None or self._token_stats is None:
            return
        try:
            tokens, unknown = self._token_stats([normalized])[0]
            scores = [h.score for h in hits]
            self.drift.observe(query_signals(scores, tokens, unknown, no_hit_floor=self.drift.settings.no_hit_floor))
        except Exception:
            log.exception("drift observation failed")

    def _outcome(
        self, hits: tuple[Hit, ...], snapshot: Snapshot, tier: str, normalized: str, timings: dict[str, float], started: float
    ) -> SearchOutcome:
        timings["total"] = (time.perf_counter() - started) * 1000
        outcome = SearchOutcome(
            hits=hits,
            snapshot_version=snapshot.version,
            model_fingerprint=snapshot.fingerprint,
            tier=tier,
            normalized=normalized,
            timings_ms=timings,
        )
        if self._observer is not None:
            try:
                self._observer.observe_search(outcome)
            except Exception:
                # Metrics must never fail a query.
                log.exception("search observer failed")
        return outcome

    def index_info(self) -> dict[str, Any]:
        """What is being served. Raises Unavailable when no snapshot is loaded."""
        with self.snapshots.lease() as snapshot:
            manifest = snapshot.manifest
            return {
                "snapshot_version": snapshot.version,
                "product_count": snapshot.product_count,
                "model_fingerprint": snapshot.fingerprint,
                "index_type": manifest["index"]["kind"],
                "index_params": {k: str(v) for k, v in manifest["index"].items() if k != "kind"},
                "created": manifest.get("created", ""),
                "dimension": int(manifest.get("dimension", 0)),
                "normalization_version": NORMALIZATION_VERSION,
                "max_top_k": self.settings.max_top_k,
                **self._drift_info(),
            }

    def _drift_info(self) -> dict[str, Any]:
        if self.drift is None:
            return {}
        report = self.drift.report
        return {"drift_state": report.state, "drift_psi": dict(report.psi), "drift_reference": report.reference}
