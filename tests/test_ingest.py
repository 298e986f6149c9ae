"""The indexer end to end: real catalog files, the real INT8 model, real snapshot directories."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from indexer.cli import main as cli
from indexer.snapshot_admin import verify
from search.filters import Filters
from search.product import Product
from search.model_card import CARD_NAME
from search.snapshot import open_current
from search.snapshot_dir import current_path, list_versions
from tests.test_product_store import matches

pytestmark = pytest.mark.model

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "myntra_sample" / "products.jsonl.gz"


def _sample_rows(n: int) -> list[dict]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle)]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def env(tmp_path: Path, model_dir: Path) -> dict[str, str]:
    return {"SEMSEARCH_INDEX_DIR": str(tmp_path / "index"), "SEMSEARCH_MODEL_DIR": str(model_dir)}


@pytest.fixture()
def catalog(tmp_path: Path) -> Path:
    return _write_jsonl(tmp_path / "catalog.jsonl", _sample_rows(120))


def _status(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert cli(["status", "--json"], env) == 0
    return json.loads(capsys.readouterr().out)


def test_round_trip_and_no_op_reingest(catalog: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["ingest", str(catalog)], env) == 0
    out = capsys.readouterr().out
    assert "snapshot v1 published; 120 products" in out and "0 bad rows" in out
    status = _status(env, capsys)
    assert status["version"] == 1 and status["counts"]["products"] == 120
    assert status["operation"]["encoded"] + status["operation"]["reused"] == 120
    # The same catalog again: nothing encoded, no new snapshot.
    assert cli(["ingest", str(catalog)], env) == 0
    assert "no change" in capsys.readouterr().out
    assert list_versions(Path(env["SEMSEARCH_INDEX_DIR"])) == [1]
    snapshot = open_current(Path(env["SEMSEARCH_INDEX_DIR"]))
    try:
        row = _sample_rows(1)[0]
        hits = snapshot.search(_encoder_vector(env, row["title"]), 3)[0]
        assert hits[0].product.id == row["id"]  # a product's own title finds it
    finally:
        snapshot.close()


def _encoder_vector(env: dict[str, str], text: str) -> np.ndarray:
    from search.encoder import OnnxEncoder

    return OnnxEncoder(env["SEMSEARCH_MODEL_DIR"]).encode([text])


def test_bad_rows_are_reported_with_file_and_line(tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    rows = _sample_rows(5)
    lines = [json.dumps(rows[0]), json.dumps({**rows[1], "price": -5}), "{not json", json.dumps(rows[2]),
             json.dumps({**rows[3], "title": ""}), json.dumps(rows[0])]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert cli(["ingest", str(path)], env) == 0
    captured = capsys.readouterr()
    assert f"{path}:2: price" in captured.err
    assert f"{path}:3: invalid JSON" in captured.err
    assert f"{path}:5: title" in captured.err
    assert f"{path}:6: id: duplicate" in captured.err
    assert "2 products" in captured.out and "4 bad rows" in captured.out


def test_too_many_bad_rows_fails_without_a_snapshot(tmp_path: Path, env: dict[str, str], catalog: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["ingest", str(catalog)], env) == 0
    path = tmp_path / "worse.jsonl"
    path.write_text("{}\n{}\n{}\n" + json.dumps(_sample_rows(1)[0]) + "\n")
    capsys.readouterr()
    assert cli(["ingest", str(path), "--max-bad", "2"], env) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("semsearch-index: error:")
    assert list_versions(Path(env["SEMSEARCH_INDEX_DIR"])) == [1]


def test_upsert_encodes_only_changed_products(catalog: Path, tmp_path: Path, env: dict[str, str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["ingest", str(catalog)], env) == 0
    rows = _sample_rows(120)
    changed = [{**rows[i], "title": rows[i]["title"] + " Limited Edition"} for i in (3, 7, 9)]
    new = [{**rows[0], "id": "new-1", "title": "Brand New Sneaker Model X"},
           {**rows[1], "id": "new-2", "title": "Brand New Handbag Model Y"}]
    assert cli(["upsert", str(_write_jsonl(tmp_path / "delta.jsonl", changed + new))], env) == 0
    status = _status(env, capsys)
    assert status["counts"]["products"] == 122 and status["operation"]["encoded"] == 5
    snapshot = open_current(Path(env["SEMSEARCH_INDEX_DIR"]))
    try:
        rows_by_id = snapshot.store.row_ids_for([rows[3]["id"], "new-2"])
        products = snapshot.store.get_many([rows_by_id[rows[3]["id"]], rows_by_id["new-2"]])
        assert products[0].title.endswith("Limited Edition") and products[1].title == "Brand New Handbag Model Y"
    finally:
        snapshot.close()


def test_delete_and_rollback(catalog: Path, tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    rows = _sample_rows(120)
    assert cli(["ingest", str(catalog)], env) == 0
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"# gone\n{rows[5]['id']}\n\nno-such-id\n")
    assert cli(["delete", rows[4]["id"], "--from", str(ids_file)], env) == 0
    captured = capsys.readouterr()
    assert "not found (1): no-such-id" in captured.err
    status = _status(env, capsys)
    assert status["version"] == 2 and status["counts"]["products"] == 118 and status["operation"]["encoded"] == 0
    snapshot = open_current(Path(env["SEMSEARCH_INDEX_DIR"]))
    assert snapshot.store.row_ids_for([rows[4]["id"], rows[5]["id"]]) == {}
    snapshot.close()
    assert cli(["rollback", "1"], env) == 0
    assert _status(env, capsys)["counts"]["products"] == 120
    assert cli(["rollback", "9"], env) == 1
    assert "semsearch-index: error:" in capsys.readouterr().err


def test_rebuild_changes_the_index_without_encoding(catalog: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["ingest", str(catalog)], env) == 0
    assert cli(["rebuild", "--index-type", "hnsw", "--hnsw-m", "16", "--ef-search", "48"], env) == 0
    status = _status(env, capsys)
    assert status["index"] == {"kind": "hnsw", "m": 16, "ef_construction": 200, "ef_search": 48}
    assert status["operation"]["encoded"] == 0
    assert cli(["verify"], env) == 0
    assert "ANN recall@10" in capsys.readouterr().out


def test_model_change_reencodes_everything(catalog: Path, tmp_path: Path, model_dir: Path, env: dict[str, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["ingest", str(catalog)], env) == 0
    other = tmp_path / "other-model"
    shutil.copytree(model_dir, other, ignore=shutil.ignore_patterns("model_fp32.onnx"))
    card = json.loads((other / CARD_NAME).read_text())
    card["fingerprints"]["int8"] = "0123456789abcdef"  # stands for a different model
    (other / CARD_NAME).write_text(json.dumps(card))
    capsys.readouterr()
    assert cli(["ingest", str(catalog)], {**env, "SEMSEARCH_MODEL_DIR": str(other)}) == 0
    captured = capsys.readouterr()
    assert "model changed" in captured.err
    status = _status({**env, "SEMSEARCH_MODEL_DIR": str(other)}, capsys)
    assert status["model_fingerprint"] == "0123456789abcdef"
    assert status["operation"]["reused"] == 0  # no vector of the other model was mixed in


def test_verify_reports_a_corrupted_snapshot(catalog: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["ingest", str(catalog)], env) == 0
    index_file = current_path(Path(env["SEMSEARCH_INDEX_DIR"])) / "index.faiss"
    os.chmod(index_file, 0o644)
    data = bytearray(index_file.read_bytes())
    data[-10] ^= 0xFF
    index_file.write_bytes(bytes(data))
    assert cli(["verify"], env) == 1
    assert "index.faiss" in capsys.readouterr().err


@pytest.mark.parametrize("filters", [
    Filters(category_prefix="Apparel > Topwear"),
    Filters(brands=frozenset({"Nike", "puma"})),
    Filters(price_min=500, price_max=1500),
    Filters(category_prefix="footwear", price_max=3000),
], ids=["category", "brands", "price", "category+price"])
def test_filtered_search_returns_exactly_top_k_matching(tmp_path: Path, env: dict[str, str], filters: Filters) -> None:
    catalog = _write_jsonl(tmp_path / "c.jsonl", _sample_rows(800))
    assert cli(["ingest", str(catalog)], env) == 0
    assert cli(["rebuild", "--index-type", "hnsw"], env) == 0
    snapshot = open_current(Path(env["SEMSEARCH_INDEX_DIR"]))
    try:
        products = snapshot.store.get_many(range(len(snapshot.store)))
        vectors = snapshot.index.reconstruct(np.arange(len(products)))
        query = _encoder_vector(env, "comfortable shoes for men")
        matching = [i for i, p in enumerate(products) if matches(p, filters)]
        assert len(matching) >= 10
        expected = sorted(matching, key=lambda i: -float(vectors[i] @ query[0]))[:10]
        hits = snapshot.search(query, 10, filters=filters)[0]
        assert len(hits) == 10
        assert all(matches(h.product, filters) for h in hits)
        # Same scores rank by rank (products with identical text tie), and where
        # a score is unique, the same product.
        expected_scores = [float(vectors[i] @ query[0]) for i in expected]
        np.testing.assert_allclose([h.score for h in hits], expected_scores, atol=1e-5)
        unique = [j for j, sc in enumerate(expected_scores) if expected_scores.count(sc) == 1]
        assert [hits[j].product.id for j in unique] == [products[expected[j]].id for j in unique]
    finally:
        snapshot.close()


@pytest.mark.slow
def test_kill_minus_nine_mid_ingest_leaves_a_loadable_current(tmp_path: Path, env: dict[str, str]) -> None:
    first = _write_jsonl(tmp_path / "first.jsonl", _sample_rows(60))
    assert cli(["ingest", str(first)], env) == 0
    bigger = _sample_rows(1500)
    for attempt, delay in enumerate((0.2, 0.7, 1.5, 2.5, 4.0)):
        rows = [{**r, "title": f"{r['title']} v{attempt}"} for r in bigger]  # new texts: real encoding work
        path = _write_jsonl(tmp_path / f"next{attempt}.jsonl", rows)
        process = subprocess.Popen([sys.executable, "-m", "indexer.cli", "ingest", str(path)],
                                   env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        result = verify(Path(env["SEMSEARCH_INDEX_DIR"]))
        assert result.ok, result.problems
        snapshot = open_current(Path(env["SEMSEARCH_INDEX_DIR"]))
        assert snapshot.product_count in (60, 1500)
        snapshot.close()
    # Leftovers are cleaned and the next ingest works.
    assert cli(["ingest", str(first)], env) == 0
    index_dir = Path(env["SEMSEARCH_INDEX_DIR"])
    assert not [p for p in index_dir.iterdir() if p.name.startswith(".staging-")]


def test_changes_keep_the_live_text_fields_and_an_explicit_index(catalog: Path, tmp_path: Path, env: dict[str, str],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["ingest", str(catalog), "--text-fields", "title,brand"], env) == 0
    assert cli(["rebuild", "--index-type", "hnsw", "--ef-search", "200"], env) == 0
    rows = _sample_rows(120)
    assert cli(["delete", rows[0]["id"]], env) == 0
    status = _status(env, capsys)
    assert status["text_fields"] == ["title", "brand"] and status["operation"]["encoded"] == 0
    assert status["index"]["kind"] == "hnsw" and status["index"]["ef_search"] == 200
    assert cli(["ingest", str(catalog)], env) == 0  # a new ingest applies the settings again
    status = _status(env, capsys)
    assert status["index"]["kind"] == "flat" and status["text_fields"] != ["title", "brand"]


def test_a_change_published_meanwhile_is_not_undone(catalog: Path, tmp_path: Path, env: dict[str, str],
                                                    model_dir: Path) -> None:
    from indexer.config import IndexerSettings
    from indexer.ingest import Indexer
    from search.config import Paths
    from search.errors import SnapshotError

    assert cli(["ingest", str(catalog)], env) == 0
    paths = Paths(index_dir=Path(env["SEMSEARCH_INDEX_DIR"]), model_dir=model_dir)
    slow = Indexer(paths, IndexerSettings())
    base = slow._current(with_products=True)  # this command has read v1 ...
    rows = _sample_rows(2)
    assert cli(["upsert", str(_write_jsonl(tmp_path / "other.jsonl", [{**rows[0], "id": "meanwhile"}]))], env) == 0
    with pytest.raises(SnapshotError, match="changed while this command ran"):  # ... v2 went live meanwhile
        slow._publish("upsert", [*base.products, Product(id="late", title="Late Product")], base,
                      source="test", bad=0, rows=1)
    assert list_versions(Path(env["SEMSEARCH_INDEX_DIR"])) == [1, 2]


def test_delete_or_rebuild_without_a_snapshot_is_refused(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["delete", "x"], env) == 1
    assert cli(["rebuild", "--index-type", "flat"], env) == 1
    assert "no snapshot" in capsys.readouterr().err
