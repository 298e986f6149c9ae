"""Encoder demo: embed the bundled sample catalog's titles and answer a few queries.

Run: .venv/bin/python scripts/encoder_demo.py [QUERY ...]
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

from search.encoder import OnnxEncoder

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    queries = argv or ["red running shoes", "womens kurta with palazzo", "analog watch steel strap"]
    with gzip.open(REPO / "data" / "myntra_sample" / "products.jsonl.gz", "rt", encoding="utf-8") as handle:
        products = [json.loads(line) for line in handle]
    encoder = OnnxEncoder(REPO / "models" / "all-minilm-l6-v2", threads=2)
    started = time.perf_counter()
    vectors = encoder.encode([p["title"] for p in products])
    print(f"encoded {len(products)} titles in {time.perf_counter() - started:.1f}s (INT8, fingerprint {encoder.fingerprint})")
    for query in queries:
        scores = vectors @ encoder.encode_one(query)
        print(f"\n{query!r}")
        for i in np.argsort(-scores)[:3]:
            print(f"  {scores[i]:.3f}  {products[i]['title']}  [{products[i]['category']}]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
