"""Read-only looks at the index directory, and rollback: status, list, verify, rollback."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.snapshots import set_current
from search.errors import SnapshotError, Unavailable
from search.evaluation import ann_recall
from search.snapshot import open_snapshot
from search.snapshot_dir import current_path, list_versions, read_manifest, snapshot_name, snapshots_dir


def _require_current(index_dir: Path) -> Path:
    path = current_path(index_dir)
    if path is None:
        raise Unavailable(f"no snapshot in {index_dir} yet; run: semsearch-index ingest CATALOG --index-dir {index_dir}")
    return path


def status(index_dir: Path) -> dict[str, Any]:
    """The current snapshot's manifest, less the per-file checksums."""
    manifest = read_manifest(_require_current(index_dir))
    return {k: v for k, v in manifest.items() if k != "files"}


def list_snapshots(index_dir: Path) -> list[dict[str, Any]]:
    """One line of facts per published snapshot, oldest first."""
    current = current_path(index_dir)
    rows = []
    for version in list_versions(index_dir):
        path = snapshots_dir(index_dir) / snapshot_name(version)
        try:
            manifest = read_manifest(path)
        except SnapshotError as err:
            rows.append({"version": version, "error": str(err), "current": path == current})
            continue
        rows.append(
            {
                "version": version,
                "current": path == current,
                "created": manifest.get("created"),
                "products": manifest.get("counts", {}).get("products"),
                "index": manifest.get("index", {}).get("kind"),
                "operation": manifest.get("operation", {}).get("kind"),
                "model": manifest.get("model_fingerprint"),
            }
        )
    return rows


def rollback(index_dir: Path, version: int) -> None:
    """Point CURRENT at an earlier (or later) published snapshot, after verifying it."""
    set_current(index_dir, version)


@dataclass
class Verification:
    version: int
    problems: list[str] = field(default_factory=list)
    products: int = 0
    recall_at_10: float | None = None
    sample: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(index_dir: Path, *, sample: int = 500, recall_floor: float = 0.95, seed: int = 0) -> Verification:
    """Checksums and counts of the current snapshot, and the ANN index's recall@10 against exact search.

    The recall sample uses stored product vectors as queries; products
    with the same vector tie, and a tie counts as found. A recall below
    ``recall_floor`` is reported as a problem.
    """
    path = _require_current(index_dir)
    manifest = read_manifest(path)
    result = Verification(version=int(manifest["version"]))
    try:
        snapshot = open_snapshot(path, verify=True)
    except SnapshotError as err:
        result.problems.append(str(err))
        return result
    try:
        result.products = snapshot.product_count
        n = snapshot.index.ntotal
        if n == 0:
            return result
        rng = np.random.default_rng(seed)
        rows = rng.choice(n, size=min(sample, n), replace=False)
        queries = snapshot.index.reconstruct(rows)
        k = min(10, n)
        approximate, _ = snapshot.index.search(queries, k)
        exact, _ = snapshot.index.search_exact(queries, k)
        result.recall_at_10 = ann_recall(exact, approximate, k)
        result.sample = len(rows)
        if result.recall_at_10 < recall_floor:
            result.problems.append(f"recall@10 {result.recall_at_10:.3f} below {recall_floor}")
    finally:
        snapshot.close()
    return result
