"""Helpers shared by the bench scripts: data sets, timing, tables, JSON."""

from __future__ import annotations

import gzip
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
FASHION = DATA / "myntra_fashion"
SCIFACT = DATA / "scifact"
WANDS = DATA / "wands_queries"
MODEL_DIR = REPO / "models" / "all-minilm-l6-v2"


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p99/mean in milliseconds."""
    ms = np.asarray(samples_s) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def timed(fn: Any, *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; floats get 3 significant decimals."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def save_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib figure as a PNG (folders made as needed) and free it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def fashion_products() -> list[dict[str, Any]]:
    return read_jsonl_gz(FASHION / "products.jsonl.gz")


def scifact_corpus() -> list[dict[str, Any]]:
    return read_jsonl_gz(SCIFACT / "corpus.jsonl.gz")


def wands_queries() -> list[str]:
    from search.evaluation import read_queries

    return list(read_queries(WANDS / "queries_dev.tsv").values())


def exact_top_k(doc_vectors: np.ndarray, query_vectors: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k best documents per query, by inner product (exact)."""
    scores = query_vectors @ doc_vectors.T
    top = np.argpartition(-scores, kth=min(k, scores.shape[1] - 1), axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def to_product(row: dict[str, Any]) -> Any:
    from search.product import Product

    return Product(
        id=str(row["id"]),
        title=row["title"],
        description=row.get("description") or "",
        category=row.get("category") or "",
        brand=row.get("brand") or "",
        price=row.get("price"),
        attrs=row.get("attrs") or {},
    )


@dataclass(frozen=True)
class Dataset:
    """A labeled retrieval set: documents, queries, graded qrels."""

    name: str
    fields: str  # what the document text is made of (part of the cache key)
    doc_ids: list[str]
    doc_texts: list[str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    recall_min_grade: int


def load_scifact(quick: bool) -> Dataset:
    """SciFact dev: title + abstract, binary labels (--quick: 40 queries, their docs and 200 others)."""
    import random

    from search.evaluation import read_qrels, read_queries

    rng = random.Random(11)
    corpus = scifact_corpus()
    queries = read_queries(SCIFACT / "queries_dev.tsv")
    qrels = read_qrels(SCIFACT / "qrels_dev.tsv")
    if quick:
        qids = rng.sample(sorted(q for q in queries if q in qrels), 40)
        keep = {d for q in qids for d in qrels[q]}
        chosen = [d for d in corpus if d["doc_id"] in keep] + rng.sample(corpus, 200)
        corpus = list({d["doc_id"]: d for d in chosen}.values())
        queries = {q: queries[q] for q in qids}
    return Dataset("scifact", "title. text", [d["doc_id"] for d in corpus],
                   [f"{d['title']}. {d['text']}" for d in corpus], queries, qrels, recall_min_grade=1)


def load_fashion(quick: bool) -> Dataset:
    """Fashion dev: the default text fields, graded labels, recall over grade 2 (--quick: 2,000 products, 100 queries)."""
    import random

    from indexer.text import DEFAULT_FIELDS, compose_text
    from search.evaluation import read_qrels, read_queries

    rng = random.Random(13)
    products = fashion_products()
    queries = read_queries(FASHION / "queries_dev.tsv")
    qrels = read_qrels(FASHION / "qrels_dev.tsv")
    if quick:
        products = rng.sample(products, 2000)
        queries = {q: queries[q] for q in rng.sample(sorted(queries), 100)}
    return Dataset("fashion", ",".join(DEFAULT_FIELDS), [str(p["id"]) for p in products],
                   [compose_text(to_product(p), DEFAULT_FIELDS) for p in products], queries, qrels, recall_min_grade=2)
