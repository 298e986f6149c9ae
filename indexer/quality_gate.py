"""The quality gate: score a candidate snapshot on labeled queries before it is published.

nDCG@10 and Recall@100 of the candidate go into its manifest. When the parent
snapshot was scored on the same query set, a drop of nDCG@10 beyond the
margin refuses the publish, unless the caller explicitly allows it. This is
what makes "monitor and retrain" routine: a re-ingest, a model change or an
index change that ranks worse cannot go live by accident.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from search.encoder import Encoder
from search.errors import SemsearchError
from search.evaluation import evaluate, read_qrels, read_queries
from search.index import VectorIndex


class QualityGateError(SemsearchError):
    """The candidate ranks worse than its parent by more than the margin."""

    status = "FAILED_PRECONDITION"


@dataclass(frozen=True, kw_only=True)
class LabeledQueries:
    """A BEIR-style query set: ``queries.tsv`` (id, text) and ``qrels.tsv`` (query id, doc id, grade)."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    set_id: str  # hash of both files: scores are comparable only on the same set

    @classmethod
    def load(cls, queries_path: Path, qrels_path: Path) -> LabeledQueries:
        digest = hashlib.sha256()
        for path in (queries_path, qrels_path):
            digest.update(Path(path).read_bytes())
        queries = read_queries(queries_path)
        qrels = read_qrels(qrels_path)
        return cls(queries={q: t for q, t in queries.items() if q in qrels}, qrels=qrels, set_id=digest.hexdigest()[:16])


def score(index: VectorIndex, product_ids: Sequence[str], encoder: Encoder, labeled: LabeledQueries,
          *, recall_min_grade: int = 1) -> dict[str, Any]:
    """nDCG@10 and Recall@100 of ``index`` (rows = ``product_ids``) on ``labeled``, exact or ANN as built."""
    qids = list(labeled.queries)
    if not qids or index.ntotal == 0:
        return {"ndcg@10": 0.0, "recall@100": 0.0, "queries": 0, "query_set": labeled.set_id}
    vectors = encoder.encode([labeled.queries[q] for q in qids])
    _, rows = index.search(vectors, min(100, index.ntotal))
    ids = np.asarray(product_ids, dtype=object)
    run = {q: [ids[r] for r in row if r >= 0] for q, row in zip(qids, rows)}
    quality = evaluate(run, labeled.qrels, recall_min_grade=recall_min_grade)
    return {**quality.to_dict(), "query_set": labeled.set_id}


def check(candidate: dict[str, Any], parent: dict[str, Any] | None, *, margin: float, allow_drop: bool) -> str | None:
    """Raise QualityGateError when nDCG@10 fell by more than ``margin`` against ``parent``.

    Returns a note when the drop was allowed or the parent cannot be compared, else None.
    """
    if parent is None or parent.get("query_set") != candidate["query_set"]:
        return "quality gate: no parent score on this query set to compare with"
    drop = float(parent["ndcg@10"]) - float(candidate["ndcg@10"])
    if drop <= margin:
        return None
    message = (
        f"quality gate: nDCG@10 {candidate['ndcg@10']:.4f} is {drop:.4f} below the parent's "
        f"{parent['ndcg@10']:.4f} (margin {margin})"
    )
    if allow_drop:
        return message + "; published anyway (--allow-quality-drop)"
    raise QualityGateError(message + "; nothing was published (override with --allow-quality-drop)")
