"""The search service over a real gRPC channel: real INT8 model, real snapshot, real caches on disk."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from indexer.config import IndexerSettings
from indexer.ingest import Indexer
from search.client import make_filters
from search.config import Paths, ServiceSettings
from search.encoder import OnnxEncoder
from search.model_card import CARD_NAME
from search.proto import search_pb2
from search.service import SearchService
from tests.harness import RunningService

pytestmark = pytest.mark.model

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "myntra_sample" / "products.jsonl.gz"
TIER = search_pb2.EmbeddingTier


def _rows(n: int) -> list[dict]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle)]


def _ingest(index_dir: Path, model_dir: Path, rows: list[dict], tmp: Path, *, op: str = "ingest") -> None:
    path = tmp / f"catalog-{time.monotonic_ns()}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    indexer = Indexer(Paths(index_dir=index_dir, model_dir=model_dir), IndexerSettings())
    getattr(indexer, op)(path)


@pytest.fixture(scope="module")
def built_index(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("index")
    _ingest(tmp / "index", model_dir, _rows(300), tmp)
    return tmp / "index"


@pytest.fixture()
def paths(tmp_path: Path, built_index: Path, model_dir: Path) -> Paths:
    index_dir = tmp_path / "index"
    shutil.copytree(built_index, index_dir)
    return Paths(index_dir=index_dir, model_dir=model_dir, cache_dir=tmp_path / "l2")


@pytest.fixture()
def service(paths: Paths):
    with RunningService(paths, ServiceSettings(reload_interval_s=0.2)) as running:
        yield running


def test_a_known_query_returns_the_expected_product(service: RunningService) -> None:
    row = _rows(300)[42]
    with service.client() as client:
        response = client.search(row["title"], top_k=5)
    by_id = {h.product_id: h for h in response.hits[:3]}
    assert row["id"] in by_id and by_id[row["id"]].title == row["title"]
    assert response.snapshot_version == 1
    assert response.model_fingerprint == service.app.encoder.fingerprint
    assert response.timings.total_ms > 0


def test_tiers_encoder_then_caches_then_l2_after_restart(paths: Paths) -> None:
    with RunningService(paths) as first, first.client() as client:
        assert client.search("blue denim jacket", top_k=5).embedding_tier == TIER.Value("ENCODER")
        assert client.search("blue denim jacket", top_k=5).embedding_tier == TIER.Value("RESULT_CACHE")
        assert client.search("  Blue DENIM jacket ", top_k=5).embedding_tier == TIER.Value("RESULT_CACHE")
        assert client.search("blue denim jacket", top_k=6).embedding_tier == TIER.Value("L1")
        first.app.embeddings.flush(5)
    with RunningService(paths) as second, second.client() as client:
        assert client.search("blue denim jacket", top_k=5).embedding_tier == TIER.Value("L2")
        assert client.search("blue denim jacket", top_k=7).embedding_tier == TIER.Value("L1")


def _parallel(n: int, call) -> list:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, range(n)))


def test_fifty_identical_new_queries_cost_one_encode(service: RunningService) -> None:
    before = service.app.batcher.stats.items_encoded
    barrier = threading.Barrier(50)

    def call(_: int) -> int:
        with service.client() as client:
            barrier.wait()
            return client.search("waterproof hiking boots for women", top_k=3).embedding_tier

    tiers = _parallel(50, call)
    assert service.app.batcher.stats.items_encoded - before == 1
    assert tiers.count(TIER.Value("ENCODER")) == 1
    assert set(tiers) <= {TIER.Value(t) for t in ("ENCODER", "COALESCED", "L1", "RESULT_CACHE")}


def test_concurrent_distinct_misses_are_batched(service: RunningService) -> None:
    stats = service.app.batcher.stats
    barrier = threading.Barrier(30)

    def call(i: int) -> None:
        with service.client() as client:
            barrier.wait()
            client.search(f"cotton shirt number {i}", top_k=3)

    _parallel(30, call)
    after = service.app.batcher.stats
    assert after.items_encoded - stats.items_encoded == 30
    assert after.batches - stats.batches < 30


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   \t "}, "query"),
        ({"query": "x" * 513}, "query"),
        ({"query": "!!!"}, "query"),
        ({"query": "shoes", "top_k": -1}, "top_k"),
        ({"query": "shoes", "top_k": 101}, "top_k"),
        ({"query": "shoes", "offset": -3}, "offset"),
        ({"query": "shoes", "offset": 995, "top_k": 10}, "offset"),
        ({"query": "shoes", "filters": make_filters(price_min=10, price_max=5)}, "filters.price_min"),
        ({"query": "shoes", "filters": make_filters(price_min=float("nan"))}, "filters.price_min"),
        ({"query": "shoes", "filters": make_filters(price_max=-1)}, "filters.price_max"),
        ({"query": "shoes", "filters": make_filters(category_prefix=" > ")}, "filters.category_prefix"),
        ({"query": "shoes", "filters": make_filters(brands=[""])}, "filters.brands"),
    ],
    ids=["empty", "whitespace", "too-long", "only-punctuation", "negative-top-k", "top-k-over-max", "negative-offset",
         "page-past-max", "price-min-over-max", "nan-price", "negative-price", "empty-category", "empty-brand"],
)
def test_invalid_requests_get_invalid_argument_naming_the_field(service: RunningService, request_kwargs: dict, field: str) -> None:
    request = search_pb2.SearchRequest(**request_kwargs)
    with service.client() as client, pytest.raises(grpc.RpcError) as caught:
        client._stub.Search(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(field)


def test_batch_search_answers_each_query_on_its_own(service: RunningService) -> None:
    requests = [search_pb2.SearchRequest(query="leather wallet", top_k=2), search_pb2.SearchRequest(query=""),
                search_pb2.SearchRequest(query="sports watch", top_k=200)]
    with service.client() as client:
        results = client.batch_search(requests).results
        assert len(results[0].response.hits) == 2
        assert results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "top_k" in results[2].error.message
        for bad in ([], [search_pb2.SearchRequest(query="x")] * 33):
            with pytest.raises(grpc.RpcError) as caught:
                client.batch_search(bad)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_filters_are_honored(service: RunningService) -> None:
    with service.client() as client:
        response = client.search("shoes", top_k=10, filters=make_filters(category_prefix="Footwear", price_max=1500))
        assert len(response.hits) == 10
        assert all(h.category.startswith("Footwear") and h.price <= 1500 for h in response.hits)
        page2 = client.search("shoes", top_k=10, offset=10, filters=make_filters(category_prefix="Footwear", price_max=1500))
        assert not {h.product_id for h in response.hits} & {h.product_id for h in page2.hits}


def test_index_info(service: RunningService) -> None:
    with service.client() as client:
        info = client.index_info()
    assert (info.snapshot_version, info.product_count, info.index_type, info.dimension) == (1, 300, "flat", 384)
    assert info.model_fingerprint == service.app.encoder.fingerprint


def test_health_unavailable_until_a_snapshot_then_serving(tmp_path: Path, model_dir: Path) -> None:
    paths = Paths(index_dir=tmp_path / "index", model_dir=model_dir, cache_dir=tmp_path / "l2")
    with RunningService(paths, ServiceSettings(reload_interval_s=0.1)) as running, running.client() as client:
        assert client.health() == "NOT_SERVING"
        with pytest.raises(grpc.RpcError) as caught:
            client.search("shoes")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        _ingest(paths.index_dir, model_dir, _rows(50), tmp_path)
        deadline = time.monotonic() + 10
        while client.health() != "SERVING" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.health() == "SERVING" and client.health("semsearch.v1.SearchService") == "SERVING"
        assert len(client.search("shoes", top_k=3).hits) == 3


def test_health_goes_not_serving_on_shutdown(paths: Paths) -> None:
    running = RunningService(paths)
    channel = grpc.insecure_channel(running.target)
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
    assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
    running.stop()
    statuses = []
    try:
        for message in stream:
            statuses.append(message.status)
    except grpc.RpcError:
        pass
    channel.close()
    assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses


def test_hot_reload_under_traffic_fails_no_request(service: RunningService, paths: Paths, tmp_path: Path) -> None:
    stop = threading.Event()
    failures: list[str] = []
    versions: set[int] = set()

    def traffic(worker: int) -> None:
        with service.client() as client:
            i = 0
            while not stop.is_set():
                try:
                    versions.add(client.search(f"casual shirt {worker} {i % 7}", top_k=5).snapshot_version)
                except grpc.RpcError as err:
                    failures.append(f"{err.code()}: {err.details()}")
                i += 1

    threads = [threading.Thread(target=traffic, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    rows = _rows(300)
    _ingest(paths.index_dir, paths.model_dir, [{**r, "title": r["title"] + " New"} for r in rows[:20]], tmp_path, op="upsert")
    deadline = time.monotonic() + 15
    while 2 not in versions and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert versions == {1, 2}


def test_a_snapshot_of_another_model_is_refused_and_the_old_one_serves(
    service: RunningService, paths: Paths, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = tmp_path / "other-model"
    shutil.copytree(paths.model_dir, other, ignore=shutil.ignore_patterns("model_fp32.onnx"))
    card = json.loads((other / CARD_NAME).read_text())
    card["fingerprints"]["int8"] = "feedfacefeedface"
    (other / CARD_NAME).write_text(json.dumps(card))
    _ingest(paths.index_dir, other, _rows(40), tmp_path)
    assert service.run(service.app.reload()) is False
    assert "snapshot refused" in caplog.text and "feedfacefeedface" in caplog.text
    with service.client() as client:
        assert client.search("shoes").snapshot_version == 1
        assert client.index_info().product_count == 300


@pytest.mark.parametrize("fault", ["deleted", "replaced-by-file"])
def test_l2_failure_while_serving_keeps_requests_succeeding(service: RunningService, paths: Paths, fault: str) -> None:
    with service.client() as client:
        client.search("formal black shoes", top_k=3)
        service.app.embeddings.flush(5)
        shutil.rmtree(paths.embedding_cache_dir)
        if fault == "replaced-by-file":
            paths.embedding_cache_dir.write_text("not a directory")
        for i in range(5):
            assert len(client.search(f"new query after the fault {i}", top_k=3).hits) == 3
        service.app.embeddings.flush(5)


def test_back_pressure_answers_resource_exhausted_at_once(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    gate.set()
    real_encode = OnnxEncoder.encode

    def gated(self, texts):
        gate.wait(30)
        return real_encode(self, texts)

    monkeypatch.setattr(OnnxEncoder, "encode", gated)
    with RunningService(paths, ServiceSettings(max_in_flight=2)) as running:
        gate.clear()
        with ThreadPoolExecutor(2) as pool:
            slow = [pool.submit(lambda q=q: running.client().search(q, timeout=30)) for q in ("first new query", "second new query")]
            deadline = time.monotonic() + 10
            while running.app.service.in_flight < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            with running.client() as client, pytest.raises(grpc.RpcError) as caught:
                started = time.monotonic()
                client.search("third query", timeout=30)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() - started < 5
            gate.set()
            assert all(len(f.result(30).hits) == 10 for f in slow)


def test_calls_beyond_the_pending_bound_are_refused_at_once_while_the_loop_is_stalled(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A saturated event loop takes calls off the transport slower than they
    # arrive; they must not queue unseen. Stall the loop for 3 s outright.
    real_validate = SearchService.validate

    def stalling(self, query):
        if query.text == "stall the loop":
            time.sleep(3)
        return real_validate(self, query)

    monkeypatch.setattr(SearchService, "validate", stalling)
    with RunningService(paths, ServiceSettings(max_pending_calls=4)) as running:
        with running.client() as warm:
            warm.search("kurta", top_k=3)  # encoder and caches warm, so only the stall is slow
        outcomes: list[tuple[str, float]] = []

        def call(text: str) -> None:
            started = time.monotonic()
            try:
                with running.client() as client:
                    client.search(text, top_k=3, timeout=30)
                outcomes.append(("OK", time.monotonic() - started))
            except grpc.RpcError as err:
                outcomes.append((err.code().name, time.monotonic() - started))

        with ThreadPoolExecutor(41) as pool:
            pool.submit(call, "stall the loop")
            time.sleep(0.5)
            list(pool.map(call, ["kurta"] * 40))
        refused = [seconds for code, seconds in outcomes if code == "CANCELLED"]
        assert len(refused) >= 20, outcomes
        assert max(refused) < 2.0, outcomes  # answered while the loop was still stalled
        assert {code for code, _ in outcomes} <= {"OK", "CANCELLED"}
        with running.client() as client:
            assert client.health() == "SERVING" and len(client.search("kurta", top_k=3).hits) == 3


def test_deadline_exceeded(service: RunningService) -> None:
    with service.client() as client, pytest.raises(grpc.RpcError) as caught:
        client.search("a query that has to be encoded first", timeout=0.0005)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_grpcurl_lists_and_calls_by_reflection(service: RunningService) -> None:
    grpcurl = shutil.which("grpcurl") or str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "grpcurl")
    listed = subprocess.run([grpcurl, "-plaintext", service.target, "list"], capture_output=True, text=True, timeout=60)
    assert "semsearch.v1.SearchService" in listed.stdout and "grpc.health.v1.Health" in listed.stdout
    called = subprocess.run(
        [grpcurl, "-plaintext", "-d", '{"query": "kurta", "top_k": 2}', service.target, "semsearch.v1.SearchService/Search"],
        capture_output=True, text=True, timeout=60,
    )
    assert called.returncode == 0, called.stderr
    assert len(json.loads(called.stdout)["hits"]) == 2


def test_an_index_dir_rebuilt_from_scratch_is_picked_up(service: RunningService, paths: Paths, tmp_path: Path) -> None:
    shutil.rmtree(paths.index_dir)  # same path, new v1: versions restart
    _ingest(paths.index_dir, paths.model_dir, _rows(300)[:25], tmp_path)
    assert service.run(service.app.reload()) is True
    with service.client() as client:
        info = client.index_info()
        assert (info.snapshot_version, info.product_count) == (1, 25)
