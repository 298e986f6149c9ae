"""Catalog changes -> a new published snapshot: ingest, upsert, delete, rebuild.

Every change builds a complete snapshot in a staging folder and publishes it
atomically (indexer/snapshots.py). Product vectors are kept by the hash of
the text they embed and the model fingerprint (indexer/vector_cache.py), so
unchanged products are never encoded again and vectors of another model are
never mixed in: after a model change every product is re-encoded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import numpy as np

from indexer.catalog import BadRow, Limits, read_catalog
from indexer.config import IndexerSettings
from indexer.drift_reference import build_reference
from indexer.progress import Progress
from indexer.quality_gate import LabeledQueries, check, score
from indexer.snapshots import publish, staging
from indexer.text import compose_text
from indexer.vector_cache import VectorCache, text_key
from search.config import Paths
from search.encoder import Encoder, OnnxEncoder
from search.drift import REFERENCE_FILE
from search.errors import InvalidArgument, SnapshotError, Unavailable
from search.index import IndexSpec, VectorIndex, build_index, choose_spec, write_index
from search.model_card import ModelCard, load_card
from search.product import Product
from search.product_store import write_product_store
from search.snapshot import INDEX_FILE, STORE_FILE, open_snapshot
from search.snapshot_dir import current_path, current_version

log = logging.getLogger(__name__)

VECTOR_CACHE = "vectors.sqlite"
ENCODE_CHUNK = 1024  # vectors are stored after each chunk, so a crash keeps finished work


@dataclass(frozen=True)
class _Base:
    """What a command read of the live snapshot before changing it."""

    version: int | None
    manifest: dict | None
    products: list[Product]


@dataclass
class ChangeReport:
    """What one command did. ``version`` is None when nothing changed."""

    operation: str
    products: int
    version: int | None = None
    encoded: int = 0
    reused: int = 0
    bad_rows: int = 0
    rows: int = 0
    not_found: list[str] = field(default_factory=list)
    seconds: float = 0.0
    encode_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        head = (
            f"{self.operation}: snapshot v{self.version} published"
            if self.version is not None
            else f"{self.operation}: no change, current snapshot kept"
        )
        rate = self.products / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{head}; {self.products} products, {self.encoded} encoded, {self.reused} reused, "
            f"{self.bad_rows} bad rows; {self.seconds:.1f}s ({rate:.0f} products/s)"
        )


def _catalog_hash(products: Sequence[Product], texts: Sequence[str], fingerprint: str, spec: IndexSpec) -> str:
    """Identifies a snapshot's content: same hash, same snapshot."""
    digest = hashlib.sha256(json.dumps([fingerprint, spec.to_dict()], sort_keys=True).encode())
    for product, text in zip(products, texts):
        record = [product.id, product.title, product.description, product.category, product.brand,
                  product.price, product.in_stock, dict(product.attrs), text]
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


class Indexer:
    """Applies catalog changes to the index directory ``paths.index_dir``."""

    def __init__(
        self,
        paths: Paths,
        settings: IndexerSettings,
        *,
        encoder_factory: Callable[[ModelCard], Encoder] | None = None,
        stderr: TextIO | None = None,
        allow_quality_drop: bool = False,
        text_fields_override: tuple[str, ...] | None = None,
    ) -> None:
        self.paths = paths
        self.settings = settings
        self.allow_quality_drop = allow_quality_drop
        self.text_fields_override = text_fields_override
        self._encoder: Encoder | None = None
        self.stderr = stderr if stderr is not None else sys.stderr
        self._encoder_factory = encoder_factory or (
            lambda card: OnnxEncoder(card.path, threads=settings.encoder_threads, batch_size=settings.encode_batch_size)
        )

    # -- commands -------------------------------------------------------

    def ingest(self, catalog: Path, *, max_bad: int | None = None) -> ChangeReport:
        """Make ``catalog`` the whole catalog."""
        base = self._current()
        products, bad, rows = self._read(catalog, max_bad)
        if not products:
            raise InvalidArgument(f"{catalog}: no valid products ({len(bad)} bad rows); nothing was published")
        return self._publish("ingest", products, base, source=str(catalog), bad=len(bad), rows=rows)

    def upsert(self, catalog: Path, *, max_bad: int | None = None) -> ChangeReport:
        """Add the products of ``catalog``, replacing those with the same id."""
        base = self._current(with_products=True)
        products, bad, rows = self._read(catalog, max_bad)
        current = base.products
        position = {p.id: i for i, p in enumerate(current)}
        merged = list(current)
        for product in products:
            if product.id in position:
                merged[position[product.id]] = product
            else:
                position[product.id] = len(merged)
                merged.append(product)
        if not merged:
            raise InvalidArgument(f"{catalog}: no valid products ({len(bad)} bad rows); nothing was published")
        return self._publish("upsert", merged, base, source=str(catalog), bad=len(bad), rows=rows)

    def delete(self, ids: Sequence[str]) -> ChangeReport:
        """Remove the products with these ids; unknown ids are reported, not an error."""
        base = self._current(with_products=True, required=True)
        doomed = set(ids)
        known = {p.id for p in base.products}
        kept = [p for p in base.products if p.id not in doomed]
        report = self._publish("delete", kept, base, source=f"{len(doomed)} ids", bad=0, rows=len(doomed))
        report.not_found = sorted(doomed - known)
        return report

    def rebuild(self, spec: IndexSpec) -> ChangeReport:
        """Rebuild the current catalog with another index type or parameters, without encoding."""
        base = self._current(with_products=True, required=True)
        return self._publish("rebuild", base.products, base, source="current snapshot", bad=0, rows=0, spec=spec)

    # -- steps ----------------------------------------------------------

    def _read(self, catalog: Path, max_bad: int | None) -> tuple[list[Product], list[BadRow], int]:
        bad: list[BadRow] = []

        def report(row: BadRow) -> None:
            bad.append(row)
            print(f"skipped {row}", file=self.stderr)

        limit = self.settings.max_bad if max_bad is None else max_bad
        products = list(read_catalog(catalog, limits=Limits(), max_bad=limit, on_bad=report))
        return products, bad, len(products) + len(bad)

    def _current(self, *, with_products: bool = False, required: bool = False) -> _Base:
        """The live snapshot's version, manifest and (optionally) products, read together."""
        path = current_path(self.paths.index_dir)
        if path is None:
            if required:
                raise Unavailable(f"no snapshot in {self.paths.index_dir} yet; run: semsearch-index ingest CATALOG")
            return _Base(version=None, manifest=None, products=[])
        snapshot = open_snapshot(path, verify=False)
        try:
            products = snapshot.store.get_many(range(len(snapshot.store))) if with_products else []
            return _Base(version=snapshot.version, manifest=snapshot.manifest, products=products)
        finally:
            snapshot.close()

    def _spec_for(self, n: int) -> IndexSpec:
        s = self.settings
        return choose_spec(n, exact_below=s.exact_below, m=s.hnsw_m, ef_construction=s.ef_construction, ef_search=s.ef_search)

    def _publish(
        self, operation: str, products: list[Product], base: _Base, *, source: str, bad: int, rows: int,
        spec: IndexSpec | None = None,
    ) -> ChangeReport:
        started = time.perf_counter()
        card = load_card(self.paths.model_dir)
        fingerprint = card.fingerprint("int8")
        previous = base.manifest
        fields, spec, explicit = self._carried_settings(operation, previous, len(products), spec)
        texts = [compose_text(p, fields) for p in products]
        catalog_hash = _catalog_hash(products, texts, fingerprint, spec)
        report = ChangeReport(operation=operation, products=len(products), bad_rows=bad, rows=rows)
        if previous is not None and previous.get("catalog_hash") == catalog_hash:
            report.reused = len(texts)
            report.seconds = time.perf_counter() - started
            return report
        if previous is not None and previous.get("model_fingerprint") != fingerprint:
            report.notes.append(
                f"model changed ({previous.get('model_fingerprint')} -> {fingerprint}): "
                "every product is encoded with the new model"
            )
        self.paths.index_dir.mkdir(parents=True, exist_ok=True)
        vectors = self._vectors(card, texts, report)
        with staging(self.paths.index_dir) as stage:
            # Under the writer lock: a change published since this command read
            # the catalog would otherwise be silently undone.
            if current_version(self.paths.index_dir) != base.version:
                raise SnapshotError(
                    f"{self.paths.index_dir} changed while this command ran (it read v{base.version}, "
                    f"now v{current_version(self.paths.index_dir)}); nothing was published, run it again"
                )
            index = build_index(vectors, spec)
            quality = self._quality_gate(card, index, spec, products, previous, report)
            write_index(index, stage / INDEX_FILE)
            write_product_store(stage / STORE_FILE, products)
            reference = build_reference(
                VectorIndex(index, spec), self._encoder_for(card), queries_path=self.settings.drift_queries,
                size=self.settings.drift_reference_size, no_hit_floor=self.settings.drift_no_hit_floor,
            )
            if reference is not None:
                reference.to_file(stage / REFERENCE_FILE)
            manifest = {
                "model_fingerprint": fingerprint,
                "dimension": card.dimension,
                "counts": {"products": len(products)},
                "index": spec.to_dict(),
                "text_fields": list(fields),
                "index_explicit": explicit,
                "catalog_hash": catalog_hash,
                "operation": {"kind": operation, "source": source, "encoded": report.encoded,
                              "reused": report.reused, "bad_rows": bad, "rows": rows},
            }
            if quality is not None:
                manifest["quality"] = quality
            path = publish(self.paths.index_dir, stage, manifest, keep=self.settings.keep_snapshots)
        report.version = int(path.name.lstrip("v"))
        report.seconds = time.perf_counter() - started
        return report

    def _carried_settings(
        self, operation: str, previous: dict | None, n: int, spec: IndexSpec | None
    ) -> tuple[tuple[str, ...], IndexSpec, bool]:
        """Text fields, index spec, and whether the spec was chosen explicitly.

        ``ingest`` applies the settings. Other changes keep what the live
        snapshot was built with: its text fields unless ``--text-fields`` was
        given, and an index spec set by ``rebuild`` until the next ingest.
        """
        if operation == "ingest" or previous is None:
            return self.settings.text_fields, spec or self._spec_for(n), spec is not None
        fields = self.text_fields_override or tuple(previous.get("text_fields") or self.settings.text_fields)
        if spec is not None:
            return fields, spec, True
        if previous.get("index_explicit"):
            return fields, IndexSpec.from_dict(previous["index"]), True
        return fields, self._spec_for(n), False

    def _encoder_for(self, card: ModelCard) -> Encoder:
        if self._encoder is None:
            self._encoder = self._encoder_factory(card)
        return self._encoder

    def _quality_gate(self, card: ModelCard, index: Any, spec: IndexSpec, products: list[Product],
                      previous: dict | None, report: ChangeReport) -> dict | None:
        """Score the candidate on the configured labeled queries; raises QualityGateError on a drop."""
        s = self.settings
        if s.quality_queries is None or s.quality_qrels is None:
            return None
        labeled = LabeledQueries.load(s.quality_queries, s.quality_qrels)
        quality = score(VectorIndex(index, spec), [p.id for p in products], self._encoder_for(card), labeled,
                        recall_min_grade=s.quality_recall_min_grade)
        parent = previous.get("quality") if previous is not None else None
        note = check(quality, parent, margin=s.quality_margin, allow_drop=self.allow_quality_drop)
        if note:
            report.notes.append(note)
        return quality

    def _vectors(self, card: ModelCard, texts: list[str], report: ChangeReport) -> np.ndarray:
        """One vector per text, from the cache or encoded now (and then cached)."""
        keys = [text_key(t) for t in texts]
        with VectorCache(self.paths.index_dir / VECTOR_CACHE, fingerprint=card.fingerprint("int8"),
                         dimension=card.dimension) as cache:
            found = cache.get_many(sorted(set(keys)))
            missing = {k: t for k, t in zip(keys, texts) if k not in found}
            report.reused = len(texts) - sum(1 for k in keys if k in missing)
            report.encoded = len(missing)
            if missing:
                encode_started = time.perf_counter()
                encoder = self._encoder_for(card)
                progress = Progress("encoding", len(missing), stream=self.stderr, unit="texts")
                items = list(missing.items())
                for start in range(0, len(items), ENCODE_CHUNK):
                    chunk = items[start : start + ENCODE_CHUNK]
                    vectors = encoder.encode([t for _, t in chunk])
                    cache.put_many(zip([k for k, _ in chunk], vectors))
                    found.update(zip([k for k, _ in chunk], vectors))
                    progress.update(len(chunk))
                progress.close()
                report.encode_seconds = time.perf_counter() - encode_started
        if not keys:
            return np.empty((0, card.dimension), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
