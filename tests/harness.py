"""Test harness: a real Semsearch service on an ephemeral port, in a thread with its own event loop."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, Coroutine

from search.app import Application
from search.client import SearchClient
from search.config import Paths, ServiceSettings


class RunningService:
    """Starts ``Application`` on 127.0.0.1:0 in a background loop; ``client()`` talks to it over gRPC."""

    def __init__(self, paths: Paths, settings: ServiceSettings | None = None) -> None:
        settings = settings or ServiceSettings()
        self.app = Application(paths, replace(settings, listen="127.0.0.1:0"))
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-service-loop", daemon=True)
        self._thread.start()
        self.port = self.run(self.app.start())
        self.target = f"127.0.0.1:{self.port}"

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Run ``coroutine`` on the service's loop and return its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def client(self) -> SearchClient:
        return SearchClient(self.target)

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
