"""The composition root: builds the service's parts, runs the server, shuts it down gracefully.

Start order: load and warm the model, open the caches, start the batcher,
the metrics endpoint (when ``metrics_listen`` is set) and the gRPC server
(health NOT_SERVING), load the snapshot, then SERVING. The
watcher reloads when CURRENT moves or on SIGHUP. Shutdown (SIGTERM/SIGINT):
NOT_SERVING, stop accepting, drain in-flight requests within the grace
period, then close the batcher and caches.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

import faiss

from search.batcher import MicroBatcher
from search.cache import L1Cache, LayeredCache, ResultCache
from search.config import Paths, ServiceSettings
from search.encoder import OnnxEncoder
from search.l2_cache import L2Cache
from search.drift import REFERENCE_FILE, DriftMonitor, DriftSettings, Reference
from search.metrics import DriftCollector, Metrics, PartsCollector
from search.security import read_tokens, server_credentials
from search.server import NOT_SERVING, SERVING, create_server, set_health
from search.service import SearchService
from search.snapshot import Snapshot
from search.snapshot_manager import SnapshotManager

log = logging.getLogger(__name__)


class Application:
    """One running Semsearch service. ``async with`` or ``start()`` / ``aclose()``."""

    def __init__(self, paths: Paths, settings: ServiceSettings) -> None:
        self.paths = paths
        self.settings = settings
        self.port: int | None = None
        self.metrics_port: int | None = None  # bound once serving metrics (metrics_listen may use port 0)
        # Always recorded (a few microseconds a request); served over HTTP only with metrics_listen.
        tiers = ["result", *(["l1"] if settings.l1_bytes else []), *(["l2"] if settings.l2_bytes else [])]
        self.metrics = Metrics(cache_tiers=tiers)
        self._wake = asyncio.Event()
        self._watch_task: asyncio.Task[None] | None = None
        self._serving = False

    async def start(self) -> int:
        """Build everything and start serving; returns the bound port.

        Raises ModelLoadError (missing or corrupt model) or SecurityConfigError
        (unusable certificate, key or token file) before anything starts.
        """
        s = self.settings
        credentials = server_credentials(s.tls_cert, s.tls_key, s.tls_client_ca)
        tokens = read_tokens(s.auth_tokens_file) if s.auth_tokens_file is not None else None
        # FAISS searches run on executor threads, one query each: OpenMP
        # inside a single query only adds thread hand-off cost (measured 16 ms
        # vs 2.4 ms for an exact 44k search with 2 vs 1 OpenMP threads).
        faiss.omp_set_num_threads(1)
        loop = asyncio.get_running_loop()
        self.encoder = await loop.run_in_executor(
            None,
            lambda: OnnxEncoder(self.paths.model_dir, threads=s.encoder_threads, batch_size=s.batch_max_size,
                                spin_wait=s.encoder_spin_wait),
        )
        await loop.run_in_executor(None, self.encoder.encode, ["warm up the encoder", "t-shirt"])
        self.results = ResultCache(s.result_cache_bytes)
        l1 = L1Cache(s.l1_bytes) if s.l1_bytes else None
        l2 = L2Cache(self.paths.embedding_cache_dir, s.l2_bytes, dimension=self.encoder.dimension) if s.l2_bytes else None
        self.embeddings = LayeredCache(l1, l2)
        self.batcher = MicroBatcher(
            self.encoder.encode, max_batch_size=s.batch_max_size, max_wait_ms=s.batch_max_wait_ms, max_queue=s.batch_max_queue,
            on_result=self.embeddings.put, on_batch=self.metrics.observe_batch,
        )
        self.batcher.start()
        self.snapshots = SnapshotManager(self.paths.index_dir, fingerprint=self.encoder.fingerprint)
        self._executor = ThreadPoolExecutor(max_workers=s.search_threads, thread_name_prefix="semsearch-search")
        self.drift = DriftMonitor(DriftSettings(
            window=s.drift_window, warn_psi=s.drift_warn_psi, alert_psi=s.drift_alert_psi, no_hit_floor=s.drift_no_hit_floor,
        ))
        self.service = SearchService(
            settings=s, encoder=self.encoder, snapshots=self.snapshots, embeddings=self.embeddings,
            results=self.results, batcher=self.batcher, search_executor=self._executor, observer=self.metrics,
            drift=self.drift, token_stats=self.encoder.token_stats,
        )
        caches = {"result": self.results, **({"l1": l1} if l1 else {}), **({"l2": l2} if l2 else {})}
        self.metrics.register_collector(PartsCollector(
            batcher=self.batcher, embeddings=self.embeddings, caches=caches, snapshots=self.snapshots,
            in_flight=lambda: self.service.in_flight,
        ))
        self.metrics.register_collector(DriftCollector(self.drift))
        self.server, self.port, self.health = create_server(
            self.service, s.listen, max_receive_bytes=s.max_receive_bytes, observer=self.metrics,
            credentials=credentials, tokens=tokens,
        )
        if s.metrics_address is not None:
            host, port = s.metrics_address
            try:
                self.metrics_port = self.metrics.serve(host, port)
            except OSError as err:
                raise RuntimeError(f"cannot serve metrics on {s.metrics_listen}: {err}") from err
            log.info("metrics on http://%s:%s/metrics", host, self.metrics_port)
        await set_health(self.health, NOT_SERVING)
        await self.server.start()
        await self.reload()
        self._watch_task = asyncio.create_task(self._watch(), name="semsearch-snapshot-watch")
        log.info("listening on port %s", self.port)
        return self.port

    async def reload(self) -> bool:
        """Load the snapshot CURRENT names if it is new; True when one went live."""
        swapped = await asyncio.get_running_loop().run_in_executor(None, self.snapshots.reload)
        if swapped:
            self.results.clear()
            self.drift.reset(_drift_reference(self.snapshots.current))
            if not self._serving:
                self._serving = True
                await set_health(self.health, SERVING)
        return swapped

    def request_reload(self) -> None:
        """Reload now (SIGHUP)."""
        self._wake.set()

    async def _watch(self) -> None:
        # Wakes on SIGHUP or every reload_interval_s: CURRENT is one small
        # file, so re-reading it costs nothing and needs no inotify dependency.
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.reload_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.reload()
            except Exception:
                log.exception("snapshot reload failed; the current snapshot keeps serving")

    async def aclose(self) -> None:
        """NOT_SERVING, drain in-flight requests (up to the grace period), close everything."""
        if self._watch_task is not None:
            self._watch_task.cancel()
            try:
                await self._watch_task
            except asyncio.CancelledError:
                pass
        if self.port is not None:
            self._serving = False
            await set_health(self.health, NOT_SERVING)
            await self.server.stop(self.settings.shutdown_grace_s)
            await self.batcher.aclose()
            self._executor.shutdown(wait=True)
            self.embeddings.close(timeout=self.settings.shutdown_grace_s)
            self.snapshots.close()
            self.port = None
        if self.metrics_port is not None:
            # Last, so a final scrape during the drain still answers; shutdown() waits out the poll interval.
            await asyncio.get_running_loop().run_in_executor(None, self.metrics.close)
            self.metrics_port = None

    async def __aenter__(self) -> Application:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _drift_reference(snapshot: Snapshot | None) -> Reference | None:
    """The snapshot's drift reference; None (learn from live queries) when absent or unreadable."""
    path = None if snapshot is None else snapshot.path / REFERENCE_FILE
    if path is None or not path.is_file():
        return None
    try:
        return Reference.from_file(path)
    except (OSError, ValueError) as err:
        log.warning("drift reference %s unusable (%s); learning one from live queries", path, err)
        return None


async def serve_forever(app: Application) -> None:
    """Run ``app`` until SIGTERM or SIGINT; SIGHUP reloads the snapshot."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, app.request_reload)
    await app.start()
    print(f"semsearch: serving on {app.settings.listen.rpartition(':')[0]}:{app.port}", flush=True)
    if app.settings.metrics_listen is not None:
        host = app.settings.metrics_listen.rpartition(":")[0]
        print(f"semsearch: metrics on http://{host}:{app.metrics_port}/metrics", flush=True)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await app.aclose()
