"""Encoder benchmark: sentence-transformers PyTorch FP32 vs ORT FP32 vs ORT INT8, in one run.

Command:
    .venv/bin/python bench/encoder.py [--quick] [--json PATH] [--threads 1,2]

Per thread count (same texts for every backend): single-query p50/p99 latency on
short shopping queries (each backend in blocks, three rounds in rotating order,
so drift hits all three alike), items/s at batch 32 on product titles and descriptions.
Once: INT8 queries/s at batch 1, 8 and 32 (what micro-batching can win at
most), model size on disk, cosine to the PyTorch FP32 vectors, and nDCG@10 /
Recall@100 with exact search for ORT FP32 vs INT8 on SciFact and the fashion
catalog. Bars (issue 2), at 2 threads: INT8 p50 >= 10x faster than PyTorch and
>= 2.5x faster than ORT FP32; INT8 file <= 30% of FP32; |nDCG@10 INT8 - FP32| <= 0.01.
--quick: fewer texts and corpus subsets (nDCG then is not comparable to the full run).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    FASHION,
    MODEL_DIR,
    Dataset,
    exact_top_k,
    fashion_products,
    load_fashion,
    load_scifact,
    machine,
    now,
    percentiles,
    table,
    wands_queries,
    write_json,
)
from search.encoder import OnnxEncoder  # noqa: E402
from search.evaluation import evaluate, read_queries  # noqa: E402
from search.model_card import load_card  # noqa: E402

BACKENDS = ("st-fp32", "ort-fp32", "ort-int8")
BATCH = 32


class TorchBackend:
    def __init__(self, source: Path) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        import torch
        from sentence_transformers import SentenceTransformer

        self.torch = torch
        self.model = SentenceTransformer(str(source), device="cpu", local_files_only=True)

    def set_threads(self, threads: int) -> None:
        self.torch.set_num_threads(threads)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)


def load_texts(quick: bool) -> dict[str, list[str]]:
    rng = random.Random(7)
    queries = list(read_queries(FASHION / "queries_dev.tsv").values()) + wands_queries()
    rng.shuffle(queries)
    products = fashion_products()
    sample = rng.sample(products, 4000)
    titles = [p["title"] for p in sample]
    descriptions = [p["description"] for p in sample if p.get("description")]
    n_single, n_titles, n_desc = (60, 128, 48) if quick else (400, 2048, 512)
    return {"queries": queries[:n_single], "titles": titles[:n_titles], "descriptions": descriptions[:n_desc]}


def single_query_latency(encoders: dict, queries: list[str], rounds: int = 3) -> dict[str, dict[str, float]]:
    """p50/p99 of one-query encodes, in blocks: each backend runs all queries, in rotating order.

    Not interleaved query by query: PyTorch's OpenMP threads keep spinning for
    a while after each call and would steal the cores from the next backend.
    A pause between blocks lets them sleep; rotating the order spreads drift.
    """
    samples: dict[str, list[float]] = {name: [] for name in encoders}
    names = list(encoders)
    for round_ in range(rounds):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            encoder = encoders[name]
            time.sleep(0.5)
            for query in queries[:10]:  # warm-up, excluded
                encoder.encode([query])
            for query in queries:
                started = time.perf_counter()
                encoder.encode([query])
                samples[name].append(time.perf_counter() - started)
    return {name: percentiles(s) for name, s in samples.items()}


def throughput(encoder, texts: list[str]) -> float:
    encoder.encode(texts[:BATCH])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(texts), BATCH):
        encoder.encode(texts[i : i + BATCH])
    return len(texts) / (time.perf_counter() - started)


def quality(encoders: dict, quick: bool) -> dict[str, dict[str, dict]]:
    """nDCG@10 / Recall@100 with exact search per encoder, on SciFact and the fashion catalog."""
    return {data.name: _evaluate_set(encoders, data) for data in (load_scifact(quick), load_fashion(quick))}


def _evaluate_set(encoders: dict, data: Dataset) -> dict[str, dict]:
    results = {}
    qids = list(data.queries)
    for name, encoder in encoders.items():
        started = time.perf_counter()
        docs = encoder.encode(data.doc_texts)
        encode_s = time.perf_counter() - started
        top = exact_top_k(docs, encoder.encode([data.queries[q] for q in qids]), 100)
        run = {q: [data.doc_ids[i] for i in row] for q, row in zip(qids, top)}
        quality_ = evaluate(run, data.qrels, recall_min_grade=data.recall_min_grade)
        results[name] = {**quality_.to_dict(), "docs": len(data.doc_ids), "encode_s": round(encode_s, 1)}
    return results


def batch_sweep(encoder: OnnxEncoder, queries: list[str], sizes: tuple[int, ...] = (1, 8, 32)) -> dict[int, float]:
    """Distinct short queries per second when encoded in batches of each size (what micro-batching can win)."""
    texts = [f"{q} {i}" for i, q in enumerate(queries)]
    encoder.encode(texts[:32])
    rates = {}
    for size in sizes:
        started = time.perf_counter()
        for i in range(0, len(texts), size):
            encoder.encode(texts[i : i + size])
        rates[size] = len(texts) / (time.perf_counter() - started)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small samples, under a minute")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--model-dir", default=str(MODEL_DIR))
    parser.add_argument("--skip-quality", action="store_true", help="leave out the nDCG part")
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")]
    card = load_card(args.model_dir)
    texts = load_texts(args.quick)
    torch_backend = TorchBackend(Path(card.raw["source_model"]["path"]))

    speed: dict[int, dict[str, dict]] = {}
    for threads in thread_counts:
        torch_backend.set_threads(threads)
        encoders = {
            "st-fp32": torch_backend,
            "ort-fp32": OnnxEncoder(args.model_dir, variant="fp32", threads=threads),
            "ort-int8": OnnxEncoder(args.model_dir, variant="int8", threads=threads),
        }
        latency = single_query_latency(encoders, texts["queries"])
        speed[threads] = {
            name: {
                **latency[name],
                "titles_per_s": throughput(enc, texts["titles"]),
                "descriptions_per_s": throughput(enc, texts["descriptions"]),
            }
            for name, enc in encoders.items()
        }

    sizes = {
        "st-fp32": (Path(card.raw["source_model"]["path"]) / "model.safetensors").stat().st_size,
        "ort-fp32": card.model_file("fp32").stat().st_size,
        "ort-int8": card.model_file("int8").stat().st_size,
    }
    probe = texts["queries"][:100] + texts["titles"][:100] + texts["descriptions"][:100]
    reference = torch_backend.encode(probe)
    cosine = {}
    for name, enc in encoders.items():
        c = (enc.encode(probe) * reference).sum(axis=1)
        cosine[name] = {"mean": float(c.mean()), "min": float(c.min())}

    top_threads = max(thread_counts)
    torch_backend.set_threads(top_threads)
    sweep_queries = (texts["queries"] * 4)[: 96 if args.quick else 384]
    sweep = batch_sweep(encoders["ort-int8"], sweep_queries)
    quality_figures = {} if args.skip_quality else quality(
        {"ort-fp32": encoders["ort-fp32"], "ort-int8": encoders["ort-int8"]}, args.quick
    )

    rows = []
    for threads in thread_counts:
        for name in BACKENDS:
            s = speed[threads][name]
            rows.append([threads, name, s["p50_ms"], s["p99_ms"], s["titles_per_s"], s["descriptions_per_s"],
                         f"{sizes[name] / 1e6:.1f}", f"{cosine[name]['mean']:.4f}", f"{cosine[name]['min']:.4f}"])
    print(f"\nEncoder benchmark, {now()}, {machine()}{' (quick)' if args.quick else ''}\n")
    print(table(["threads", "backend", "p50 ms", "p99 ms", "titles/s", "descriptions/s", "size MB",
                 "cos mean", "cos min"], rows))
    if quality_figures:
        print()
        qrows = [[ds, name, f["ndcg@10"], f["recall@100"], f["queries"], f["docs"], f["encode_s"]]
                 for ds, per in quality_figures.items() for name, f in per.items()]
        print(table(["dataset", "encoder", "nDCG@10", "Recall@100", "queries", "docs", "encode s"], qrows))

    at = speed[top_threads]
    bars = {
        "int8_vs_torch_p50_speedup": at["st-fp32"]["p50_ms"] / at["ort-int8"]["p50_ms"],
        "int8_vs_ort_fp32_p50_speedup": at["ort-fp32"]["p50_ms"] / at["ort-int8"]["p50_ms"],
        "int8_size_ratio": sizes["ort-int8"] / sizes["ort-fp32"],
    }
    checks = [
        ("INT8 p50 vs PyTorch FP32", f"{bars['int8_vs_torch_p50_speedup']:.1f}x", ">= 10x", bars["int8_vs_torch_p50_speedup"] >= 10),
        ("INT8 p50 vs ORT FP32", f"{bars['int8_vs_ort_fp32_p50_speedup']:.2f}x", ">= 2.5x", bars["int8_vs_ort_fp32_p50_speedup"] >= 2.5),
        ("INT8 size / FP32 size", f"{bars['int8_size_ratio']:.3f}", "<= 0.30", bars["int8_size_ratio"] <= 0.30),
    ]
    for ds, per in quality_figures.items():
        delta = per["ort-int8"]["ndcg@10"] - per["ort-fp32"]["ndcg@10"]
        bars[f"{ds}_ndcg_delta"] = delta
        checks.append((f"nDCG@10 INT8 - FP32 ({ds})", f"{delta:+.4f}", "within 0.01", abs(delta) <= 0.01))
    print(f"\nBars at {top_threads} threads:\n")
    print(table(["bar", "measured", "target", "met"], [[a, b, c, "yes" if d else "NO"] for a, b, c, d in checks]))
    print(f"\nINT8 at {top_threads} threads, {len(sweep_queries)} distinct shopping queries encoded in batches:\n")
    print(table(["batch size", "queries/s", "vs batch 1"], [[b, r, f"{r / sweep[1]:.2f}x"] for b, r in sweep.items()]))
    write_json(args.json, {"date": now(), "machine": machine(), "quick": args.quick, "speed": speed, "batch_sweep": sweep,
                           "sizes_bytes": sizes, "cosine_to_torch_fp32": cosine, "quality": quality_figures,
                           "bars": bars, "bars_met": all(c[3] for c in checks)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
