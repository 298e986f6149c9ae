"""Drift detection: PSI over query signals; an off-domain stream alerts, the shop's own stream does not."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from indexer.drift_reference import build_reference, read_reference_queries
from search.drift import DriftMonitor, DriftSettings, Reference, psi, query_signals
from search.evaluation import read_queries
from search.index import IndexSpec, VectorIndex, build_index
from search.normalize import normalize

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


def test_psi_is_small_for_one_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 2000)
    assert psi(reference, rng.normal(0, 1, 500), 10) < 0.1
    assert psi(reference, rng.normal(1.5, 1, 500), 10) > 1.0


def test_query_signals() -> None:
    assert query_signals([0.8, 0.6, 0.5], 4, 1, no_hit_floor=0.3) == pytest.approx((0.8, 0.2, 4.0, 0.25, 0.0))
    assert query_signals([0.1], 0, 0, no_hit_floor=0.3) == pytest.approx((0.1, 0.0, 0.0, 0.0, 1.0))


def test_reference_round_trip_and_malformed_file(tmp_path: Path) -> None:
    reference = Reference(samples=np.arange(15, dtype=float).reshape(3, 5), source="test")
    reference.to_file(tmp_path / "r.json")
    assert np.array_equal(Reference.from_file(tmp_path / "r.json").samples, reference.samples)
    (tmp_path / "bad.json").write_text(json.dumps({"signals": ["x"], "samples": [[1]]}))
    with pytest.raises(ValueError, match="malformed"):
        Reference.from_file(tmp_path / "bad.json")


def test_monitor_learns_a_reference_then_logs_each_state_change_once(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(1)
    monitor = DriftMonitor(DriftSettings(window=100, evaluate_every=10))

    def feed(mean: float, n: int) -> None:
        for value in rng.normal(mean, 0.05, n):
            monitor.observe((value, 0.05, 5.0, 0.0, 0.0))

    feed(0.7, 100)
    assert monitor.report.reference == "first live queries"
    feed(0.7, 200)
    assert monitor.report.state == "ok"
    with caplog.at_level(logging.WARNING, logger="search.drift"):
        feed(0.2, 300)
    assert monitor.report.state == "alert"
    assert monitor.state_changes == len([r for r in caplog.records if "drift state" in r.getMessage()]) >= 1
    monitor.reset(None)
    assert monitor.report.state == "ok" and monitor.report.reference == "learning"


@pytest.fixture(scope="module")
def fashion_index(encoder) -> VectorIndex:
    with gzip.open(REPO / "data" / "myntra_sample" / "products.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(1500), handle)]
    texts = [f"{r['title']}. {r['category']}" for r in rows]
    spec = IndexSpec(kind="flat")
    return VectorIndex(build_index(encoder.encode(texts), spec), spec)


def _live_signals(index: VectorIndex, encoder, texts: list[str]) -> list[tuple[float, ...]]:
    scores, _ = index.search(encoder.encode(texts), 10)
    return [query_signals(row, t, u, no_hit_floor=0.3) for row, (t, u) in zip(scores, encoder.token_stats(texts))]


@pytest.mark.model
def test_own_domain_stream_stays_ok_and_scifact_alerts_within_one_window(fashion_index: VectorIndex, encoder) -> None:
    if not (DATA / "scifact").is_dir():
        pytest.skip("../shared/data is not beside the checkout")
    settings = DriftSettings()
    reference = build_reference(fashion_index, encoder, queries_path=DATA / "myntra_fashion" / "queries_dev.tsv",
                                size=500, no_hit_floor=settings.no_hit_floor)
    assert reference is not None and len(reference.samples) == 500
    monitor = DriftMonitor(settings, reference)
    # The live window sees distinct queries: repeats are answered by the result cache.
    distinct: dict[str, None] = {}
    for line in (DATA / "myntra_fashion" / "query_stream_dev.txt").read_text(encoding="utf-8").splitlines():
        distinct.setdefault(normalize(line))
        if len(distinct) == 1000:
            break
    states = []
    for signals in _live_signals(fashion_index, encoder, list(distinct)):
        monitor.observe(signals)
        states.append(monitor.report.state)
    assert set(states) == {"ok"}, monitor.report
    claims = list(read_queries(DATA / "scifact" / "queries_dev.tsv").values())[: settings.window]
    for signals in _live_signals(fashion_index, encoder, claims):
        monitor.observe(signals)
    assert monitor.report.state == "alert", monitor.report


def test_reference_queries_file_formats(tmp_path: Path) -> None:
    (tmp_path / "q.txt").write_text("red shoes\n\nblue bag\n")
    (tmp_path / "q.tsv").write_text("qid\tquery\n1\tred shoes\n2\tblue bag\n")
    assert read_reference_queries(tmp_path / "q.txt") == read_reference_queries(tmp_path / "q.tsv") == ["red shoes", "blue bag"]


@pytest.mark.model
def test_the_service_reports_drift_in_index_info_and_metrics(tmp_path: Path, model_dir: Path) -> None:
    from search.config import Paths, ServiceSettings
    from tests.harness import RunningService, build_index

    index_dir = build_index(tmp_path / "index", model_dir, 300)
    paths = Paths(index_dir=index_dir, model_dir=model_dir, cache_dir=tmp_path / "l2")
    claims = list(read_queries(DATA / "scifact" / "queries_dev.tsv").values()) if (DATA / "scifact").is_dir() else []
    if len(claims) < 120:
        pytest.skip("../shared/data is not beside the checkout")
    fashion = [f"{colour} {thing}" for colour in ("red", "blue", "black", "white", "green", "pink") for thing in
               ("shirt", "shoes", "kurta", "watch", "bag", "jeans", "tshirt", "dress", "sandals", "cap")]
    with RunningService(paths, ServiceSettings(drift_window=60), metrics=True) as running, running.client() as client:
        assert client.index_info().drift_reference == "learning"
        for query in fashion:  # the first 60 distinct queries become the reference
            client.search(query)
        info = client.index_info()
        assert info.drift_reference == "first live queries" and info.drift_state == "ok"
        for claim in claims[:60]:
            client.search(claim)
        info = client.index_info()
        assert info.drift_state == "alert" and max(info.drift_psi.values()) >= 1.0
        assert 'semsearch_drift_state{state="alert"} 1.0' in running.scrape()
