"""Semsearch vs the naive server (PyTorch FP32 per request, exact FAISS, no cache): QPS, latency, agreement, nDCG.

Command:
    .venv/bin/python bench/baseline.py [--quick] [--json PATH] [--seconds S] [--encode-lock] [--baseline-faiss-threads N]

In one run, on loopback, over the same catalog and the same proto:
  baseline   bench/baseline_server.py, its own process: sync grpc server
             (ThreadPoolExecutor, 10 workers), sentence-transformers PyTorch FP32
             encode per request, FAISS IndexFlatIP over the catalog encoded by the
             same model at startup (vectors cached in var/bench/baseline/);
             PyTorch and FAISS thread settings left at their defaults
  semsearch  `semsearch serve` with its defaults (INT8 ONNX, result/L1/L2 caches,
             micro-batching; the index built by `semsearch-index ingest`, HNSW
             for the full catalog, exact for the sample), as bench/service.py runs it
Load: bench/loadgen.py (its own process) replays the fashion Zipf stream
(query_stream_dev.txt) from line 2,000 on, at concurrency 1, 8 and 32 (--quick:
32 only), S seconds per point (default 10; --quick 2). Semsearch starts fresh
(empty caches) per point and warms up on lines 0..1,999 first, as
bench/service.py does (--quick: 500 lines); the baseline has no cache and warms
up on 20 queries. Both then measure the same query sequence.
Agreement and quality: every fashion dev query (--quick: 100 sampled) sent to
both servers as Search(top_k=10); top-10 overlap (shared product ids / 10, and
shared composed product texts / 10, since the catalog repeats titles and tied
products come back in arbitrary order) and nDCG@10 on the dev qrels.
--quick: the bundled 2,963-product sample catalog (nDCG then is low, as most
labelled products are not in it; it is comparable between the two servers only).
Bars: Semsearch QPS >= 10x the baseline's at concurrency 32 on the Zipf stream;
Semsearch nDCG@10 no more than 0.01 below the baseline's.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import FASHION, REPO, machine, now, read_jsonl_gz, table, to_product, write_json  # noqa: E402
from bench.service import SAMPLE, Server, ensure_index, load  # noqa: E402
from indexer.text import DEFAULT_FIELDS, compose_text  # noqa: E402
from search.client import SearchClient  # noqa: E402
from search.evaluation import evaluate, read_qrels, read_queries  # noqa: E402

PY = sys.executable
WARM_SEMSEARCH = 2000
WARM_SEMSEARCH_QUICK = 500
WARM_BASELINE = 20


class BaselineProcess:
    """bench/baseline_server.py as a child process; ready once it prints its port."""

    def __init__(self, catalog: Path, log: Path, *, encode_lock: bool, faiss_threads: int) -> None:
        command = [PY, str(REPO / "bench" / "baseline_server.py"), "--catalog", str(catalog),
                   "--faiss-threads", str(faiss_threads)]
        self.log = log
        with open(log, "w", encoding="utf-8") as stderr:
            self.process = subprocess.Popen(command + (["--encode-lock"] if encode_lock else []), cwd=REPO,
                                            stdout=subprocess.PIPE, stderr=stderr, text=True)

    def wait_ready(self) -> str:
        line = self.process.stdout.readline().strip()  # blocks while the catalog is encoded
        if not line.isdigit():
            raise RuntimeError(f"the baseline server did not start (exit code {self.process.poll()}); "
                               f"its log: {self.log.read_text(encoding='utf-8')[-2000:]}")
        return f"127.0.0.1:{line}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def ask_all(target: str, queries: dict[str, str]) -> dict[str, list[str]]:
    """Top-10 product ids per query id, one Search call at a time."""
    with SearchClient(target) as client:
        return {qid: [hit.product_id for hit in client.search(text, top_k=10, timeout=60).hits]
                for qid, text in queries.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sample catalog, concurrency 32, 2 s, under a minute")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--seconds", type=float, help="seconds per measured point (default 10; --quick 2)")
    parser.add_argument("--encode-lock", action="store_true", help="baseline: one model.encode at a time")
    parser.add_argument("--baseline-faiss-threads", type=int, default=0,
                        help="baseline: FAISS OpenMP threads (default 0: the library default, as a naive team leaves it)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    levels = (32,) if args.quick else (1, 8, 32)
    warm = WARM_SEMSEARCH_QUICK if args.quick else WARM_SEMSEARCH
    catalog = SAMPLE if args.quick else FASHION / "products.jsonl.gz"
    root = REPO / "var" / "bench"
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="semsearch-bench-baseline-"))

    # The baseline loads PyTorch and its catalog vectors while the index is checked.
    baseline = BaselineProcess(catalog, work / "baseline.log", encode_lock=args.encode_lock, faiss_threads=args.baseline_faiss_threads)
    results: dict[str, dict[int, dict]] = {"semsearch": {}, "baseline": {}}
    try:
        index_dir = ensure_index(args.quick, root)
        baseline_target = baseline.wait_ready()
        stream = (FASHION / "query_stream_dev.txt").read_text(encoding="utf-8").split("\n")
        stream = [line for line in stream if line.strip()]
        warm_file = write_lines(work / "warm.txt", stream[:warm])
        measured = write_lines(work / "measured.txt", stream[warm:])
        dev = read_queries(FASHION / "queries_dev.tsv")
        if args.quick:
            dev = {q: dev[q] for q in sorted(random.Random(17).sample(sorted(dev), 100))}

        load(baseline_target, warm_file, 1, 0.0, warmup=WARM_BASELINE)
        for c in levels:
            results["baseline"][c] = load(baseline_target, measured, c, seconds)
        base_top = ask_all(baseline_target, dev)
        baseline.stop()
        for i, c in enumerate(levels):
            server = Server(index_dir, work / f"cache-{c}")
            try:
                load(server.target, warm_file, 1, 0.0, warmup=warm)
                results["semsearch"][c] = load(server.target, measured, c, seconds)
                if i == len(levels) - 1:
                    sem_top = ask_all(server.target, dev)
            finally:
                server.stop()
    finally:
        if baseline.process.poll() is None:
            baseline.stop()

    texts = {str(row["id"]): compose_text(to_product(row), DEFAULT_FIELDS) for row in read_jsonl_gz(catalog)}
    overlap_ids = [len(set(sem_top[q]) & set(base_top[q])) / 10 for q in dev]
    # Multiset intersection: a tie between identical texts counts whichever product won it.
    overlap_texts = [sum((Counter(texts[i] for i in sem_top[q]) & Counter(texts[i] for i in base_top[q])).values()) / 10
                     for q in dev]
    qrels = read_qrels(FASHION / "qrels_dev.tsv")
    quality = {name: evaluate(run, qrels, recall_min_grade=2).to_dict()
               for name, run in (("semsearch", sem_top), ("baseline", base_top))}
    elapsed = time.perf_counter() - started

    print(f"\nSemsearch vs naive baseline, {now()}, {machine()}, {seconds:.0f} s per point, catalog "
          f"{'myntra_sample' if args.quick else 'myntra_fashion'} ({len(texts):,} products){' (quick)' if args.quick else ''}\n")
    print(f"Zipf stream from line {warm:,}; Semsearch warmed on lines 0..{warm - 1:,} (fresh server per point); "
          f"baseline warmed on {WARM_BASELINE} queries. Baseline: 10 workers, encode lock "
          f"{'on' if args.encode_lock else 'off'}, FAISS threads {args.baseline_faiss_threads or 'default'}.\n")
    rows = [[name, c, r["qps"], r["p50_ms"], r["p99_ms"], r["requests"], sum(r["errors"].values())]
            for name, by_c in results.items() for c, r in by_c.items()]
    print(table(["server", "concurrency", "QPS", "p50 ms", "p99 ms", "requests", "errors"], rows))
    print()
    print(table(["server", "nDCG@10", "queries", "top-10 overlap (ids)", "top-10 overlap (texts)"],
                [["semsearch", quality["semsearch"]["ndcg@10"], quality["semsearch"]["queries"],
                  sum(overlap_ids) / len(overlap_ids), sum(overlap_texts) / len(overlap_texts)],
                 ["baseline", quality["baseline"]["ndcg@10"], quality["baseline"]["queries"], "-", "-"]]))
    speedup = results["semsearch"][32]["qps"] / results["baseline"][32]["qps"]
    delta = quality["semsearch"]["ndcg@10"] - quality["baseline"]["ndcg@10"]
    checks = [("Semsearch / baseline QPS, Zipf stream, c=32", f"{speedup:.1f}x", ">= 10x", speedup >= 10),
              ("nDCG@10 Semsearch - baseline (fashion dev)", f"{delta:+.4f}", ">= -0.01", delta >= -0.01)]
    print()
    print(table(["bar", "measured", "target", "met"], [[a, b, c, "yes" if d else "NO"] for a, b, c, d in checks]))
    print(f"\n({elapsed:.0f} s)")
    write_json(args.json, {"date": now(), "machine": machine(), "quick": args.quick, "seconds": seconds,
                           "catalog": str(catalog), "products": len(texts), "warmup_lines": warm,
                           "encode_lock": args.encode_lock, "baseline_faiss_threads": args.baseline_faiss_threads,
                           "results": results, "quality": quality,
                           "overlap_ids": sum(overlap_ids) / len(overlap_ids),
                           "overlap_texts": sum(overlap_texts) / len(overlap_texts),
                           "qps_speedup_c32": speedup, "ndcg_delta": delta,
                           "bars_met": all(c[3] for c in checks), "seconds_total": elapsed})
    return 0


if __name__ == "__main__":
    sys.exit(main())
