"""Test harness: a real Semsearch service on an ephemeral port, in a thread with its own event loop."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import urllib.request
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, Coroutine

from search.app import Application
from search.client import SearchClient
from search.config import Paths, ServiceSettings


class RunningService:
    """Starts ``Application`` on 127.0.0.1:0 in a background loop; ``client()`` talks to it over gRPC.

    With ``metrics=True`` the Prometheus endpoint is served on 127.0.0.1:0
    too and ``scrape()`` reads it.
    """

    def __init__(self, paths: Paths, settings: ServiceSettings | None = None, *, metrics: bool = False) -> None:
        settings = replace(settings or ServiceSettings(), listen="127.0.0.1:0")
        if metrics:
            settings = replace(settings, metrics_listen="127.0.0.1:0")
        self.app = Application(paths, settings)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-service-loop", daemon=True)
        self._thread.start()
        try:
            self.port = self.run(self.app.start())
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
            raise
        self.target = f"127.0.0.1:{self.port}"

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Run ``coroutine`` on the service's loop and return its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def client(self) -> SearchClient:
        return SearchClient(self.target)

    def scrape(self) -> str:
        """The metrics endpoint's text exposition; RuntimeError when metrics are not served."""
        if self.app.metrics_port is None:
            raise RuntimeError("this service was started without metrics=True")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.app.metrics_port}/metrics", timeout=10) as response:
            return response.read().decode("utf-8")

    def stop(self) -> None:
        try:
            self.run(self.app.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def service_paths(index_dir: Path, model_dir: Path, cache_dir: Path) -> Paths:
    return Paths(index_dir=index_dir, model_dir=model_dir, cache_dir=cache_dir)


SAMPLE = Path(__file__).resolve().parent.parent / "data" / "myntra_sample" / "products.jsonl.gz"


def sample_rows(n: int) -> list[dict]:
    """The first ``n`` products of the bundled sample catalog."""
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle)]


def build_index(index_dir: Path, model_dir: Path, n: int) -> Path:
    """Ingest the first ``n`` sample products into ``index_dir`` (snapshot v1); returns ``index_dir``."""
    from indexer.config import IndexerSettings
    from indexer.ingest import Indexer

    index_dir.mkdir(parents=True, exist_ok=True)
    catalog = index_dir.parent / f"{index_dir.name}-catalog.jsonl"
    catalog.write_text("".join(json.dumps(row) + "\n" for row in sample_rows(n)))
    Indexer(Paths(index_dir=index_dir, model_dir=model_dir), IndexerSettings()).ingest(catalog)
    return index_dir
