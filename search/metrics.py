"""Prometheus metrics: what the service did, per request, and what its parts hold, per scrape.

``Metrics`` owns one ``CollectorRegistry`` (never the process-wide default:
several applications may live in one process) and two kinds of metrics:

* pushed per event -- requests and their latency (the gRPC interceptor calls
  ``observe_request``), stage latencies, cache lookups and embedding tiers
  (``observe_search``, the service's ``SearchObserver``), encoder batches
  (``observe_batch``, the micro-batcher's ``on_batch``);
* read at scrape time by ``PartsCollector`` from the counters the parts keep
  anyway (batcher stats, L2 and write-behind stats, the snapshot manager),
  so the hot path pays nothing for them.

Other collectors (drift, later) join through ``register_collector``. Every
name carries the ``semsearch_`` prefix; counters end in ``_total`` and
durations are in seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Collection, Iterator, Mapping, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from search.drift import DriftMonitor
    from wsgiref.simple_server import WSGIServer

    from search.batcher import BatcherStats
    from search.cache import CacheStats, LayeredStats
    from search.service import SearchOutcome
    from search.snapshot_manager import SnapshotManager

log = logging.getLogger(__name__)

CACHE_TIERS = ("result", "l1", "l2")
EMBEDDING_TIERS = ("RESULT_CACHE", "L1", "L2", "ENCODER", "COALESCED")
QUALITY_METRICS = ("ndcg@10", "recall@100")  # of a manifest's "quality" object, written by the indexer's quality gate
# The lookups each answer implies, in order: a result-cache hit looked nowhere
# else; an encoder answer (or a coalesced one) missed every tier.
_LOOKUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "RESULT_CACHE": (("result", "hit"),),
    "L1": (("result", "miss"), ("l1", "hit")),
    "L2": (("result", "miss"), ("l1", "miss"), ("l2", "hit")),
    "ENCODER": (("result", "miss"), ("l1", "miss"), ("l2", "miss")),
    "COALESCED": (("result", "miss"), ("l1", "miss"), ("l2", "miss")),
}
_REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_STAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_BATCH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The registry and instruments of one application.

    ``cache_tiers`` names the cache tiers that exist (a disabled L1 or L2 is
    never looked up, so it records no misses). Observing never raises for a
    well-formed input; ``serve`` starts the HTTP endpoint, ``close`` stops it.
    """

    def __init__(self, *, cache_tiers: Collection[str] = CACHE_TIERS) -> None:
        unknown = set(cache_tiers) - set(CACHE_TIERS)
        if unknown:
            raise ValueError(f"unknown cache tier(s) {sorted(unknown)}; known: {', '.join(CACHE_TIERS)}")
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter("semsearch_requests", "RPCs answered, by method and status code", ["method", "code"], registry=r)
        self._request_seconds = Histogram(
            "semsearch_request_duration_seconds", "RPC latency inside the server", ["method"], buckets=_REQUEST_BUCKETS, registry=r
        )
        self._stage_seconds = Histogram(
            "semsearch_stage_duration_seconds", "Latency of the query-path stages that ran", ["stage"],
            buckets=_STAGE_BUCKETS, registry=r,
        )
        cache = Counter("semsearch_cache_requests", "Cache lookups of answered searches, by tier and result",
                        ["tier", "result"], registry=r)
        tiers = Counter("semsearch_embedding_tier", "Answered searches by where their embedding came from", ["tier"], registry=r)
        self._batch_size = Histogram(
            "semsearch_encoder_batch_size", "Texts per encoder call", buckets=_BATCH_SIZE_BUCKETS, registry=r
        )
        self._batch_seconds = Histogram(
            "semsearch_encoder_batch_duration_seconds", "Wall time of one encoder call", buckets=_BATCH_SECONDS_BUCKETS, registry=r
        )
        # Children made up front: every series exists from the start (a rate
        # over a series that appears late loses its first increments), and
        # the hot path skips the labels() lookup.
        self._lookups = {
            answer: tuple(cache.labels(tier, result) for tier, result in lookups if tier in cache_tiers)
            for answer, lookups in _LOOKUPS.items()
        }
        for tier in cache_tiers:
            for result in ("hit", "miss"):
                cache.labels(tier, result)
        self._tiers = {tier: tiers.labels(tier) for tier in EMBEDDING_TIERS}
        self._http: tuple[WSGIServer, threading.Thread] | None = None

    def observe_request(self, method: str, code: str, seconds: float) -> None:
        """One finished RPC: ``method`` (e.g. "Search"), status code name (e.g. "OK"), latency."""
        self._requests.labels(method, code).inc()
        self._request_seconds.labels(method).observe(seconds)

    def observe_search(self, outcome: SearchOutcome) -> None:
        """One answered search: its stage latencies, the cache lookups its tier implies, its tier."""
        for stage, ms in outcome.timings_ms.items():
            if stage != "total":
                self._stage_seconds.labels(stage).observe(ms / 1000)
        for child in self._lookups[outcome.tier]:
            child.inc()
        self._tiers[outcome.tier].inc()

    def observe_batch(self, size: int, seconds: float) -> None:
        """One encoder call of ``size`` texts (the micro-batcher's ``on_batch``)."""
        self._batch_size.observe(size)
        self._batch_seconds.observe(seconds)

    def register_collector(self, collector: Collector) -> None:
        """Add a collector read at every scrape (an object with ``collect()`` yielding metric families).

        Raises ValueError (prometheus_client's DuplicateTimeseries) when a
        collector that has ``describe()`` names a metric already registered.
        """
        self.registry.register(collector)

    def serve(self, host: str, port: int) -> int:
        """Serve the registry over HTTP (``/metrics``, any path) on ``host:port`` in a daemon thread; the bound port.

        Port 0 picks a free port. Raises RuntimeError if already serving and
        OSError when the address cannot be bound.
        """
        if self._http is not None:
            raise RuntimeError("the metrics endpoint is already being served")
        server, thread = start_http_server(port, host, registry=self.registry)
        self._http = (server, thread)
        return int(server.server_port)

    def close(self) -> None:
        """Stop the HTTP endpoint, if any (blocks up to about half a second). Idempotent."""
        if self._http is None:
            return
        server, thread = self._http
        self._http = None
        server.shutdown()
        server.server_close()
        thread.join()


class _BatcherLike(Protocol):
    @property
    def stats(self) -> BatcherStats: ...


class _Stats(Protocol):
    def stats(self) -> CacheStats: ...


class _LayeredLike(Protocol):
    def stats(self) -> LayeredStats: ...


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class PartsCollector:
    """Reads the parts' own counters at scrape time (any part may be None: its metrics are left out).

    ``caches`` maps a cache tier name to an object with ``stats()``
    (CacheStats); ``in_flight`` returns the requests being served; ``clock``
    (epoch seconds) dates the snapshot's age. Runs on the scrape thread: the
    values are read without stopping the event loop, so a scrape taken
    mid-request may see one counter updated and another not yet.
    """

    def __init__(
        self,
        *,
        batcher: _BatcherLike | None = None,
        embeddings: _LayeredLike | None = None,
        caches: Mapping[str, _Stats] | None = None,
        snapshots: SnapshotManager | None = None,
        in_flight: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._batcher = batcher
        self._embeddings = embeddings
        self._caches = dict(caches or {})
        self._snapshots = snapshots
        self._in_flight = in_flight
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        if self._in_flight is not None:
            yield _gauge("semsearch_requests_in_flight", "RPCs being served now", self._in_flight())
        if self._batcher is not None:
            yield from _batcher_metrics(self._batcher.stats)
        if self._caches:
            yield from _cache_metrics(self._caches)
        if self._embeddings is not None:
            w = self._embeddings.stats()
            yield _counter("semsearch_l2_write_drops_total", "L2 write-behind entries dropped (queue full)", w.writes_dropped)
            yield _counter("semsearch_l2_write_failures_total", "L2 write-behind writes that failed", w.writes_failed)
            yield _gauge("semsearch_l2_writes_pending", "L2 write-behind entries waiting", w.writes_pending)
        if self._snapshots is not None:
            yield from self._snapshot_metrics(self._snapshots)

    def _snapshot_metrics(self, manager: SnapshotManager) -> Iterator[Metric]:
        yield _counter("semsearch_snapshot_swaps_total", "Snapshots that went live", manager.swaps)
        yield _counter("semsearch_snapshot_refusals_total", "Snapshots refused (verification or model mismatch)", manager.refusals)
        snapshot = manager.current
        if snapshot is None:
            return
        manifest = snapshot.manifest
        yield _gauge("semsearch_snapshot_version", "Version of the live snapshot", snapshot.version)
        yield _gauge("semsearch_snapshot_products", "Products in the live snapshot", snapshot.product_count)
        try:
            created = datetime.fromisoformat(str(manifest.get("created", ""))).timestamp()
        except ValueError:
            log.debug("snapshot v%s: unreadable created time %r", snapshot.version, manifest.get("created"))
        else:
            yield _gauge("semsearch_snapshot_age_seconds", "Seconds since the live snapshot was built", self._clock() - created)
        quality = manifest.get("quality")
        if isinstance(quality, dict):
            family = GaugeMetricFamily(
                "semsearch_snapshot_quality", "Ranking quality measured when the live snapshot was built", labels=["metric"]
            )
            for metric in QUALITY_METRICS:
                # The object also holds the query count and the query set's id: not scores.
                value = quality.get(metric)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    family.add_metric([metric], float(value))
            yield family


def _batcher_metrics(s: BatcherStats) -> Iterator[Metric]:
    yield _gauge("semsearch_encoder_queue_depth", "Texts waiting for an encoder batch", s.queue_depth)
    yield _counter("semsearch_encoder_texts_total", "Texts passed to the encoder", s.items_encoded)
    yield _counter("semsearch_encoder_batches_total", "Encoder calls", s.batches)
    yield _counter("semsearch_encoder_failed_batches_total", "Encoder calls that raised", s.failed_batches)
    yield _counter("semsearch_encoder_coalesced_total", "Requests that joined an identical in-flight text", s.coalesced)
    yield _counter("semsearch_encoder_rejected_total", "Requests refused because the encoder queue was full", s.rejected)
    yield _counter("semsearch_encoder_deadline_drops_total", "Queued texts dropped because their deadline passed", s.dropped)
    yield _counter("semsearch_encoder_seconds_total", "Wall seconds inside the encoder", s.encode_seconds)
    yield _counter("semsearch_encoder_cpu_seconds_total", "CPU seconds the encoder spent on queries", s.encode_cpu_seconds)


def _cache_metrics(caches: Mapping[str, _Stats]) -> Iterator[Metric]:
    size = GaugeMetricFamily("semsearch_cache_bytes", "Current size of a cache tier", labels=["tier"])
    evictions = CounterMetricFamily("semsearch_cache_evictions", "Entries evicted from a cache tier", labels=["tier"])
    for tier, cache in caches.items():
        stats = cache.stats()
        size.add_metric([tier], stats.bytes)
        evictions.add_metric([tier], stats.evictions)
        if tier == "l2":
            yield _counter("semsearch_l2_errors_total", "L2 cache storage errors (the tier degrades to a miss)", stats.errors)
    yield from (size, evictions)


class DriftCollector:
    """Drift figures at scrape time: the state as a one-hot gauge, PSI per signal."""

    def __init__(self, monitor: "DriftMonitor") -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        from search.drift import STATES

        report = self._monitor.report
        state = GaugeMetricFamily("semsearch_drift_state", "query drift state (1 for the current one)", labels=["state"])
        for name in STATES:
            state.add_metric([name], 1.0 if report.state == name else 0.0)
        yield state
        psi = GaugeMetricFamily("semsearch_drift_psi", "PSI of live query signals against the reference", labels=["signal"])
        for signal, value in report.psi.items():
            psi.add_metric([signal], value)
        yield psi
        yield _counter("semsearch_drift_state_changes_total", "drift state changes", self._monitor.state_changes)
