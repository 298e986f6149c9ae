"""Indexer benchmark: full ingest vs raw encoding, re-ingest, upsert, HNSW recall/latency sweep.

Command:
    .venv/bin/python bench/indexer.py [--quick] [--json PATH]

In one run, on the fashion catalog (44,432 products; --quick: 3,000):
1. raw encoder throughput on exactly the texts the indexer embeds (default
   text fields, all products, batch 32 sorted by length, same thread count);
2. a full ingest into an empty index dir (a `semsearch-index ingest` child
   process: wall time, products/s, peak RSS); bar: ingest products/s >= 0.85 x
   raw encoder texts/s;
3. re-ingest of the unchanged catalog; bar: <= 5% of the full time, 0 encoded;
4. upsert of 100 changed products (expect 100 encoded);
5. HNSW recall@10 against exact search (a product tying with the exact k-th
   score counts as found: 12,600 products share their text with another) and
   its plain id overlap, with per-query latency (600 dev
   queries, one at a time, 1 OpenMP thread as the service runs FAISS) for
   several M / efConstruction builds and efSearch values.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import FASHION, MODEL_DIR, REPO, machine, now, percentiles, table, write_json  # noqa: E402
from indexer.catalog import read_catalog  # noqa: E402
from indexer.text import DEFAULT_FIELDS, compose_text  # noqa: E402
from search.encoder import OnnxEncoder  # noqa: E402
from search.evaluation import ann_recall, read_queries  # noqa: E402
from search.index import IndexSpec, VectorIndex, build_index  # noqa: E402

CLI = [sys.executable, "-m", "indexer.cli"]


def run_cli(args: list[str], index_dir: Path) -> tuple[float, dict]:
    """Run a semsearch-index command; (wall seconds, status JSON afterwards)."""
    env = {**os.environ, "SEMSEARCH_INDEX_DIR": str(index_dir), "SEMSEARCH_MODEL_DIR": str(MODEL_DIR)}
    started = time.perf_counter()
    subprocess.run(CLI + args, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    status = subprocess.run(CLI + ["status", "--json"], env=env, cwd=REPO, check=True, capture_output=True, text=True)
    return wall, json.loads(status.stdout)


def hnsw_sweep(vectors: np.ndarray, queries: np.ndarray, builds: list[tuple[int, int]], ef_values: list[int]) -> list[dict]:
    import faiss

    faiss.omp_set_num_threads(1)
    exact = VectorIndex(build_index(vectors, IndexSpec(kind="flat")), IndexSpec(kind="flat"))
    truth_scores, truth = exact.search(queries, 10)
    rows = [{"index": "flat", "m": None, "ef_construction": None, "ef_search": None, "build_s": 0.0,
             "recall@10": 1.0, "id_overlap@10": 1.0, **_latency(exact, queries)}]
    for m, ef_construction in builds:
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # building may use every core
        started = time.perf_counter()
        raw = build_index(vectors, IndexSpec(kind="hnsw", m=m, ef_construction=ef_construction))
        build_s = time.perf_counter() - started
        faiss.omp_set_num_threads(1)
        for ef in ef_values:
            spec = IndexSpec(kind="hnsw", m=m, ef_construction=ef_construction, ef_search=ef)
            index = VectorIndex(raw, spec)
            found_scores, found = index.search(queries, 10)
            recall = ann_recall(truth_scores, found_scores, 10)
            id_overlap = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
            rows.append({"index": "hnsw", "m": m, "ef_construction": ef_construction, "ef_search": ef,
                         "build_s": build_s, "recall@10": recall, "id_overlap@10": id_overlap,
                         **_latency(index, queries)})
    return rows


def _latency(index: VectorIndex, queries: np.ndarray) -> dict[str, float]:
    for q in queries[:20]:
        index.search(q[None, :], 10)
    samples = []
    for q in queries:
        started = time.perf_counter()
        index.search(q[None, :], 10)
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 products, one HNSW build")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="semsearch-bench-indexer-"))
    catalog = FASHION / "products.jsonl.gz"
    products = list(read_catalog(catalog))
    if args.quick:
        products = random.Random(5).sample(products, 3000)
        catalog = work / "catalog.jsonl"
        catalog.write_text("".join(json.dumps(_as_row(p)) + "\n" for p in products))
    texts = [compose_text(p, DEFAULT_FIELDS) for p in products]

    # 1. Raw encoder throughput on the same texts, same settings as the indexer.
    encoder = OnnxEncoder(MODEL_DIR)
    encoder.encode(texts[:64])
    started = time.perf_counter()
    vectors = encoder.encode(texts)
    raw_s = time.perf_counter() - started
    raw_rate = len(texts) / raw_s
    unique = len(set(texts))

    # 2-4. Ingest, re-ingest, upsert, as a user runs them.
    index_dir = work / "index"
    full_s, status = run_cli(["ingest", str(catalog)], index_dir)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    again_s, again = run_cli(["ingest", str(catalog)], index_dir)
    changed = [_as_row(p) for p in random.Random(9).sample(products, 100)]
    for i, row in enumerate(changed):
        row["title"] = f"{row['title']} (new season {i})"
    delta = work / "delta.jsonl"
    delta.write_text("".join(json.dumps(r) + "\n" for r in changed))
    upsert_s, upserted = run_cli(["upsert", str(delta)], index_dir)

    # 5. HNSW sweep on the same vectors, real dev queries.
    queries = encoder.encode(list(read_queries(FASHION / "queries_dev.tsv").values()))
    builds = [(32, 200)] if args.quick else [(16, 100), (32, 100), (32, 200)]
    ef_values = [16, 32, 64, 128] if args.quick else [16, 32, 64, 128, 256]
    sweep = hnsw_sweep(vectors, queries, builds, ef_values)

    ingest_rate = len(products) / full_s
    figures = {
        "products": len(products), "unique_texts": unique,
        "raw_encode_s": raw_s, "raw_texts_per_s": raw_rate,
        "ingest_s": full_s, "ingest_products_per_s": ingest_rate, "ingest_peak_rss_mb": peak_rss_mb,
        "ingest_encoded": status["operation"]["encoded"], "ingest_index": status["index"],
        "ingest_vs_raw": ingest_rate / raw_rate,
        "reingest_s": again_s, "reingest_share": again_s / full_s, "reingest_version_unchanged": again["version"] == status["version"],
        "upsert_s": upsert_s, "upsert_encoded": upserted["operation"]["encoded"],
        "hnsw": sweep,
    }
    print(f"\nIndexer benchmark, {now()}, {machine()}{' (quick)' if args.quick else ''}\n")
    print(table(["step", "wall s", "rate", "encoded", "note"], [
        ["raw encoder, same texts", raw_s, f"{raw_rate:.0f} texts/s", len(texts), f"{unique} distinct texts"],
        ["full ingest", full_s, f"{ingest_rate:.0f} products/s", status["operation"]["encoded"],
         f"index {status['index']['kind']}, peak RSS {peak_rss_mb:.0f} MB"],
        ["re-ingest, unchanged", again_s, f"{again_s / full_s:.1%} of full", again["operation"]["encoded"] if not figures["reingest_version_unchanged"] else 0,
         "no new snapshot" if figures["reingest_version_unchanged"] else "new snapshot"],
        ["upsert 100 changed", upsert_s, "", upserted["operation"]["encoded"], f"v{upserted['version']}"],
    ]))
    print()
    print(table(["index", "M", "efC", "efSearch", "build s", "recall@10 (ties count)", "id overlap@10", "p50 ms", "p99 ms"],
                [[r["index"], r["m"] or "", r["ef_construction"] or "", r["ef_search"] or "", r["build_s"],
                  r["recall@10"], r["id_overlap@10"], r["p50_ms"], r["p99_ms"]] for r in sweep]))
    checks = [
        ("ingest products/s vs raw encoder texts/s", f"{figures['ingest_vs_raw']:.2f}", ">= 0.85", figures["ingest_vs_raw"] >= 0.85),
        ("re-ingest time / full time", f"{figures['reingest_share']:.3f}", "<= 0.05", figures["reingest_share"] <= 0.05),
        ("re-ingest encoded", "0" if figures["reingest_version_unchanged"] else "?", "0", figures["reingest_version_unchanged"]),
        ("upsert 100: encoded", str(figures["upsert_encoded"]), "100", figures["upsert_encoded"] == 100),
    ]
    print()
    print(table(["bar", "measured", "target", "met"], [[a, b, c, "yes" if d else "NO"] for a, b, c, d in checks]))
    write_json(args.json, {"date": now(), "machine": machine(), "quick": args.quick, **figures})
    return 0


def _as_row(product) -> dict:
    return {"id": product.id, "title": product.title, "description": product.description, "category": product.category,
            "brand": product.brand, "price": product.price, "in_stock": product.in_stock, "attrs": dict(product.attrs)}


if __name__ == "__main__":
    sys.exit(main())
