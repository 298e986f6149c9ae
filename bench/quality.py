"""Latency/accuracy frontier: nDCG@10 and Recall@100 for encoder FP32/INT8 x index exact/HNSW(efSearch).

Command:
    .venv/bin/python bench/quality.py [--quick] [--json PATH] [--plot PATH] [--datasets scifact,fashion]

Data sets: SciFact dev (documents "title. text", binary labels) and the
fashion catalog (text = indexer.text.compose_text(product, DEFAULT_FIELDS),
graded labels, Recall@100 over grade 2). Encoders: OnnxEncoder FP32 and INT8
of models/all-minilm-l6-v2. Indexes: search.index.build_index with IndexSpec
flat (exact) and HNSW with the project's M and efConstruction
(search.index.HNSW_M, HNSW_EF_CONSTRUCTION), searched through VectorIndex at
efSearch 16, 32, 64, 128, 256.

Per point: nDCG@10 from a top-10 search at that efSearch; Recall@100 from a
top-100 search, where VectorIndex raises efSearch to k, so HNSW recall is at
efSearch max(ef, 100); ANN recall@10 = share of the exact top 10 found;
search latency p50/p99 of one query at a time (faiss.omp_set_num_threads(1),
as the service runs; 20 warm-up queries excluded), query vectors precomputed
(encoding is not in the latency).

Document vectors are cached in var/bench/quality/ as .npy, keyed by data set,
variant, model fingerprint, text fields, corpus size and the ids' digest;
HNSW graphs are cached beside them. The first full run encodes SciFact (5,183
long abstracts) and the 44k-product catalog with both encoders: ~10-15 min on
2 busy cores (use --datasets to split it); reruns take ~1-2 min.
--quick: SciFact = the relevant docs of 40 sampled queries + 200 random docs;
fashion = 2,000 random products and 100 queries; efSearch 16/64/256 (figures not
comparable with the full run).
Bars: |nDCG@10 INT8 - FP32| <= 0.01 with exact search, and HNSW at the service
default efSearch (search.index.HNSW_EF_SEARCH) within 0.01 nDCG@10 of exact,
per data set and encoder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    MODEL_DIR,
    REPO,
    Dataset,
    load_fashion,
    load_scifact,
    machine,
    now,
    percentiles,
    save_figure,
    table,
    write_json,
)
from search.encoder import OnnxEncoder  # noqa: E402
from search.evaluation import evaluate  # noqa: E402
from search.index import HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M, IndexSpec, VectorIndex, build_index  # noqa: E402

VARIANTS = ("fp32", "int8")
EF_SEARCH = (16, 32, 64, 128, 256)
EF_SEARCH_QUICK = (16, 64, 256)
CACHE = REPO / "var" / "bench" / "quality"
WARMUP = 20


def cache_stem(data: Dataset, encoder: OnnxEncoder) -> Path:
    """Vectors of another model, text composition or corpus never share a file."""
    ids = hashlib.sha256("\n".join(data.doc_ids).encode()).hexdigest()
    key = json.dumps({"dataset": data.name, "variant": encoder.variant, "fingerprint": encoder.fingerprint,
                      "fields": data.fields, "n": len(data.doc_ids), "ids": ids}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return CACHE / f"{data.name}-{encoder.variant}-{len(data.doc_ids)}-{digest}"


def doc_vectors(data: Dataset, encoder: OnnxEncoder) -> tuple[np.ndarray, float | None]:
    """The corpus vectors and the seconds spent encoding them (None: read from the cache)."""
    path = cache_stem(data, encoder).with_suffix(".npy")
    if path.exists():
        return np.load(path), None
    started = time.perf_counter()
    vectors = encoder.encode(data.doc_texts)
    seconds = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp.npy")
    np.save(partial, vectors)
    partial.replace(path)
    return vectors, seconds


def hnsw_index(data: Dataset, encoder: OnnxEncoder, vectors: np.ndarray) -> tuple[faiss.Index, float | None]:
    """The HNSW graph at the project's M / efConstruction (cached) and its build seconds (None: cached)."""
    path = Path(f"{cache_stem(data, encoder)}-hnsw-m{HNSW_M}-efc{HNSW_EF_CONSTRUCTION}.faiss")
    if path.exists():
        return faiss.read_index(str(path)), None
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # building is offline work: all cores
    started = time.perf_counter()
    index = build_index(vectors, IndexSpec(kind="hnsw"))
    seconds = time.perf_counter() - started
    partial = path.with_suffix(".tmp")
    faiss.write_index(index, str(partial))
    partial.replace(path)
    return index, seconds


def search_point(index: VectorIndex, queries: np.ndarray, exact_top10: np.ndarray | None) -> dict[str, Any]:
    """Latency one query at a time (k=10), then the top-10 and top-100 lists."""
    faiss.omp_set_num_threads(1)
    for q in queries[:WARMUP]:  # warm-up, excluded
        index.search(q[None, :], 10)
    samples, top10 = [], []
    for q in queries:
        started = time.perf_counter()
        _, ids = index.search(q[None, :], 10)
        samples.append(time.perf_counter() - started)
        top10.append(ids[0])
    _, top100 = index.search(queries, 100)
    top10 = np.stack(top10)
    ann = 1.0 if exact_top10 is None else float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top10, exact_top10)]))
    return {"top10": top10, "top100": top100, "ann_recall@10": ann, **percentiles(samples)}


def frontier(data: Dataset, variant: str, ef_values: tuple[int, ...]) -> tuple[list[dict], dict]:
    encoder = OnnxEncoder(MODEL_DIR, variant=variant)
    vectors, encode_s = doc_vectors(data, encoder)
    qids = list(data.queries)
    queries = encoder.encode([data.queries[q] for q in qids])
    graph, build_s = hnsw_index(data, encoder, vectors)
    points = []
    exact = search_point(VectorIndex(build_index(vectors, IndexSpec(kind="flat")), IndexSpec(kind="flat")), queries, None)
    for ef, point in [(None, exact)] + [
        (ef, search_point(VectorIndex(graph, IndexSpec(kind="hnsw", ef_search=ef)), queries, exact["top10"]))
        for ef in ef_values
    ]:
        at10 = evaluate({q: [data.doc_ids[i] for i in row if i >= 0] for q, row in zip(qids, point["top10"])},
                        data.qrels, recall_min_grade=data.recall_min_grade)
        at100 = evaluate({q: [data.doc_ids[i] for i in row if i >= 0] for q, row in zip(qids, point["top100"])},
                         data.qrels, recall_min_grade=data.recall_min_grade)
        points.append({"dataset": data.name, "encoder": variant, "index": "exact" if ef is None else "hnsw",
                       "ef_search": ef, "ndcg@10": at10.ndcg_at_10, "recall@100": at100.recall_at_100,
                       "recall_ef": None if ef is None else max(ef, 100), "ann_recall@10": point["ann_recall@10"],
                       "p50_ms": point["p50_ms"], "p99_ms": point["p99_ms"], "mean_ms": point["mean_ms"],
                       "queries": at10.queries, "docs": len(data.doc_ids)})
    return points, {"encode_s": encode_s, "hnsw_build_s": build_s, "docs": len(data.doc_ids)}


def plot(path: Path, points: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    datasets = list(dict.fromkeys(p["dataset"] for p in points))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    colours = {"fp32": "tab:orange", "int8": "tab:blue"}
    for ax, dataset in zip(axes[0], datasets):
        for variant in VARIANTS:
            line = [p for p in points if p["dataset"] == dataset and p["encoder"] == variant]
            hnsw = sorted((p for p in line if p["index"] == "hnsw"), key=lambda p: p["ef_search"])
            exact = next(p for p in line if p["index"] == "exact")
            ax.plot([p["p50_ms"] for p in hnsw], [p["ndcg@10"] for p in hnsw], marker="o", color=colours[variant],
                    label=f"{dataset} {variant.upper()}, HNSW")
            ax.plot([exact["p50_ms"]], [exact["ndcg@10"]], marker="*", markersize=13, linestyle="none",
                    color=colours[variant], label=f"{dataset} {variant.upper()}, exact")
            for p in hnsw:
                ax.annotate(f"ef{p['ef_search']}", (p["p50_ms"], p["ndcg@10"]), textcoords="offset points",
                            xytext=(3, 4), fontsize=7, color=colours[variant])
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel("search latency p50, ms (one query, 1 OpenMP thread; log)")
        ax.set_ylabel("nDCG@10")
        ax.set_title(f"{dataset} ({line[0]['docs']:,} docs, {line[0]['queries']} queries)")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("Latency vs nDCG@10: encoder FP32/INT8 x HNSW efSearch / exact")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="corpus subsets, efSearch 16/64/256, under a minute")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--plot", metavar="PATH", default=str(REPO / "bench" / "out" / "quality_frontier.png"),
                        help="PNG of latency against nDCG@10 (default bench/out/quality_frontier.png)")
    parser.add_argument("--datasets", default="scifact,fashion", help="comma-separated subset of scifact,fashion")
    args = parser.parse_args(argv)
    loaders = {"scifact": load_scifact, "fashion": load_fashion}
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    if not names or set(names) - set(loaders):
        parser.error(f"--datasets: choose from {', '.join(loaders)}")
    ef_values = EF_SEARCH_QUICK if args.quick else EF_SEARCH
    started = time.perf_counter()
    points: list[dict] = []
    costs: dict[str, dict] = {}
    for name in names:
        data = loaders[name](args.quick)
        for variant in VARIANTS:
            new, cost = frontier(data, variant, ef_values)
            points += new
            costs[f"{name}/{variant}"] = cost
    elapsed = time.perf_counter() - started

    print(f"\nQuality frontier, {now()}, {machine()}{' (quick)' if args.quick else ''}\n")
    print(f"HNSW M={HNSW_M}, efConstruction={HNSW_EF_CONSTRUCTION}; latency: one query at a time, k=10, "
          f"1 OpenMP thread; Recall@100 for HNSW is at efSearch max(ef, 100) (k=100 raises it).\n")
    print(table(["dataset", "encoder", "index", "efSearch", "nDCG@10", "Recall@100", "ANN recall@10", "p50 ms",
                 "p99 ms", "queries", "docs"],
                [[p["dataset"], p["encoder"], p["index"], p["ef_search"] or "-", p["ndcg@10"], p["recall@100"],
                  p["ann_recall@10"], p["p50_ms"], p["p99_ms"], p["queries"], p["docs"]] for p in points]))
    print()
    print(table(["dataset/encoder", "docs", "encode s", "HNSW build s"],
                [[k, c["docs"], "cached" if c["encode_s"] is None else c["encode_s"],
                  "cached" if c["hnsw_build_s"] is None else c["hnsw_build_s"]] for k, c in costs.items()]))

    def at(dataset: str, variant: str, ef: int | None) -> dict:
        return next(p for p in points if p["dataset"] == dataset and p["encoder"] == variant and p["ef_search"] == ef)

    checks = []
    for name in names:
        delta = at(name, "int8", None)["ndcg@10"] - at(name, "fp32", None)["ndcg@10"]
        checks.append((f"nDCG@10 INT8 - FP32, exact ({name})", f"{delta:+.4f}", "within 0.01", abs(delta) <= 0.01))
        if HNSW_EF_SEARCH in ef_values:
            for variant in VARIANTS:
                gap = at(name, variant, HNSW_EF_SEARCH)["ndcg@10"] - at(name, variant, None)["ndcg@10"]
                checks.append((f"nDCG@10 HNSW ef={HNSW_EF_SEARCH} - exact ({name}, {variant.upper()})", f"{gap:+.4f}",
                               "within 0.01", abs(gap) <= 0.01))
    print()
    print(table(["bar", "measured", "target", "met"], [[a, b, c, "yes" if d else "NO"] for a, b, c, d in checks]))
    print(f"\n({elapsed:.0f} s)")
    if args.plot:
        plot(Path(args.plot), points)
    write_json(args.json, {"date": now(), "machine": machine(), "quick": args.quick, "hnsw_m": HNSW_M,
                           "hnsw_ef_construction": HNSW_EF_CONSTRUCTION, "points": points, "costs": costs,
                           "bars_met": all(c[3] for c in checks), "seconds": elapsed})
    return 0


if __name__ == "__main__":
    sys.exit(main())
