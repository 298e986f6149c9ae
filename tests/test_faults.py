"""Faults: disk full mid-ingest, kills during upsert and delete, corrupt snapshots, a broken model at start."""

from __future__ import annotations

import errno
import io
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import indexer.ingest as ingest_module
from indexer.cli import main as cli
from indexer.config import IndexerSettings
from indexer.ingest import Indexer
from indexer.snapshot_admin import verify
from search.config import Paths
from search.snapshot import open_current
from search.snapshot_dir import current_path, list_versions
from tests.harness import RunningService

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "myntra_sample" / "products.jsonl.gz"


def _rows(n: int) -> list[dict]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle)]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def env(tmp_path: Path, model_dir: Path) -> dict[str, str]:
    return {"SEMSEARCH_INDEX_DIR": str(tmp_path / "index"), "SEMSEARCH_MODEL_DIR": str(model_dir)}


def test_disk_full_during_ingest_fails_cleanly(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["ingest", str(_write(tmp_path / "a.jsonl", _rows(40)))], env) == 0
    before = current_path(Path(env["SEMSEARCH_INDEX_DIR"]))

    def full_disk(path: Path, products) -> int:
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ingest_module, "write_product_store", full_disk)
    capsys.readouterr()
    assert cli(["ingest", str(_write(tmp_path / "b.jsonl", _rows(60)))], env) == 1
    assert "No space left on device" in capsys.readouterr().err
    index_dir = Path(env["SEMSEARCH_INDEX_DIR"])
    assert current_path(index_dir) == before and list_versions(index_dir) == [1]
    assert not [p for p in index_dir.iterdir() if p.name.startswith(".staging-")]
    assert verify(index_dir).ok


@pytest.mark.slow
@pytest.mark.parametrize("command", ["upsert", "delete"])
def test_kill_during_upsert_or_delete_leaves_a_loadable_current(tmp_path: Path, env: dict[str, str], command: str) -> None:
    rows = _rows(1500)
    assert cli(["ingest", str(_write(tmp_path / "base.jsonl", rows))], env) == 0
    index_dir = Path(env["SEMSEARCH_INDEX_DIR"])
    for attempt, delay in enumerate((0.3, 0.8, 1.6, 3.0)):
        if command == "upsert":
            changed = [{**r, "title": f"{r['title']} edition {attempt}"} for r in rows[:800]]
            args = ["upsert", str(_write(tmp_path / f"d{attempt}.jsonl", changed))]
        else:
            ids = tmp_path / f"ids{attempt}.txt"
            ids.write_text("\n".join(r["id"] for r in rows[attempt * 50:(attempt + 1) * 50]))
            args = ["delete", "--from", str(ids)]
        process = subprocess.Popen([sys.executable, "-m", "indexer.cli", *args], env={**os.environ, **env},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        result = verify(index_dir)
        assert result.ok, result.problems
    assert cli(["status"], env) == 0


def test_a_snapshot_corrupted_after_publish_is_refused_on_reload(tmp_path: Path, model_dir: Path) -> None:
    paths = Paths(index_dir=tmp_path / "index", model_dir=model_dir, cache_dir=tmp_path / "l2")
    indexer = Indexer(paths, IndexerSettings())
    indexer.ingest(_write(tmp_path / "a.jsonl", _rows(50)))
    with RunningService(paths) as running, running.client() as client:
        assert client.index_info().snapshot_version == 1
        indexer.ingest(_write(tmp_path / "b.jsonl", _rows(80)))
        store = current_path(paths.index_dir) / "products.sqlite"
        os.chmod(store, 0o644)
        with open(store, "r+b") as handle:  # truncated after publish
            handle.truncate(store.stat().st_size // 2)
        assert running.run(running.app.reload()) is False
        assert client.index_info().snapshot_version == 1
        assert len(client.search("shoes", top_k=5).hits) == 5
        assert running.app.snapshots.refusals == 1
    assert not verify(paths.index_dir).ok


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_serve_with_a_broken_model_exits_with_a_clear_error(tmp_path: Path, model_dir: Path, damage: str) -> None:
    broken = tmp_path / "model"
    if damage == "corrupt":
        shutil.copytree(model_dir, broken, ignore=shutil.ignore_patterns("model_fp32.onnx"))
        data = bytearray((broken / "model_int8.onnx").read_bytes())
        data[1000] ^= 0xFF
        (broken / "model_int8.onnx").write_bytes(bytes(data))
    port = _free_port()
    result = subprocess.run(
        [sys.executable, "-m", "search.cli", "serve", "--model-dir", str(broken), "--index-dir", str(tmp_path / "index"),
         "--listen", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert result.returncode == 1
    assert "semsearch: error:" in result.stderr and str(broken) in result.stderr and "export-model" in result.stderr
    with socket.socket() as s:  # nothing was left listening
        s.bind(("127.0.0.1", port))


catalog_rows = st.lists(
    st.one_of(
        st.fixed_dictionaries({"id": st.text(min_size=1, max_size=8), "title": st.text(max_size=40)},
                              optional={"price": st.one_of(st.floats(allow_nan=True), st.integers(), st.text(max_size=5)),
                                        "in_stock": st.one_of(st.booleans(), st.integers(0, 2)),
                                        "attrs": st.one_of(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2), st.text(max_size=3)),
                                        "category": st.one_of(st.text(max_size=30), st.integers())}),
        st.text(max_size=30),
    ),
    max_size=12,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=catalog_rows)
def test_generated_catalogs_are_accounted_for_and_never_half_published(rows: list, tmp_path_factory: pytest.TempPathFactory,
                                                                       model_dir: Path) -> None:
    tmp = tmp_path_factory.mktemp("gen")
    lines = [json.dumps(r) if isinstance(r, dict) else r.replace("\n", " ") for r in rows]
    catalog = tmp / "gen.jsonl"
    catalog.write_text("".join(line + "\n" for line in lines), encoding="utf-8", errors="surrogatepass")
    paths = Paths(index_dir=tmp / "index", model_dir=model_dir)
    from indexer.catalog import load_catalog

    report = load_catalog(catalog)
    assert report.rows == len(report.products) + len(report.bad)
    indexer = Indexer(paths, IndexerSettings(max_bad=None), stderr=io.StringIO())
    try:
        change = indexer.ingest(catalog)
    except Exception as err:  # only the documented refusal: nothing valid to publish
        assert not report.products and "no valid products" in str(err)
        assert current_path(paths.index_dir) is None
        return
    assert change.products == len(report.products) and change.bad_rows == len(report.bad)
    snapshot = open_current(paths.index_dir)
    try:
        assert snapshot.product_count == len(report.products)
        assert sorted(snapshot.store.all_product_ids()) == sorted(p.id for p in report.products)
    finally:
        snapshot.close()
