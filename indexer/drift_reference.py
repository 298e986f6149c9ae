"""The drift reference a snapshot carries: signals of reference queries against the candidate index.

Reference queries come from the configured file (one query per line, or a TSV
with a header whose second column is the query). Without one, no reference is
written and the service learns it from its first live queries. The catalog's
own titles are deliberately not used as a fallback: measured on the fashion
catalog, titles against real shopping queries give PSI 2.9 on top-1
similarity and 3.2 on length (titles are long and match a product almost
exactly), so every real query would look drifted (bench/RESULTS.md, "Drift").
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from search.drift import Reference, query_signals
from search.encoder import OnnxEncoder
from search.index import VectorIndex


def read_reference_queries(path: Path) -> list[str]:
    """Queries from a text file (one per line) or a TSV with a header (second column)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if Path(path).suffix == ".tsv":
        return [cols[1] for cols in (line.split("\t") for line in lines[1:]) if len(cols) > 1 and cols[1].strip()]
    return [line for line in lines if line.strip()]


def build_reference(index: VectorIndex, encoder: OnnxEncoder, *, queries_path: Path | None, size: int,
                    no_hit_floor: float, seed: int = 0) -> Reference | None:
    """Signals of up to ``size`` reference queries; None without queries or products."""
    if queries_path is None or index.ntotal < 2:
        return None
    queries = read_reference_queries(queries_path)
    texts = random.Random(seed).sample(queries, min(size, len(queries)))
    if len(texts) < 2:
        return None
    scores, _ = index.search(encoder.encode(texts), 2)
    samples = [query_signals(row, tokens, unknown, no_hit_floor=no_hit_floor)
               for row, (tokens, unknown) in zip(scores, encoder.token_stats(texts))]
    return Reference(samples=np.asarray(samples), source=f"queries from {Path(queries_path).name}")
