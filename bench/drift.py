"""Drift thresholds: PSI of query signals for same-domain and off-domain traffic.

Command:
    .venv/bin/python bench/drift.py [--quick] [--json PATH]

Against the bundled sample index (2,963 products, built if missing), computes
the five drift signals (search/drift.py) for: fashion dev queries (the
reference), catalog titles (the fallback the issue suggested), windows of 500
distinct normalized queries from the fashion query stream (what the live
window sees: repeats are answered by the result cache), and SciFact claims
(another domain). Prints PSI per signal for each (reference, live) pair; the
thresholds in search/drift.py (warn 0.5, alert 1.0) come from this table.
--quick: windows of 200.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import FASHION, MODEL_DIR, REPO, SCIFACT, machine, now, table, write_json  # noqa: E402
from bench.service import ensure_index  # noqa: E402
from search.drift import SIGNALS, psi, query_signals  # noqa: E402
from search.encoder import OnnxEncoder  # noqa: E402
from search.evaluation import read_queries  # noqa: E402
from search.normalize import normalize  # noqa: E402
from search.snapshot import open_current  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="windows of 200 queries")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = parser.parse_args(argv)
    size = 200 if args.quick else 500
    snapshot = open_current(ensure_index(True, REPO / "var" / "bench"))
    encoder = OnnxEncoder(MODEL_DIR)

    def signals(texts: list[str], drop_self: bool = False) -> np.ndarray:
        scores, ids = snapshot.index.search(encoder.encode(texts), 3)
        rows = []
        for text, row, row_ids, (tokens, unknown) in zip(texts, scores, ids, encoder.token_stats(texts)):
            kept = [s for s, i in zip(row, row_ids) if i >= 0][1:] if drop_self else list(row)
            rows.append(query_signals(kept, tokens, unknown, no_hit_floor=0.3))
        return np.asarray(rows)

    rng = random.Random(0)
    dev = rng.sample(list(read_queries(FASHION / "queries_dev.tsv").values()), size)
    stream = [normalize(line) for line in (FASHION / "query_stream_dev.txt").read_text(encoding="utf-8").splitlines()]
    windows = {}
    for start in (0, 30000, 70000):
        distinct: dict[str, None] = {}
        for query in stream[start:]:
            distinct.setdefault(query)
            if len(distinct) == size:
                break
        windows[f"stream distinct @{start}"] = signals(list(distinct))
    products = snapshot.store.get_many(rng.sample(range(snapshot.product_count), size))
    references = {"fashion dev queries": signals(dev), "catalog titles": signals([p.title for p in products], drop_self=True)}
    live = {**windows, "SciFact claims": signals(list(read_queries(SCIFACT / "queries_dev.tsv").values())[:size])}
    rows, figures = [], {}
    for ref_name, ref in references.items():
        for live_name, values in live.items():
            per = {name: psi(ref[:, i], values[:, i], 10) for i, name in enumerate(SIGNALS)}
            figures[f"{ref_name} | {live_name}"] = per
            rows.append([ref_name, live_name, *[f"{per[n]:.3f}" for n in SIGNALS], f"{max(per.values()):.3f}"])
    print(f"\nDrift PSI per signal, windows of {size}, {now()}, {machine()}\n")
    print(table(["reference", "live", *SIGNALS, "max"], rows))
    write_json(args.json, {"date": now(), "machine": machine(), "window": size, "psi": figures})
    snapshot.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
