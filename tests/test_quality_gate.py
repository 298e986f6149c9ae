"""The quality gate: a candidate snapshot that ranks worse than its parent is not published."""

from __future__ import annotations

import gzip
import json
import random
import sqlite3
from pathlib import Path

import pytest

from indexer.cli import main as cli
from indexer.quality_gate import QualityGateError, check
from search.snapshot_dir import list_versions, read_manifest, current_path

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "myntra_sample" / "products.jsonl.gz"


def test_check_refuses_a_drop_beyond_the_margin() -> None:
    parent = {"ndcg@10": 0.60, "query_set": "s"}
    assert check({"ndcg@10": 0.59, "query_set": "s"}, parent, margin=0.02, allow_drop=False) is None
    with pytest.raises(QualityGateError, match=r"nDCG@10 0.5000 is 0.1000 below the parent's 0.6000"):
        check({"ndcg@10": 0.50, "query_set": "s"}, parent, margin=0.02, allow_drop=False)
    assert "published anyway" in check({"ndcg@10": 0.5, "query_set": "s"}, parent, margin=0.02, allow_drop=True)
    assert "no parent score" in check({"ndcg@10": 0.1, "query_set": "other"}, parent, margin=0.02, allow_drop=False)
    assert "no parent score" in check({"ndcg@10": 0.1, "query_set": "s"}, None, margin=0.02, allow_drop=False)


@pytest.fixture()
def gated(tmp_path: Path, model_dir: Path) -> tuple[dict[str, str], Path]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(200), handle)]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    titles: dict[str, list[str]] = {}
    for row in rows:
        titles.setdefault(row["title"], []).append(row["id"])
    unique = [(t, ids[0]) for t, ids in titles.items() if len(ids) == 1][:40]
    (tmp_path / "queries.tsv").write_text("qid\tquery\n" + "".join(f"q{i}\t{t}\n" for i, (t, _) in enumerate(unique)))
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\t{pid}\t1\n" for i, (_, pid) in enumerate(unique)))
    env = {"SEMSEARCH_INDEX_DIR": str(tmp_path / "index"), "SEMSEARCH_MODEL_DIR": str(model_dir),
           "SEMSEARCH_QUALITY_QUERIES": str(tmp_path / "queries.tsv"), "SEMSEARCH_QUALITY_QRELS": str(tmp_path / "qrels.tsv")}
    return env, catalog


def _shuffle_cached_vectors(index_dir: Path) -> None:
    with sqlite3.connect(index_dir / "vectors.sqlite") as conn:
        rows = conn.execute("SELECT fingerprint, key, vector FROM vectors").fetchall()
        blobs = [r[2] for r in rows]
        random.Random(0).shuffle(blobs)
        conn.executemany("UPDATE vectors SET vector = ? WHERE fingerprint = ? AND key = ?",
                         [(b, f, k) for (f, k, _), b in zip(rows, blobs)])


@pytest.mark.model
def test_a_snapshot_with_shuffled_vectors_is_refused(gated, capsys: pytest.CaptureFixture[str]) -> None:
    env, catalog = gated
    index_dir = Path(env["SEMSEARCH_INDEX_DIR"])
    assert cli(["ingest", str(catalog)], env) == 0
    quality = read_manifest(current_path(index_dir))["quality"]
    assert quality["queries"] == 40 and quality["ndcg@10"] > 0.8
    _shuffle_cached_vectors(index_dir)
    capsys.readouterr()
    assert cli(["rebuild", "--index-type", "hnsw"], env) == 1
    err = capsys.readouterr().err
    assert "quality gate: nDCG@10" in err and "nothing was published" in err
    assert list_versions(index_dir) == [1]
    assert cli(["rebuild", "--index-type", "hnsw", "--allow-quality-drop"], env) == 0
    assert "published anyway" in capsys.readouterr().err
    assert read_manifest(current_path(index_dir))["quality"]["ndcg@10"] < 0.5
