"""Embedding-cache benchmark: hit ratio per tier, encoder work saved and lookup latency on a query stream.

Command:
    .venv/bin/python bench/cache_hit_ratio.py [--quick] [--json PATH] [--csv PATH] [--plot PATH] [--stream FILE]

Replays the stream (default: the 100,000-line Zipf stream of the fashion dev
set; --quick: its first 10,000 lines) line by line, in order, through the real
cache classes: ``search.normalize.normalize`` (or the raw line, untouched, as
the key text: "raw"), ``search.cache.embedding_key``, ``L1Cache`` (LRU bounded
in bytes, ``entry_nbytes`` accounting), the diskcache-backed ``L2Cache`` on
real files in a temporary folder (1 GiB, the service default), composed by
``LayeredCache``. Configurations: no cache; L1 only at 256 / 1k / 4k / 16k /
64k entries' worth of bytes; L2 only; L1 + L2 at the same L1 sizes; each with
and without normalization.

Misses are not re-encoded (that would make the run hours long). The INT8
encoder's cost per miss is measured once on this machine: 200 distinct
normalized stream queries (fixed seed), encoded one at a time with
``OnnxEncoder`` at 1 intra-op thread (so the calling thread's CPU time is the
whole cost), after 20 warm-up queries. Each miss is then charged that
measured cost: the totals use the mean CPU time; the latency percentiles
charge a miss the measured wall time of one of the 200 (picked by the key's
hash, so a query always costs the same). What is stored on a miss is a real
INT8 vector (one of those 200 encodings, picked the same way): vector
contents do not change hit ratios, and every entry has the real size, so L1
and L2 byte accounting is real. After each miss the L2 write-behind is
flushed, so a replay is deterministic (the service writes L2 in the
background; a repeat arriving before that write would miss L2 once more).

Latency: "lookup" times the real ``LayeredCache.get`` call only (for a miss:
L1 and L2 both probed); "embed" adds the charged encode wall time to misses.
Neither includes normalization (its cost per request is reported apart) nor
the ``put`` (L1 put is microseconds; the L2 write is off the request path).

Restart: the first half of the stream is replayed, the process "restarts"
(L1 empty; L2 closed and reopened on a copy of the same folder), and the
second half is replayed. The uninterrupted run continues on the same caches.
Steady state: the hit ratio over the last 10,000 requests of the
uninterrupted run (--quick: the last 2,500).
Bars: normalization raises the L1 + L2 overall hit ratio by >= 10 points at
every L1 size; after a warm restart L1 + L2 reaches >= 90% of its steady-state
hit ratio within the first 1,000 requests (normalized keys, every L1 size).
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import FASHION, MODEL_DIR, REPO, machine, now, save_figure, table, write_json  # noqa: E402
from search.cache import L1Cache, LayeredCache, embedding_key, entry_nbytes  # noqa: E402
from search.encoder import OnnxEncoder  # noqa: E402
from search.l2_cache import L2Cache  # noqa: E402
from search.normalize import NORMALIZATION_VERSION, normalize  # noqa: E402

L1_ENTRIES = (256, 1024, 4096, 16384, 65536)
L2_BYTES = 1 << 30  # the service default (search/config.py l2_bytes)
SAMPLE = 200
WARMUP = 20
FIRST = 1000  # requests after a (re)start whose hit ratio is reported
MISS, L1, L2 = 0, 1, 2
_TIER = {"miss": MISS, "l1": L1, "l2": L2}


@dataclass(frozen=True)
class Config:
    normalized: bool
    l1_entries: int | None  # None: no L1
    l2: bool

    @property
    def kind(self) -> str:
        return {(False, False): "none", (True, False): "L1", (False, True): "L2", (True, True): "L1+L2"}[
            (self.l1_entries is not None, self.l2)
        ]

    @property
    def name(self) -> str:
        size = f" {self.l1_entries}" if self.l1_entries is not None else ""
        return f"{self.kind}{size} {'norm' if self.normalized else 'raw'}"


@dataclass(frozen=True)
class EncodeCost:
    cpu_s: np.ndarray  # per sampled query, thread CPU seconds
    wall_s: np.ndarray
    vectors: np.ndarray  # (SAMPLE, dimension) real INT8 encodings

    def pick(self, key: str) -> int:
        return int(key[-8:], 16) % len(self.vectors)


@dataclass
class Trace:
    """Per-request outcome of one replay: the tier that answered and the get() time."""

    tiers: np.ndarray
    lookup_s: np.ndarray
    charge_s: np.ndarray  # the charged encode wall time (0 for hits)

    def hit_ratio(self, start: int = 0, stop: int | None = None) -> float:
        return float((self.tiers[start:stop] != MISS).mean())


def read_stream(path: Path, limit: int | None) -> list[str]:
    # The stream's README: strip only the final newline; edge spaces are part of the query.
    with open(path, encoding="utf-8", newline="\n") as handle:
        lines = [line[:-1] if line.endswith("\n") else line for line in handle]
    return lines[:limit] if limit else lines


def measure_encoder(texts: list[str]) -> tuple[EncodeCost, str]:
    """The per-query cost and real vectors of the INT8 encoder, and its fingerprint."""
    encoder = OnnxEncoder(MODEL_DIR, variant="int8", threads=1)
    rng = random.Random(5)
    distinct = sorted(set(texts))
    picked = rng.sample(distinct, min(len(distinct), SAMPLE + WARMUP))
    for text in picked[:WARMUP]:  # warm-up, excluded
        encoder.encode_one(text)
    cpu, wall, vectors = [], [], []
    for text in picked[WARMUP:]:
        c, w = time.thread_time(), time.perf_counter()
        vectors.append(encoder.encode_one(text))
        wall.append(time.perf_counter() - w)
        cpu.append(time.thread_time() - c)
    return EncodeCost(np.array(cpu), np.array(wall), np.stack(vectors).astype(np.float32)), encoder.fingerprint


def replay(cache: LayeredCache, keys: list[str], cost: EncodeCost) -> Trace:
    n = len(keys)
    tiers, lookup, charge = np.empty(n, np.int8), np.empty(n), np.zeros(n)
    for i, key in enumerate(keys):
        started = time.perf_counter()
        vector, tier = cache.get(key)
        lookup[i] = time.perf_counter() - started
        tiers[i] = _TIER[tier]
        if vector is None:
            pick = cost.pick(key)
            charge[i] = cost.wall_s[pick]
            cache.put(key, cost.vectors[pick])
            cache.flush()
    return Trace(tiers, lookup, charge)


def run_config(config: Config, keys: list[str], cost: EncodeCost, entry_bytes: int, work: Path) -> dict:
    """The uninterrupted replay and the restart replay (second half after a restart)."""
    half = len(keys) // 2

    def l1() -> L1Cache | None:
        return L1Cache(config.l1_entries * entry_bytes) if config.l1_entries is not None else None

    folder = work / config.name.replace(" ", "-")
    restart_folder = folder.with_name(folder.name + "-restart")
    dimension = cost.vectors.shape[1]

    def l2(directory: Path) -> L2Cache | None:
        return L2Cache(directory, L2_BYTES, dimension=dimension) if config.l2 else None

    l1_tier = l1()
    cache = LayeredCache(l1_tier, l2(folder))
    first = replay(cache, keys[:half], cost)
    cache.close()
    if config.l2:
        shutil.copytree(folder, restart_folder)
    # Uninterrupted: the same L1 object, L2 reopened on the same folder (same contents).
    l2_tier = l2(folder)
    cache = LayeredCache(l1_tier, l2_tier)
    second = replay(cache, keys[half:], cost)
    l1_stats = l1_tier.stats() if l1_tier is not None else None
    l2_bytes = l2_tier.stats().bytes if l2_tier is not None else 0
    cache.close()
    whole = Trace(*(np.concatenate([getattr(first, f), getattr(second, f)]) for f in ("tiers", "lookup_s", "charge_s")))
    warm = LayeredCache(l1(), l2(restart_folder))
    restarted = replay(warm, keys[half:], cost)
    warm.close()
    for path in (folder, restart_folder):
        shutil.rmtree(path, ignore_errors=True)
    return {"whole": whole, "second": second, "restart": restarted, "l1_bytes": l1_stats.bytes if l1_stats else 0,
            "l1_evictions": l1_stats.evictions if l1_stats else 0, "l2_bytes": l2_bytes}


def summarize(trace: Trace, cost: EncodeCost) -> dict:
    n = len(trace.tiers)
    misses = int((trace.tiers == MISS).sum())
    cpu = float(cost.cpu_s.mean())
    lookup_us = trace.lookup_s * 1e6
    embed_us = (trace.lookup_s + trace.charge_s) * 1e6
    return {
        "requests": n,
        "hit_l1": float((trace.tiers == L1).mean()),
        "hit_l2": float((trace.tiers == L2).mean()),
        "hit": trace.hit_ratio(),
        "first_1000_hit": trace.hit_ratio(0, FIRST),
        "encoder_calls": misses,
        "encoder_cpu_s": misses * cpu,
        "encoder_cpu_saved_s": (n - misses) * cpu,
        "lookup_p50_us": float(np.percentile(lookup_us, 50)),
        "lookup_p99_us": float(np.percentile(lookup_us, 99)),
        "embed_p50_us": float(np.percentile(embed_us, 50)),
        "embed_p99_us": float(np.percentile(embed_us, 99)),
    }


def plot(path: Path, results: dict[str, dict], ceilings: dict[str, float], entry_bytes: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for kind, style in (("L1", "--"), ("L1+L2", "-")):
        for norm, colour in (("norm", "tab:blue"), ("raw", "tab:orange")):
            ys = [results[f"{kind} {n} {norm}"]["cold"]["hit"] for n in L1_ENTRIES]
            ax.plot(L1_ENTRIES, ys, style, marker="o", color=colour, label=f"{kind}, {'normalized' if norm == 'norm' else 'raw'}")
    for norm, colour in (("norm", "tab:blue"), ("raw", "tab:orange")):
        ax.axhline(results[f"L2 {norm}"]["cold"]["hit"], color=colour, linestyle=":", label=f"L2 only, {norm}")
        ax.axhline(ceilings[norm], color=colour, linestyle="-.", linewidth=0.8, alpha=0.6,
                   label=f"unbounded exact-match ceiling, {norm}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(L1_ENTRIES)
    ax.set_xticklabels([f"{n}\n{n * entry_bytes / 2**20:.1f} MiB" for n in L1_ENTRIES])
    ax.set_xlabel("L1 size (entries of a 384-d float32 vector; bytes)")
    ax.set_ylabel("overall hit ratio (cold start, whole stream)")
    ax.set_title("Embedding cache hit ratio on the Zipf query stream")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first 10,000 lines of the stream, under a minute")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--csv", metavar="PATH", help="write one row per configuration and mode as CSV")
    parser.add_argument("--plot", metavar="PATH", default=str(REPO / "bench" / "out" / "cache_hit_ratio.png"),
                        help="PNG of hit ratio against L1 size (default bench/out/cache_hit_ratio.png)")
    parser.add_argument("--stream", metavar="FILE", default=str(FASHION / "query_stream_dev.txt"),
                        help="one raw query per line (default: the fashion Zipf stream)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    lines = read_stream(Path(args.stream), 10_000 if args.quick else None)
    steady_window = 2_500 if args.quick else 10_000

    memo: dict[str, str] = {}
    norm_started = time.perf_counter()
    for line in lines:
        if line not in memo:
            memo[line] = normalize(line)
    normalize_us = (time.perf_counter() - norm_started) / len(memo) * 1e6
    normalized = [memo[line] for line in lines]
    if not all(normalized):
        raise SystemExit("the stream has lines that normalize to nothing (the service rejects them); remove them")
    cost, fingerprint = measure_encoder(normalized)
    # Raw keys carry version 0: the key text skipped normalization.
    keys = {"norm": [embedding_key(fingerprint, NORMALIZATION_VERSION, t) for t in normalized],
            "raw": [embedding_key(fingerprint, 0, line) for line in lines]}
    entry_bytes = entry_nbytes(keys["norm"][0], cost.vectors[0])
    ceilings = {"norm": 1 - len(set(normalized)) / len(lines), "raw": 1 - len(set(lines)) / len(lines)}

    configs = [Config(normalized=norm, l1_entries=size, l2=l2)
               for norm in (True, False)
               for size, l2 in [(None, False), *((s, False) for s in L1_ENTRIES), (None, True), *((s, True) for s in L1_ENTRIES)]]
    results: dict[str, dict] = {}
    work = Path(tempfile.mkdtemp(prefix="semsearch-bench-cache-"))
    try:
        for config in configs:
            out = run_config(config, keys["norm" if config.normalized else "raw"], cost, entry_bytes, work)
            whole = out["whole"]
            results[config.name] = {
                "kind": config.kind, "normalized": config.normalized, "l1_entries": config.l1_entries,
                "l1_max_bytes": (config.l1_entries or 0) * entry_bytes, "l2": config.l2,
                "l1_bytes_end": out["l1_bytes"], "l1_evictions": out["l1_evictions"], "l2_bytes_end": out["l2_bytes"],
                "cold": summarize(whole, cost),
                "uninterrupted_second_half": summarize(out["second"], cost),
                "restart": summarize(out["restart"], cost),
                "steady": whole.hit_ratio(len(lines) - steady_window),
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started

    print(f"\nEmbedding cache benchmark, {now()}, {machine()}{' (quick)' if args.quick else ''}\n")
    print(f"Stream: {args.stream}, {len(lines):,} requests; distinct raw {len(set(lines)):,}, "
          f"normalized {len(set(normalized)):,}; unbounded exact-match ceiling: raw {ceilings['raw']:.4f}, "
          f"normalized {ceilings['norm']:.4f}. One L1 entry = {entry_bytes} B (entry_nbytes); L2 = real "
          f"diskcache files, {L2_BYTES >> 20} MiB bound.")
    print(f"Encoder cost per miss, measured once (INT8 ONNX, 1 thread, {len(cost.cpu_s)} distinct stream queries, "
          f"one at a time): CPU mean {cost.cpu_s.mean() * 1e3:.2f} ms, wall p50 {np.percentile(cost.wall_s, 50) * 1e3:.2f} ms, "
          f"p99 {np.percentile(cost.wall_s, 99) * 1e3:.2f} ms. Misses are charged this cost, not re-encoded; stored "
          f"vectors are real INT8 encodings of those queries. normalize(): {normalize_us:.1f} us per query.\n")
    headers = ["config", "L1 max MiB", "L1 used MiB", "L2 MiB", "hit L1", "hit L2", "hit", "encoder calls", "encoder CPU s", "CPU saved s",
               "lookup p50 us", "lookup p99 us", "embed p50 us", "embed p99 us", "first 1k hit"]

    def row(name: str, r: dict, mode: str) -> list:
        s = r[mode]
        return [name, f"{r['l1_max_bytes'] / 2**20:.1f}" if r["l1_entries"] else "-",
                f"{r['l1_bytes_end'] / 2**20:.1f}" if r["l1_entries"] else "-",
                f"{r['l2_bytes_end'] / 2**20:.1f}" if r["l2"] else "-", s["hit_l1"], s["hit_l2"], s["hit"], s["encoder_calls"],
                s["encoder_cpu_s"], s["encoder_cpu_saved_s"], s["lookup_p50_us"], s["lookup_p99_us"],
                s["embed_p50_us"], s["embed_p99_us"], s["first_1000_hit"]]

    print("Cold start, whole stream (lookup = the real get() calls; embed = lookup + charged encode wall time "
          "for misses):\n")
    print(table(headers, [row(name, r, "cold") for name, r in results.items()]))
    print(f"\nWarm restart: second half ({len(lines) - len(lines) // 2:,} requests) after a restart (L1 empty, "
          f"L2 kept) vs the same requests uninterrupted; steady = last {steady_window:,} requests uninterrupted:\n")
    rrows = []
    for name, r in results.items():
        restart, cont = r["restart"], r["uninterrupted_second_half"]
        rrows.append([name, restart["hit_l1"], restart["hit_l2"], restart["hit"], cont["hit"], restart["first_1000_hit"],
                      cont["first_1000_hit"], r["steady"], restart["first_1000_hit"] / r["steady"] if r["steady"] else 0.0,
                      restart["encoder_calls"], cont["encoder_calls"]])
    print(table(["config", "hit L1", "hit L2", "hit", "hit uninterrupted", "first 1k hit", "first 1k uninterrupted",
                 "steady", "first 1k / steady", "encoder calls", "encoder calls uninterrupted"], rrows))

    gains = {n: results[f"L1+L2 {n} norm"]["cold"]["hit"] - results[f"L1+L2 {n} raw"]["cold"]["hit"] for n in L1_ENTRIES}
    recovery = {n: results[f"L1+L2 {n} norm"]["restart"]["first_1000_hit"] / results[f"L1+L2 {n} norm"]["steady"]
                for n in L1_ENTRIES}
    worst_gain, worst_recovery = min(gains, key=gains.get), min(recovery, key=recovery.get)
    print("\nNormalization gain, L1+L2, by L1 entries: "
          + ", ".join(f"{n}: {g * 100:+.1f} pt" for n, g in gains.items()))
    checks = [
        ("normalization gain in overall hit ratio, L1+L2 (worst L1 size)",
         f"{gains[worst_gain] * 100:+.1f} pt (L1 {worst_gain})", ">= +10 pt", gains[worst_gain] >= 0.10),
        ("warm restart, L1+L2 norm: first 1,000 hit ratio / steady (worst L1 size)",
         f"{recovery[worst_recovery]:.3f} (L1 {worst_recovery})", ">= 0.90", recovery[worst_recovery] >= 0.90),
    ]
    print()
    print(table(["bar", "measured", "target", "met"], [[a, b, c, "yes" if d else "NO"] for a, b, c, d in checks]))
    print(f"\n({elapsed:.0f} s)")

    if args.plot:
        plot(Path(args.plot), results, ceilings, entry_bytes)
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            fields = list(next(iter(results.values()))["cold"])
            writer.writerow(["config", "kind", "normalized", "l1_entries", "l1_max_bytes", "l2", "mode", *fields, "steady"])
            for name, r in results.items():
                for mode in ("cold", "uninterrupted_second_half", "restart"):
                    writer.writerow([name, r["kind"], r["normalized"], r["l1_entries"] or 0, r["l1_max_bytes"], r["l2"],
                                     mode, *(r[mode][f] for f in fields), r["steady"]])
    write_json(args.json, {
        "date": now(), "machine": machine(), "quick": args.quick, "stream": args.stream, "requests": len(lines),
        "distinct_raw": len(set(lines)), "distinct_normalized": len(set(normalized)), "ceilings": ceilings,
        "entry_bytes": entry_bytes, "l2_max_bytes": L2_BYTES, "steady_window": steady_window,
        "normalize_us_per_query": normalize_us,
        "encoder": {"variant": "int8", "threads": 1, "sample": len(cost.cpu_s), "cpu_mean_ms": float(cost.cpu_s.mean() * 1e3),
                    "wall_p50_ms": float(np.percentile(cost.wall_s, 50) * 1e3),
                    "wall_p99_ms": float(np.percentile(cost.wall_s, 99) * 1e3), "charged_not_reencoded": True},
        "results": results, "normalization_gain": {str(k): v for k, v in gains.items()},
        "restart_recovery": {str(k): v for k, v in recovery.items()},
        "bars_met": all(c[3] for c in checks), "seconds": elapsed,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
