"""A bounded closed-loop gRPC load generator (run as its own process by bench/service.py).

Command (normally run for you by bench/service.py):
    .venv/bin/python bench/loadgen.py --target HOST:PORT --queries FILE --concurrency N --seconds S [--warmup N]

Each of N workers sends Search requests back to back, taking the next query
from FILE (one per line, shared cursor, wrapping around), until S seconds
have passed. Prints one JSON object: requests, errors by code, QPS, latency
percentiles. Only loopback targets are allowed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.proto import search_pb2, search_pb2_grpc  # noqa: E402


async def run(target: str, queries: list[str], concurrency: int, seconds: float, warmup: int, top_k: int) -> dict:
    host = target.rpartition(":")[0].strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load a non-loopback target {target}")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        cursor = 0

        def next_query() -> str:
            nonlocal cursor
            query = queries[cursor % len(queries)]
            cursor += 1
            return query

        for _ in range(warmup):  # excluded from the figures
            await stub.Search(search_pb2.SearchRequest(query=next_query(), top_k=top_k), timeout=30)
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                request = search_pb2.SearchRequest(query=next_query(), top_k=top_k)
                started = time.perf_counter()
                try:
                    await stub.Search(request, timeout=30)
                    latencies.append(time.perf_counter() - started)
                except grpc.aio.AioRpcError as err:
                    errors[err.code().name] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "requests": len(latencies), "errors": dict(errors), "seconds": elapsed, "qps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
        "queries_used": cursor,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT on loopback")
    parser.add_argument("--queries", required=True, help="file with one query per line")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=int, default=0, help="requests sent first and not measured")
    parser.add_argument("--top-k", type=int, default=10)
    args = parser.parse_args(argv)
    queries = [line.rstrip("\n") for line in open(args.queries, encoding="utf-8") if line.strip()]
    print(json.dumps(asyncio.run(run(args.target, queries, args.concurrency, args.seconds, args.warmup, args.top_k))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
