"""Overload and soak: shedding at 3x capacity, recovery, and a long run with hot reloads.

Command:
    .venv/bin/python bench/overload.py [--quick] [--json PATH] [--overload-seconds S] [--soak-seconds S]

The load for capacity and overload comes from bench/grpc_loadgen.js (Node.js,
HTTP/2 in C; needs `node`): a Python generator on the same two cores spends
more CPU per request than the server's cheap paths and saturates the machine
itself (the first version of this benchmark measured its own generators).
1. Capacity: closed-loop load of never-seen queries (every one a cache miss,
   the expensive path) at concurrency 32 for 5 s (--quick: 3 s; QPS).
2. Overload: open-loop load of new never-seen queries at 3x that rate for 30 s
   (--quick: 8 s). Admitted requests must keep a bounded p99 (<= 1 s); the
   excess must be refused at once rather than queued: by the service
   (RESOURCE_EXHAUSTED, past max_in_flight) or, when the event loop cannot
   take calls as fast as they arrive, by gRPC's bounded pending-call queue
   (CANCELLED, past max_pending_calls); transport refusals p99 <= 50 ms and
   no other errors or unanswered calls. The server's RSS stays bounded (peak
   <= 1.5x its RSS before the load); after the load stops, a probe query must
   answer within 1 s. The generator's own send lag and CPU are reported: it
   must not be the bottleneck.
3. Soak: 10 minutes (--quick: 30 s) of mixed closed-loop traffic (Zipf stream
   plus never-seen queries, bench/loadgen.py) with a catalog upsert every
   minute (--quick: every 8 s) that the service hot-swaps. Zero failed
   requests outside shedding; RSS growth from the second minute (caches full
   by then) to the last under 5%.
Server: `semsearch serve` with max_in_flight 64 over the fashion index
(--quick: the bundled sample). Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import FASHION, MODEL_DIR, REPO, machine, now, table, wands_queries, write_json  # noqa: E402
from bench.node_load import node_load, write_frames  # noqa: E402
from bench.service import Server, ensure_index  # noqa: E402
from search.client import SearchClient  # noqa: E402

PY = sys.executable


class RssSampler:
    """Samples a process's RSS every 0.25 s in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.samples.append((time.monotonic(), self.process.memory_info().rss))

    def between(self, start: float, end: float) -> list[int]:
        return [rss for t, rss in self.samples if start <= t <= end]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def recovery_seconds(target: str, limit: float = 10.0) -> float:
    """Seconds until a fresh probe query answers after the load stopped."""
    started = time.perf_counter()
    with SearchClient(target) as client:
        while time.perf_counter() - started < limit:
            try:
                client.search("recovery probe shoes", timeout=1.0)
                return time.perf_counter() - started
            except Exception:
                time.sleep(0.05)
    return float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sample index, 8 s overload, 30 s soak")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--overload-seconds", type=float)
    parser.add_argument("--soak-seconds", type=float)
    args = parser.parse_args(argv)
    overload_s = args.overload_seconds or (8.0 if args.quick else 30.0)
    soak_s = args.soak_seconds or (30.0 if args.quick else 600.0)
    reload_every = 8.0 if args.quick else 60.0
    root = REPO / "var" / "bench"
    root.mkdir(parents=True, exist_ok=True)
    base_index = ensure_index(args.quick, root)
    work = Path(tempfile.mkdtemp(prefix="semsearch-bench-overload-"))
    index_dir = work / "index"
    subprocess.run(["cp", "-r", str(base_index), str(index_dir)], check=True)
    stream = FASHION / "query_stream_dev.txt"
    # Small caches, so they are full within the first soak window and RSS growth after it means a leak.
    server = Server(index_dir, work / "cache", max_in_flight=64, reload_interval_s=1.0,
                    l1_bytes=8 << 20, result_cache_bytes=4 << 20)
    rss = RssSampler(server.process.pid)
    base = wands_queries()

    def unseen_queries(tag: str, n: int) -> list[str]:
        return [f"{base[i % len(base)]} {tag} {i}" for i in range(n)]

    def unseen(tag: str, n: int) -> Path:
        path = work / f"unseen-{tag}.txt"
        path.write_text("\n".join(unseen_queries(tag, n)) + "\n")
        return path

    def unseen_frames(tag: str, n: int) -> Path:
        return write_frames(unseen_queries(tag, n), work / f"unseen-{tag}.bin")

    try:
        with SearchClient(server.target) as client:
            base_version = client.index_info().snapshot_version
        capacity = node_load(server.target, unseen_frames("capacity", 20000), 3.0 if args.quick else 5.0, concurrency=32,
                             warmup=100)["qps"]
        before = max(rss.between(0, time.monotonic()) or [server and psutil.Process(server.process.pid).memory_info().rss])
        started = time.monotonic()
        overload = node_load(server.target, unseen_frames("over", int(3 * capacity * overload_s) + 1000), overload_s,
                             rate=3 * capacity, timeout_s=10.0)
        ended = time.monotonic()
        recovered = recovery_seconds(server.target)
        peak = max(rss.between(started, ended) or [before])

        # Soak: Zipf stream and unseen queries in two closed-loop generators, upserts meanwhile.
        soak_unseen = unseen("soak", 200000)
        soak_started = time.monotonic()
        generators = [
            subprocess.Popen([PY, str(REPO / "bench" / "loadgen.py"), "--target", server.target, "--queries", str(q),
                              "--concurrency", str(c), "--seconds", str(soak_s)], stdout=subprocess.PIPE, text=True)
            for q, c in ((stream, 16), (soak_unseen, 4))
        ]
        reloads = 0
        catalog = REPO / "data" / "myntra_sample" / "products.jsonl.gz"
        rows = [json.loads(line) for line in subprocess.run(["zcat", str(catalog)], capture_output=True, text=True).stdout.splitlines()[:50]]
        env = {**os.environ, "SEMSEARCH_INDEX_DIR": str(index_dir), "SEMSEARCH_MODEL_DIR": str(MODEL_DIR)}
        while time.monotonic() - soak_started < soak_s - reload_every / 2:
            time.sleep(reload_every)
            delta = work / f"delta{reloads}.jsonl"
            delta.write_text("".join(json.dumps({**r, "id": f"soak-{reloads}-{r['id']}", "title": f"{r['title']} {reloads}"}) + "\n" for r in rows))
            subprocess.run([PY, "-m", "indexer.cli", "upsert", str(delta)], env=env, check=True, cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            reloads += 1
        soak = [json.loads(g.communicate()[0]) for g in generators]
        soak_ended = time.monotonic()
        with SearchClient(server.target) as client:  # the last upsert may be a second old: let it swap
            deadline = time.monotonic() + 10
            while (final_version := client.index_info().snapshot_version) < base_version + reloads and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        rss.stop()
        server.stop()

    window = min(60.0, soak_s / 4)
    # The first window warms the caches; growth is measured from the second window to the last.
    first = rss.between(soak_started + window, soak_started + 2 * window)
    last = rss.between(soak_ended - window, soak_ended)
    growth = (sum(last) / len(last)) / (sum(first) / len(first)) - 1 if first and last else float("nan")
    soak_failures = sum(n for r in soak for code, n in r["errors"].items() if code != "RESOURCE_EXHAUSTED")
    by_code = overload["by_code"]
    service_refused = by_code.get("RESOURCE_EXHAUSTED", {"n": 0, "p99_ms": None})
    transport_refused = by_code.get("CANCELLED", {"n": 0, "p99_ms": None})
    refused = service_refused["n"] + transport_refused["n"]
    other_errors = sum(n for code, n in overload["errors"].items() if code not in ("RESOURCE_EXHAUSTED", "CANCELLED"))

    def ms(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    print(f"\nOverload and soak, {now()}, {machine()}{' (quick)' if args.quick else ''}\n")
    print(table(["phase", "offered", "ok QPS", "ok p50 ms", "ok p99 ms", "refused: service (p99 ms)",
                 "refused: transport (p99 ms)", "other errors", "RSS MB"], [
        ["capacity (closed loop, c=32, misses)", "", capacity, "", "", "", "", "", before / 2**20],
        [f"overload 3x for {overload_s:.0f} s", f"{overload['offered_rate']:.0f}/s", overload["ok_qps"], overload["p50_ms"],
         overload["p99_ms"], f"{service_refused['n']} ({ms(service_refused['p99_ms'])})",
         f"{transport_refused['n']} ({ms(transport_refused['p99_ms'])})", other_errors, peak / 2**20],
        [f"soak {soak_s:.0f} s, {reloads} hot reloads", "", sum(r["qps"] for r in soak), "", max(r["p99_ms"] for r in soak),
         sum(r["errors"].get("RESOURCE_EXHAUSTED", 0) for r in soak), "", soak_failures, max(last or [0]) / 2**20],
    ]))
    print(f"\noverload generator: send lag p99 {overload['send_lag_p99_ms']:.1f} ms, "
          f"{overload['generator_cpu_cores']:.2f} cores, {overload['sent']} sent")
    checks = [
        ("overload: admitted p99", f"{overload['p99_ms']:.0f} ms", "<= 1000 ms", overload["p99_ms"] <= 1000),
        ("overload: excess refused, not queued (refused / sent - ok)", f"{refused} / {overload['sent'] - overload['ok']}",
         "all", refused > 0 and refused == overload["sent"] - overload["ok"]),
        ("overload: transport refusals answered at once (p99)", f"{ms(transport_refused['p99_ms'])} ms", "<= 50 ms",
         transport_refused["n"] == 0 or transport_refused["p99_ms"] <= 50),
        ("overload: service refusals (p99, incl. the bounded pending queue)", f"{ms(service_refused['p99_ms'])} ms",
         "<= 1000 ms", service_refused["n"] == 0 or service_refused["p99_ms"] <= 1000),
        ("overload: refusals with code RESOURCE_EXHAUSTED", f"{service_refused['n'] / max(refused, 1):.0%}", "100%",
         refused > 0 and service_refused["n"] == refused),
        ("overload: other errors or unanswered", str(other_errors), "0", other_errors == 0),
        ("overload: generator send lag p99 (not the bottleneck)", f"{overload['send_lag_p99_ms']:.1f} ms", "<= 50 ms",
         overload["send_lag_p99_ms"] <= 50),
        ("overload: peak RSS / RSS before", f"{peak / before:.2f}", "<= 1.5", peak / before <= 1.5),
        ("recovery after the load stops", f"{recovered:.2f} s", "<= 1 s", recovered <= 1.0),
        ("soak: failed requests outside shedding", str(soak_failures), "0", soak_failures == 0),
        ("soak: snapshots hot-swapped", f"{reloads} upserts from v{base_version}, final v{final_version}",
         f"v{base_version + reloads}", final_version == base_version + reloads),
        ("soak: RSS growth 2nd -> last window", f"{growth:+.1%}", "< 5%", growth < 0.05),
    ]
    print()
    print(table(["bar", "measured", "target", "met"], [[a, b, c, "yes" if d else "NO"] for a, b, c, d in checks]))
    write_json(args.json, {"date": now(), "machine": machine(), "quick": args.quick, "capacity_qps": capacity,
                           "overload": overload, "recovery_s": recovered, "rss_before": before, "rss_peak": peak,
                           "soak": soak, "soak_reloads": reloads, "final_version": final_version,
                           "rss_growth": growth, "bars_met": all(c[3] for c in checks)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
