"""Which product fields to embed: nDCG@10 / Recall@100 on the fashion dev queries per composition.

Command:
    .venv/bin/python bench/text_composition.py [--quick] [--json PATH]

Encodes the whole fashion catalog (44,432 products) with the INT8 encoder once
per composition and searches exactly (the ranking, not the index, is what is
compared). Recall@100 is over grade-2 products. --quick: 5,000 products and 100
queries (figures not comparable with the full run).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import FASHION, MODEL_DIR, exact_top_k, fashion_products, machine, now, table, to_product, write_json  # noqa: E402
from indexer.text import compose_text  # noqa: E402
from search.encoder import OnnxEncoder  # noqa: E402
from search.evaluation import evaluate, read_qrels, read_queries  # noqa: E402

COMPOSITIONS = {
    "title": ("title",),
    "title+category": ("title", "category"),
    "title+category+brand+colour": ("title", "category", "brand", "attrs.base_colour"),
    "title+category+brand+colour+gender+usage": ("title", "category", "brand", "attrs.base_colour", "attrs.gender", "attrs.usage"),
    "title+category+colour+gender": ("title", "category", "attrs.base_colour", "attrs.gender"),
    "title+category+brand+colour+description": ("title", "category", "brand", "attrs.base_colour", "description"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 products, 100 queries")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--only", help="comma-separated composition names to run")
    args = parser.parse_args(argv)
    rng = random.Random(3)
    products = [to_product(p) for p in fashion_products()]
    queries = read_queries(FASHION / "queries_dev.tsv")
    qrels = read_qrels(FASHION / "qrels_dev.tsv")
    if args.quick:
        products = rng.sample(products, 5000)
        queries = {q: queries[q] for q in rng.sample(sorted(queries), 100)}
    encoder = OnnxEncoder(MODEL_DIR, threads=2)
    qids = list(queries)
    query_vectors = encoder.encode([queries[q] for q in qids])
    names = args.only.split(",") if args.only else list(COMPOSITIONS)
    results = {}
    for name in names:
        fields = COMPOSITIONS[name]
        started = time.perf_counter()
        docs = encoder.encode([compose_text(p, fields) for p in products])
        seconds = time.perf_counter() - started
        top = exact_top_k(docs, query_vectors, 100)
        run = {q: [products[i].id for i in row] for q, row in zip(qids, top)}
        results[name] = {**evaluate(run, qrels, recall_min_grade=2).to_dict(), "fields": list(fields), "encode_s": round(seconds, 1)}
        print(f"{name}: {results[name]}", file=sys.stderr)
    print(f"\nText composition, fashion dev, INT8, exact search, {now()}, {machine()}{' (quick)' if args.quick else ''}\n")
    print(table(["composition", "nDCG@10", "Recall@100 (grade 2)", "encode s"],
                [[n, r["ndcg@10"], r["recall@100"], r["encode_s"]] for n, r in results.items()]))
    write_json(args.json, {"date": now(), "machine": machine(), "quick": args.quick, "products": len(products),
                           "queries": len(qids), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
