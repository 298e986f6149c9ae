"""Service benchmark: QPS and p50/p99 over gRPC on loopback, with the transport ceiling beside it.

Command:
    .venv/bin/python bench/service.py [--quick] [--json PATH] [--seconds S]

Runs `semsearch serve` (separate processes) over the fashion catalog index
(--quick: the bundled 2,963-product sample, concurrency 1 and 32, 1 s per point)
and drives it with bench/grpc_loadgen.js (Node.js HTTP/2, its own process, a
fraction of a core; needs `node`), closed loop at concurrency 1, 8 and 32, for:
  echo       a grpc.aio server of the same proto returning a canned answer (the ceiling)
  a-result   all hits in the result cache (50 repeated queries, warmed)
  a-embed    all hits in the L1 embedding cache, index searched (result cache off)
  b-batch    all misses, unique queries, micro-batching on (max batch 32)
  b-nobatch  all misses, unique queries, micro-batching off (max batch 1)
  c-zipf     the 100k-line Zipf query stream (fresh server, first 2,000 lines warm up)
and, in the same run, the encoder alone (in this process, the server's settings)
on the same kind of unique queries at batch 1 and batch 32: the most that
micro-batching can give on this CPU.
Bars (issue 4), at concurrency 32: a-result QPS >= 50% of echo; b-batch QPS >= 2x b-nobatch.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import FASHION, MODEL_DIR, REPO, machine, now, table, wands_queries, write_json  # noqa: E402
from bench.node_load import node_load, write_frames  # noqa: E402
from search.client import SearchClient  # noqa: E402
from search.evaluation import read_queries  # noqa: E402

PY = sys.executable
CONCURRENCY = (1, 8, 32)
SAMPLE = REPO / "data" / "myntra_sample" / "products.jsonl.gz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_index(quick: bool, root: Path) -> Path:
    index_dir = root / ("sample-index" if quick else "fashion-index")
    catalog = SAMPLE if quick else FASHION / "products.jsonl.gz"
    env = {**os.environ, "SEMSEARCH_INDEX_DIR": str(index_dir), "SEMSEARCH_MODEL_DIR": str(MODEL_DIR)}
    subprocess.run([PY, "-m", "indexer.cli", "ingest", str(catalog)], env=env, cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    return index_dir


class Server:
    """A `semsearch serve` child process with settings given as SEMSEARCH_* variables."""

    def __init__(self, index_dir: Path, cache_dir: Path, **settings: object) -> None:
        self.port = free_port()
        env = {**os.environ, "SEMSEARCH_INDEX_DIR": str(index_dir), "SEMSEARCH_MODEL_DIR": str(MODEL_DIR),
               "SEMSEARCH_CACHE_DIR": str(cache_dir), "SEMSEARCH_LISTEN": f"127.0.0.1:{self.port}",
               "SEMSEARCH_LOG_LEVEL": "WARNING", **{f"SEMSEARCH_{k.upper()}": str(v) for k, v in settings.items()}}
        self.process = subprocess.Popen([PY, "-m", "search.cli", "serve"], env=env, cwd=REPO,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.target = f"127.0.0.1:{self.port}"
        with SearchClient(self.target) as client:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if client.health(timeout=1) == "SERVING":
                        break
                except Exception:
                    pass
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the service did not become SERVING")
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def load(target: str, queries: Path, concurrency: int, seconds: float, warmup: int = 0) -> dict:
    out = subprocess.run(
        [PY, str(REPO / "bench" / "loadgen.py"), "--target", target, "--queries", str(queries),
         "--concurrency", str(concurrency), "--seconds", str(seconds), "--warmup", str(warmup)],
        check=True, capture_output=True, text=True, cwd=REPO,
    )
    return json.loads(out.stdout)


def encoder_ceiling(queries: list[str], seconds: float) -> dict[str, float]:
    """Queries/s of the INT8 encoder alone at batch 1 and batch 32, as the service runs it (no spinning)."""
    from search.encoder import OnnxEncoder

    encoder = OnnxEncoder(MODEL_DIR, spin_wait=False)
    encoder.encode(queries[:32])
    rates = {}
    for batch in (1, 32):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            at = done % (len(queries) - batch)
            encoder.encode(queries[at:at + batch])
            done += batch
        rates[f"batch{batch}"] = done / (time.perf_counter() - started)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sample index, concurrency 1 and 32, 1 s per point")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--seconds", type=float, help="seconds per measured point (default 10; --quick 1)")
    args = parser.parse_args(argv)
    seconds = args.seconds or (1.0 if args.quick else 10.0)
    levels = (1, 32) if args.quick else CONCURRENCY
    root = REPO / "var" / "bench"
    root.mkdir(parents=True, exist_ok=True)
    index_dir = ensure_index(args.quick, root)
    work = Path(tempfile.mkdtemp(prefix="semsearch-bench-service-"))
    hot = write_frames(list(read_queries(FASHION / "queries_dev.tsv").values())[:50], work / "hot.bin")
    base = wands_queries()
    stream_lines = (FASHION / "query_stream_dev.txt").read_text(encoding="utf-8").splitlines()
    stream = write_frames([q for q in stream_lines if q.strip()], work / "stream.bin")
    results: dict[str, dict[int, dict]] = {}

    def unique_texts(tag: str, n: int = 60000) -> list[str]:
        return [f"{base[i % len(base)]} {tag} {i}" for i in range(n)]

    def unique_queries(tag: str) -> Path:
        return write_frames(unique_texts(tag), work / f"unique-{tag}.bin")

    echo = subprocess.Popen([PY, str(REPO / "bench" / "echo_server.py")], stdout=subprocess.PIPE, text=True, cwd=REPO)
    echo_target = f"127.0.0.1:{echo.stdout.readline().strip()}"
    results["echo"] = {c: node_load(echo_target, hot, seconds, concurrency=c, warmup=50) for c in levels}
    echo.terminate()
    echo.wait(10)

    plans = [
        ("a-result", {}, lambda c: (hot, 50)),
        ("a-embed", {"result_cache_bytes": 0}, lambda c: (hot, 50)),
        ("b-batch", {"result_cache_bytes": 0, "batch_max_size": 32}, lambda c: (unique_queries(f"on{c}"), 0)),
        ("b-nobatch", {"result_cache_bytes": 0, "batch_max_size": 1}, lambda c: (unique_queries(f"off{c}"), 0)),
    ]
    for name, settings, queries_for in plans:
        server = Server(index_dir, work / f"cache-{name}", **settings)
        try:
            results[name] = {}
            for c in levels:
                frames, warmup = queries_for(c)
                results[name][c] = node_load(server.target, frames, seconds, concurrency=c, warmup=warmup)
        finally:
            server.stop()
    results["c-zipf"] = {}
    for c in levels:
        server = Server(index_dir, work / f"cache-zipf-{c}")
        try:
            results["c-zipf"][c] = node_load(server.target, stream, seconds, concurrency=c, warmup=2000)
        finally:
            server.stop()
    ceiling = encoder_ceiling(unique_texts("ceiling", 20000), min(seconds, 5.0))

    print(f"\nService benchmark, {now()}, {machine()}, {seconds:.0f} s per point{' (quick)' if args.quick else ''}\n")
    rows = [[name, c, r["qps"], r["p50_ms"], r["p99_ms"], r["requests"], sum(r["errors"].values()),
             round(r["generator_cpu_cores"], 2)]
            for name, by_c in results.items() for c, r in by_c.items()]
    print(table(["scenario", "concurrency", "QPS", "p50 ms", "p99 ms", "requests", "errors", "generator cores"], rows))
    print(f"\nencoder alone (INT8, no spinning, unique queries): batch 1 {ceiling['batch1']:.0f} queries/s, "
          f"batch 32 {ceiling['batch32']:.0f} queries/s ({ceiling['batch32'] / ceiling['batch1']:.2f}x)")
    share = results["a-result"][32]["qps"] / results["echo"][32]["qps"]
    speedup = results["b-batch"][32]["qps"] / results["b-nobatch"][32]["qps"]
    encoder_gain = ceiling["batch32"] / ceiling["batch1"]
    checks = [("result-cache hits QPS / echo QPS, c=32", f"{share:.2f}", ">= 0.50", share >= 0.5),
              ("batching on / off QPS, all misses, c=32", f"{speedup:.2f}x", ">= 2x", speedup >= 2),
              ("  the encoder alone, batch 32 / batch 1 (the ceiling)", f"{encoder_gain:.2f}x", "", None)]
    print()
    print(table(["bar", "measured", "target", "met"],
                [[a, b, c, "" if d is None else "yes" if d else "NO"] for a, b, c, d in checks]))
    write_json(args.json, {"date": now(), "machine": machine(), "quick": args.quick, "seconds": seconds,
                           "results": results, "encoder_alone": ceiling, "result_cache_vs_echo": share,
                           "batching_speedup": speedup, "encoder_batching_gain": encoder_gain})
    return 0


if __name__ == "__main__":
    sys.exit(main())
