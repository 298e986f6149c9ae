"""The indexer's settings: section ``[indexer]`` of the config file, ``SEMSEARCH_*`` overrides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from indexer.text import DEFAULT_FIELDS, parse_fields


@dataclass(frozen=True, kw_only=True)
class IndexerSettings:
    """How catalogs become snapshots. Defaults are measured: see bench/RESULTS.md."""

    text_fields: tuple[str, ...] = DEFAULT_FIELDS
    keep_snapshots: int = 5
    max_bad: int | None = 1000
    exact_below: int = 20_000
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    encode_batch_size: int = 32
    encoder_threads: int | None = None
    verify_sample: int = 500
    # The quality gate (off unless both files are set): BEIR-style queries and qrels.
    quality_queries: Path | None = None
    quality_qrels: Path | None = None
    quality_margin: float = 0.02
    quality_recall_min_grade: int = 1
    # Drift reference: queries that look like normal traffic (default: catalog titles).
    drift_queries: Path | None = None
    drift_reference_size: int = 500
    drift_no_hit_floor: float = 0.3

    def __post_init__(self) -> None:
        object.__setattr__(self, "text_fields", parse_fields(self.text_fields))
        if self.keep_snapshots < 1:
            raise ValueError(f"keep_snapshots must be >= 1, got {self.keep_snapshots}")
        if self.max_bad is not None and self.max_bad < 0:
            raise ValueError(f"max_bad must be >= 0, got {self.max_bad}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "encode_batch_size", "verify_sample"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.exact_below < 0:
            raise ValueError(f"exact_below must be >= 0, got {self.exact_below}")
        if (self.quality_queries is None) != (self.quality_qrels is None):
            raise ValueError("quality_queries and quality_qrels must be set together")
        if self.quality_margin < 0:
            raise ValueError(f"quality_margin must be >= 0, got {self.quality_margin}")
        if self.encoder_threads is not None and self.encoder_threads < 1:
            raise ValueError(f"encoder_threads must be >= 1, got {self.encoder_threads}")
