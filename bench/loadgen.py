"""A bounded closed-loop gRPC load generator (run as its own process by bench/service.py).

Command (normally run for you by bench/service.py):
    .venv/bin/python bench/loadgen.py --target HOST:PORT --queries FILE --concurrency N --seconds S [--warmup N]

Closed loop (default): each of N workers sends Search requests back to back,
taking the next query from FILE (one per line, shared cursor, wrapping around),
until S seconds have passed. Open loop (--rate R): requests are started at R per
second whatever the answers, for S seconds (at most --max-outstanding in the
air, so the generator itself stays bounded). Prints one JSON object: requests,
errors by code, QPS, latency percentiles (of successes; shed requests' own
latency separately). Only loopback targets are allowed.
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


async def run_open(target: str, queries: list[str], rate: float, seconds: float, top_k: int, max_outstanding: int) -> dict:
    """Open-loop load: start ``rate`` requests per second for ``seconds``."""
    host = target.rpartition(":")[0].strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load a non-loopback target {target}")
    ok: list[float] = []
    shed: list[float] = []
    errors: Counter[str] = Counter()
    skipped = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        outstanding: set[asyncio.Task[None]] = set()

        async def one(query: str) -> None:
            started = time.perf_counter()
            try:
                await stub.Search(search_pb2.SearchRequest(query=query, top_k=top_k), timeout=10)
                ok.append(time.perf_counter() - started)
            except grpc.aio.AioRpcError as err:
                errors[err.code().name] += 1
                if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    shed.append(time.perf_counter() - started)

        started = time.perf_counter()
        sent = 0
        while (elapsed := time.perf_counter() - started) < seconds:
            due = int(elapsed * rate) + 1
            while sent < due:
                if len(outstanding) >= max_outstanding:
                    skipped += 1  # the generator's own bound, reported
                else:
                    task = asyncio.create_task(one(queries[sent % len(queries)]))
                    outstanding.add(task)
                    task.add_done_callback(outstanding.discard)
                sent += 1
            await asyncio.sleep(max(0.0, (sent / rate) - (time.perf_counter() - started)))
        if outstanding:
            await asyncio.wait(outstanding, timeout=15)
        elapsed = time.perf_counter() - started

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(np.asarray(values) * 1000, q)) if values else 0.0

    return {"offered_rate": rate, "sent": sent, "skipped_by_generator": skipped, "ok": len(ok),
            "errors": dict(errors), "seconds": elapsed, "ok_qps": len(ok) / elapsed,
            "p50_ms": pct(ok, 50), "p99_ms": pct(ok, 99), "shed_p50_ms": pct(shed, 50), "shed_p99_ms": pct(shed, 99)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT on loopback")
    parser.add_argument("--queries", required=True, help="file with one query per line")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=int, default=0, help="requests sent first and not measured")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--rate", type=float, help="open loop: requests started per second")
    parser.add_argument("--max-outstanding", type=int, default=4000, help="open loop: the generator's own bound")
    args = parser.parse_args(argv)
    queries = [line.rstrip("\n") for line in open(args.queries, encoding="utf-8") if line.strip()]
    if args.rate:
        result = asyncio.run(run_open(args.target, queries, args.rate, args.seconds, args.top_k, args.max_outstanding))
    else:
        result = asyncio.run(run(args.target, queries, args.concurrency, args.seconds, args.warmup, args.top_k))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
