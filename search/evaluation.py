"""Ranking quality: nDCG@k and Recall@k against BEIR-style relevance labels.

nDCG uses gain 2^rel - 1 and a log2 discount, with the ideal DCG taken from
all labelled documents of the query (as trec_eval's ndcg_cut); for binary
labels this equals linear gain. Queries without any positive label are left
out of the means.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

Qrels = Mapping[str, Mapping[str, int]]  # query id -> doc id -> relevance grade


def read_queries(path: Path | str) -> dict[str, str]:
    """``id<TAB>text[<TAB>...]`` with a header row -> {id: text}."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows, None)
        return {row[0]: row[1] for row in rows if len(row) >= 2}


def read_qrels(path: Path | str) -> dict[str, dict[str, int]]:
    """BEIR qrels ``query-id<TAB>doc-id<TAB>score`` with a header row."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows, None)
        for row in rows:
            if len(row) >= 3:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))


def ndcg_at_k(ranked: Sequence[str], labels: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k of one ranking; 0.0 when the query has no positive label."""
    ideal = dcg(sorted((2**r - 1 for r in labels.values() if r > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([2 ** labels.get(doc, 0) - 1 for doc in ranked[:k]]) / ideal


def recall_at_k(ranked: Sequence[str], labels: Mapping[str, int], k: int = 100, *, min_grade: int = 1) -> float:
    """Share of the documents graded >= min_grade found in the top k."""
    relevant = {doc for doc, grade in labels.items() if grade >= min_grade}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


@dataclass(frozen=True)
class Quality:
    ndcg_at_10: float
    recall_at_100: float
    queries: int

    def to_dict(self) -> dict[str, float | int]:
        return {"ndcg@10": round(self.ndcg_at_10, 4), "recall@100": round(self.recall_at_100, 4), "queries": self.queries}


def evaluate(run: Mapping[str, Sequence[str]], qrels: Qrels, *, recall_min_grade: int = 1) -> Quality:
    """Mean nDCG@10 and Recall@100 over the queries of ``run`` that have positive labels."""
    judged = [qid for qid in run if any(g > 0 for g in qrels.get(qid, {}).values())]
    if not judged:
        return Quality(0.0, 0.0, 0)
    ndcg = sum(ndcg_at_k(run[q], qrels[q], 10) for q in judged) / len(judged)
    recall = sum(recall_at_k(run[q], qrels[q], 100, min_grade=recall_min_grade) for q in judged) / len(judged)
    return Quality(ndcg, recall, len(judged))


def ann_recall(exact_scores: np.ndarray, approximate_scores: np.ndarray, k: int, *, tolerance: float = 1e-5) -> float:
    """Recall@k of an approximate search against exact search, counting ties as found.

    A returned item counts when its score reaches the exact k-th score: in a
    catalog where many products share one text (hence one vector), comparing
    id sets would call an equally good product a miss.
    """
    kth = exact_scores[:, k - 1 : k]
    found = np.minimum((approximate_scores[:, :k] >= kth - tolerance).sum(axis=1), k)
    return float(found.mean() / k)
