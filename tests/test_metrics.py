"""Prometheus metrics: exact values after a scripted request sequence, scrape-time collectors, settings, dashboard."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from search.batcher import BatcherStats
from search.cache import CacheStats, LayeredStats
from search.cli import main
from search.config import ConfigError, Paths, ServiceSettings, load_section
from search.metrics import Metrics, PartsCollector
from search.proto import search_pb2
from tests.harness import RunningService, build_index

DASHBOARD = Path(__file__).resolve().parent.parent / "scripts" / "grafana_dashboard.json"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by (sample name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def wait_for_requests(running: RunningService, count: int) -> Samples:
    """A scrape once ``count`` requests are counted (up to 5 s).

    An aborted RPC's status reaches the client just before the interceptor
    counts it, so a scrape right after an error could miss that one.
    """
    deadline = time.monotonic() + 5
    while True:
        samples = parse(running.scrape())
        counted = sum(v for (name, _), v in samples.items() if name == "semsearch_requests_total")
        if counted >= count or time.monotonic() > deadline:
            return samples
        time.sleep(0.01)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    return build_index(tmp_path_factory.mktemp("metrics") / "index", model_dir, 80)


@pytest.mark.model
def test_a_scripted_sequence_gives_exact_counts(index_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    paths = Paths(index_dir=index_dir, model_dir=model_dir, cache_dir=tmp_path / "l2")
    with RunningService(paths, metrics=True) as running, running.client() as client:
        tiers = [client.search(q, top_k=5).embedding_tier for q in ("blue denim jacket", "leather wallet", "running shoes")]
        tiers += [client.search(q, top_k=5).embedding_tier for q in ("blue denim jacket", "leather wallet")]
        tiers.append(client.search("blue denim jacket", top_k=7).embedding_tier)
        for bad in (search_pb2.SearchRequest(query=""), search_pb2.SearchRequest(query="shoes", top_k=101)):
            with pytest.raises(grpc.RpcError) as caught:
                client._stub.Search(bad, timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        client.index_info()
        samples = wait_for_requests(running, 9)
    assert [search_pb2.EmbeddingTier.Name(t) for t in tiers] == ["ENCODER"] * 3 + ["RESULT_CACHE"] * 2 + ["L1"]

    requests = {(dict(k)["method"], dict(k)["code"]): v for (n, k), v in samples.items() if n == "semsearch_requests_total"}
    assert requests == {("Search", "OK"): 6, ("Search", "INVALID_ARGUMENT"): 2, ("GetIndexInfo", "OK"): 1}
    assert value(samples, "semsearch_request_duration_seconds_count", method="Search") == 8
    assert value(samples, "semsearch_request_duration_seconds_count", method="GetIndexInfo") == 1

    cache = {(dict(k)["tier"], dict(k)["result"]): v for (n, k), v in samples.items() if n == "semsearch_cache_requests_total"}
    assert cache == {("result", "hit"): 2, ("result", "miss"): 4, ("l1", "hit"): 1, ("l1", "miss"): 3,
                     ("l2", "hit"): 0, ("l2", "miss"): 3}
    embedding = {dict(k)["tier"]: v for (n, k), v in samples.items() if n == "semsearch_embedding_tier_total"}
    assert embedding == {"RESULT_CACHE": 2, "L1": 1, "L2": 0, "ENCODER": 3, "COALESCED": 0}
    stages = {dict(k)["stage"]: v for (n, k), v in samples.items() if n == "semsearch_stage_duration_seconds_count"}
    assert stages == {"normalize": 6, "result_cache": 6, "l1": 1, "l2": 3, "encode": 3, "search": 4, "hydrate": 4}

    assert value(samples, "semsearch_encoder_texts_total") == 3
    assert value(samples, "semsearch_encoder_coalesced_total") == 0
    assert value(samples, "semsearch_encoder_batch_size_sum") == 3
    assert value(samples, "semsearch_encoder_batch_size_count") == value(samples, "semsearch_encoder_batches_total")
    assert value(samples, "semsearch_encoder_batch_duration_seconds_count") == value(samples, "semsearch_encoder_batches_total")
    assert value(samples, "semsearch_encoder_cpu_seconds_total") > 0  # three real encodes cost CPU time
    assert value(samples, "semsearch_encoder_queue_depth") == 0
    assert value(samples, "semsearch_requests_in_flight") == 0
    assert value(samples, "semsearch_l2_errors_total") == 0
    assert value(samples, "semsearch_l2_write_drops_total") == 0

    assert value(samples, "semsearch_snapshot_version") == 1
    assert value(samples, "semsearch_snapshot_products") == 80
    assert value(samples, "semsearch_snapshot_swaps_total") == 1
    assert value(samples, "semsearch_snapshot_refusals_total") == 0
    assert 0 <= value(samples, "semsearch_snapshot_age_seconds") < 3600
    assert not [k for k in samples if k[0] == "semsearch_snapshot_quality"]  # this manifest has no quality object


@pytest.mark.model
def test_the_metrics_endpoint_closes_with_the_service(index_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    paths = Paths(index_dir=index_dir, model_dir=model_dir, cache_dir=tmp_path / "l2")
    running = RunningService(paths, metrics=True)
    port = running.app.metrics_port
    assert port and "semsearch_requests_in_flight" in running.scrape()
    running.stop()
    assert running.app.metrics_port is None
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def _full_collector(quality: object) -> PartsCollector:
    manifest = {"created": "2026-01-01T00:00:00.000Z", "quality": quality}
    return PartsCollector(
        batcher=SimpleNamespace(stats=BatcherStats(coalesced=4, items_encoded=20, batches=6, encode_cpu_seconds=1.5,
                                                   queue_depth=2, rejected=1, dropped=3)),
        embeddings=SimpleNamespace(stats=lambda: LayeredStats(hits_l1=0, hits_l2=0, misses=0, writes_pending=5,
                                                               writes_done=9, writes_dropped=7, writes_failed=1)),
        caches={"result": SimpleNamespace(stats=lambda: CacheStats(bytes=100, evictions=2)),
                "l2": SimpleNamespace(stats=lambda: CacheStats(bytes=4096, errors=11))},
        snapshots=SimpleNamespace(swaps=3, refusals=2, current=SimpleNamespace(version=7, product_count=123, manifest=manifest)),
        in_flight=lambda: 4,
        clock=lambda: 1767225600.0 + 90,  # 2026-01-01T00:01:30Z
    )


def test_scrape_time_collector_reads_the_parts_counters() -> None:
    metrics = Metrics()
    metrics.register_collector(_full_collector({"ndcg@10": 0.61, "recall@100": 0.93, "queries": 300, "query_set": "ab12"}))
    samples = parse(generate_latest(metrics.registry).decode())
    expected = {
        "semsearch_requests_in_flight": 4, "semsearch_encoder_queue_depth": 2, "semsearch_encoder_texts_total": 20,
        "semsearch_encoder_batches_total": 6, "semsearch_encoder_coalesced_total": 4, "semsearch_encoder_rejected_total": 1,
        "semsearch_encoder_deadline_drops_total": 3, "semsearch_encoder_cpu_seconds_total": 1.5,
        "semsearch_l2_errors_total": 11, "semsearch_l2_write_drops_total": 7, "semsearch_l2_write_failures_total": 1,
        "semsearch_l2_writes_pending": 5, "semsearch_snapshot_version": 7, "semsearch_snapshot_products": 123,
        "semsearch_snapshot_swaps_total": 3, "semsearch_snapshot_refusals_total": 2, "semsearch_snapshot_age_seconds": 90,
    }
    assert {name: value(samples, name) for name in expected} == expected
    assert value(samples, "semsearch_cache_bytes", tier="l2") == 4096
    assert value(samples, "semsearch_cache_evictions_total", tier="result") == 2
    quality = {dict(k)["metric"]: v for (n, k), v in samples.items() if n == "semsearch_snapshot_quality"}
    assert quality == {"ndcg@10": 0.61, "recall@100": 0.93}


@pytest.mark.parametrize("quality", [None, "not an object"], ids=["absent", "malformed"])
def test_no_quality_sample_without_a_quality_object(quality: object) -> None:
    metrics = Metrics()
    metrics.register_collector(_full_collector(quality))
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, "semsearch_snapshot_version") == 7
    assert not [k for k in samples if k[0] == "semsearch_snapshot_quality"]


def test_registries_are_per_instance() -> None:
    first, second = Metrics(), Metrics()
    first.observe_request("Search", "OK", 0.01)
    assert value(parse(generate_latest(first.registry).decode()), "semsearch_requests_total", method="Search", code="OK") == 1
    assert ("semsearch_requests_total", frozenset({("method", "Search"), ("code", "OK")})) not in parse(
        generate_latest(second.registry).decode()
    )


def test_disabled_cache_tiers_record_no_lookups() -> None:
    metrics = Metrics(cache_tiers=["result", "l2"])
    metrics.observe_search(SimpleNamespace(tier="L2", timings_ms={"normalize": 0.1, "l2": 0.2, "total": 1.0}))
    samples = parse(generate_latest(metrics.registry).decode())
    cache = {(dict(k)["tier"], dict(k)["result"]): v for (n, k), v in samples.items() if n == "semsearch_cache_requests_total"}
    assert cache == {("result", "hit"): 0, ("result", "miss"): 1, ("l2", "hit"): 1, ("l2", "miss"): 0}
    with pytest.raises(ValueError, match="l3"):
        Metrics(cache_tiers=["l3"])


@pytest.mark.parametrize(
    ("listen", "public", "ok"),
    [("127.0.0.1:9100", False, True), ("localhost:0", False, True), ("[::1]:9100", False, True),
     ("127.0.0.2:9100", False, True), ("0.0.0.0:9100", False, False), ("10.1.2.3:9100", False, False),
     ("[::]:9100", False, False), ("metrics.example.com:9100", False, False), ("0.0.0.0:9100", True, True),
     ("9100", True, False), ("127.0.0.1:http", False, False), ("127.0.0.1:70000", False, False)],
    ids=["ipv4-loopback", "localhost", "ipv6-loopback", "loopback-net", "any-v4", "private", "any-v6", "hostname",
         "any-v4-public", "no-host", "named-port", "port-too-big"],
)
def test_metrics_listen_is_loopback_unless_public(listen: str, public: bool, ok: bool) -> None:
    if ok:
        assert ServiceSettings(metrics_listen=listen, metrics_public=public).metrics_address is not None
    else:
        with pytest.raises(ValueError, match="metrics_listen"):
            ServiceSettings(metrics_listen=listen, metrics_public=public)


def test_a_public_metrics_address_is_refused_from_the_environment_and_the_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        load_section(ServiceSettings, {}, {"SEMSEARCH_METRICS_LISTEN": "0.0.0.0:9100"})
    formats: list[str] = []
    monkeypatch.setattr("search.cli.configure_logging", lambda level, fmt: formats.append(fmt))
    assert main(["serve", "--metrics-listen", "0.0.0.0:9100"], environ={}) == 1
    assert "not a loopback address" in capsys.readouterr().err
    assert formats == ["json"]  # serve logs JSON unless told otherwise


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = [p for row in dashboard["panels"] for p in [row, *row.get("panels", [])]]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def test_the_grafana_dashboard_imports_and_uses_real_metric_names() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    used = {m for expr in _dashboard_exprs() for m in re.findall(r"semsearch_[a-z0-9_]+", expr)}
    for wanted in ("semsearch_requests_total", "semsearch_request_duration_seconds_bucket", "semsearch_stage_duration_seconds_bucket",
                   "semsearch_cache_requests_total", "semsearch_encoder_batch_size_bucket", "semsearch_encoder_cpu_seconds_total",
                   "semsearch_encoder_queue_depth", "semsearch_l2_errors_total", "semsearch_snapshot_version",
                   "semsearch_snapshot_age_seconds", "semsearch_snapshot_quality"):
        assert wanted in used
    # Every name the dashboard queries is one the service exposes.
    metrics = Metrics()
    metrics.observe_request("Search", "OK", 0.01)
    metrics.observe_batch(1, 0.01)
    metrics.observe_search(SimpleNamespace(tier="ENCODER", timings_ms={"encode": 1.0}))
    metrics.register_collector(_full_collector({"ndcg@10": 0.5, "recall@100": 0.9}))
    exposed = {name for name, _ in parse(generate_latest(metrics.registry).decode())}
    assert used <= exposed, used - exposed
