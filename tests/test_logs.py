"""Structured logs: the JSON formatter, logging setup, and the request lines of a real server."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from search.config import Paths, ServiceSettings
from search.logs import JsonFormatter, configure_logging, request_id
from search.proto import search_pb2
from search.server import choose_request_id
from tests.harness import RunningService, build_index

SECRET = "zebra-striped overcoat"  # stands for a shopper's personal query


@pytest.fixture()
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, its handlers and level restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def _record(msg: str, *args: object, exc_info: object = None, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("search.test", logging.ERROR, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


def test_json_formatter_writes_one_parseable_line_with_extras_and_traceback() -> None:
    try:
        raise ValueError("bad thing\non two lines")
    except ValueError:
        record = _record("failed %s after %d ms", "Search", 12, exc_info=sys.exc_info(), method="Search", stages={"encode": 1.5},
                         odd=object())
    token = request_id.set("abc123")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id.reset(token)
    assert "\n" not in line
    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["msg"]) == ("ERROR", "search.test", "failed Search after 12 ms")
    assert (entry["method"], entry["stages"], entry["request_id"]) == ("Search", {"encode": 1.5}, "abc123")
    assert entry["odd"].startswith("<object object")
    assert entry["exc"].startswith("Traceback") and "ValueError: bad thing\non two lines" in entry["exc"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])


def test_json_formatter_leaves_out_what_is_absent() -> None:
    entry = json.loads(JsonFormatter().format(_record("plain")))
    assert set(entry) == {"ts", "level", "logger", "msg"}


def test_configure_logging_replaces_its_own_handler_only(root_logger: logging.Logger) -> None:
    other = logging.NullHandler()
    root_logger.addHandler(other)
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "text", stream=first)
    configure_logging("WARNING", "json", stream=second)
    log = logging.getLogger("search.test")
    log.info("not shown")
    log.warning("shown %s", "once")
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["msg"] == "shown once"
    assert other in root_logger.handlers and root_logger.level == logging.WARNING
    with pytest.raises(ValueError, match="format"):
        configure_logging("INFO", "xml")
    with pytest.raises(ValueError, match="level"):
        configure_logging("LOUD", "json")


@pytest.mark.parametrize(
    ("metadata", "kept"),
    [([("x-request-id", "req-42")], True), ([("x-request-id", "x" * 128)], True), ([("x-request-id", "x" * 129)], False),
     ([("x-request-id", "")], False), ([("x-request-id", "tab\there")], False), ([("x-request-id", "café")], False),
     ([("other", "v")], False), (None, False)],
    ids=["plain", "128-chars", "129-chars", "empty", "control-char", "non-ascii", "absent", "no-metadata"],
)
def test_request_id_is_the_clients_when_valid(metadata: list[tuple[str, str]] | None, kept: bool) -> None:
    chosen = choose_request_id(metadata)
    if kept:
        assert metadata is not None and chosen == metadata[0][1]
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", chosen)


class _Lines(logging.Handler):
    """Formats records with JsonFormatter as they are emitted (on the server's thread, with its context)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.entries: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append(json.loads(self.format(record)))

    def requests(self, level: str = "DEBUG", *, wait_for: int = 0) -> list[dict]:
        """The request lines at ``level``; waits up to 5 s for ``wait_for`` of them.

        An aborted RPC's status reaches the client before the interceptor's
        line is written, so a test may look a moment too early.
        """
        deadline = time.monotonic() + 5
        while True:
            found = [e for e in self.entries if e["logger"] == "search.server" and e["level"] == level and "method" in e]
            if len(found) >= wait_for or time.monotonic() > deadline:
                return found
            time.sleep(0.01)


@dataclass
class Served:
    running: RunningService
    lines: _Lines


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    return build_index(tmp_path_factory.mktemp("logs") / "index", model_dir, 60)


@pytest.fixture()
def serve(index_dir: Path, model_dir: Path, tmp_path: Path, root_logger: logging.Logger) -> Iterator:
    started: list[RunningService] = []

    def start(**settings: object) -> Served:
        lines = _Lines()
        root_logger.addHandler(lines)
        root_logger.setLevel(logging.DEBUG)
        paths = Paths(index_dir=index_dir, model_dir=model_dir, cache_dir=tmp_path / "l2")
        started.append(RunningService(paths, ServiceSettings(**settings)))
        return Served(started[-1], lines)

    yield start
    for running in started:
        running.stop()


def _trailing_id(metadata: tuple) -> str:
    return dict(metadata)["x-request-id"]


@pytest.mark.model
def test_each_request_logs_one_debug_line_with_its_request_id(serve) -> None:
    served = serve(slow_query_ms=60_000)
    with served.running.client() as client:
        _, call = client._stub.Search.with_call(search_pb2.SearchRequest(query=SECRET, top_k=3), timeout=10,
                                                metadata=[("x-request-id", "shop-7f3a")])
        assert _trailing_id(call.trailing_metadata()) == "shop-7f3a"
        _, call = client._stub.Search.with_call(search_pb2.SearchRequest(query=SECRET, top_k=3), timeout=10)
        generated = _trailing_id(call.trailing_metadata())
        batch = search_pb2.BatchSearchRequest(requests=[search_pb2.SearchRequest(query="kurta"), search_pb2.SearchRequest()])
        client._stub.BatchSearch(batch, timeout=10)
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    first, second, third = served.lines.requests()
    assert {k: first[k] for k in ("method", "code", "request_id", "tier", "hits", "snapshot_version")} == {
        "method": "Search", "code": "OK", "request_id": "shop-7f3a", "tier": "ENCODER", "hits": 3, "snapshot_version": 1}
    assert first["duration_ms"] > 0 and "query" not in first
    assert (second["request_id"], second["tier"]) == (generated, "RESULT_CACHE")
    assert (third["method"], third["queries"], third["failed_queries"], third["tier"]) == ("BatchSearch", 2, 1, ["ENCODER"])
    assert served.lines.requests("WARNING") == []
    assert not any(SECRET in json.dumps(e) for e in served.lines.entries)


@pytest.mark.model
def test_errors_carry_the_request_id_too(serve) -> None:
    served = serve()

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("index exploded")

    with served.running.client() as client:
        with pytest.raises(grpc.RpcError) as caught:
            client._stub.Search(search_pb2.SearchRequest(query=""), timeout=10, metadata=[("x-request-id", "bad-1")])
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _trailing_id(caught.value.trailing_metadata()) == "bad-1"
        served.running.app.service.search = broken
        with pytest.raises(grpc.RpcError) as caught:
            client._stub.Search(search_pb2.SearchRequest(query="shoes"), timeout=10, metadata=[("x-request-id", "bad-2")])
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert _trailing_id(caught.value.trailing_metadata()) == "bad-2"
    assert [(e["code"], e["request_id"]) for e in served.lines.requests(wait_for=2)] == [
        ("INVALID_ARGUMENT", "bad-1"), ("INTERNAL", "bad-2")]
    (internal,) = [e for e in served.lines.entries if e["msg"] == "internal error"]
    assert internal["request_id"] == "bad-2" and "RuntimeError: index exploded" in internal["exc"]


@pytest.mark.model
@pytest.mark.parametrize("log_queries", [False, True], ids=["queries-private", "queries-logged"])
def test_slow_requests_log_a_warning_with_stages_and_query_text_only_if_allowed(serve, log_queries: bool) -> None:
    served = serve(slow_query_ms=0, log_queries=log_queries)
    with served.running.client() as client:
        client.search(SECRET, top_k=3)
    (slow,) = served.lines.requests("WARNING")
    assert (slow["method"], slow["code"], slow["slow_query_ms"]) == ("Search", "OK", 0)
    assert set(slow["stages"]) == {"normalize", "result_cache", "l2", "encode", "search", "hydrate"}
    assert slow["msg"].startswith("slow request: Search OK")
    (debug,) = served.lines.requests("DEBUG")
    leaked = [e for e in served.lines.entries if SECRET in json.dumps(e)]
    if log_queries:
        assert slow["query"] == SECRET and debug["query"] == SECRET
        assert leaked == [debug, slow]
    else:
        assert leaked == []
