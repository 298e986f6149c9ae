"""``semsearch-index export-model``: the real export from the packaged model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer import export_model as export
from indexer.cli import main as cli_main
from search.model_card import CARD_NAME, FP32_NAME, INT8_NAME, TOKENIZER_NAME, fingerprint_of, load_card

pytestmark = pytest.mark.model


def test_export_again_is_a_no_op(model_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    result = export.export_model(None, model_dir)
    assert result.exported is False
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()} == before


def test_cli_reports_up_to_date(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["export-model", "--out", str(model_dir)]) == 0
    assert capsys.readouterr().out.startswith(f"up to date: {model_dir}")


@pytest.mark.slow
def test_fresh_export_writes_a_complete_directory(tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = export.export_model(None, out)
    assert result.exported is True
    assert sorted(p.name for p in out.iterdir()) == sorted([CARD_NAME, FP32_NAME, INT8_NAME, TOKENIZER_NAME])
    card = json.loads((out / CARD_NAME).read_text())
    assert card["fingerprints"]["int8"] == fingerprint_of(card, "int8")
    assert (out / INT8_NAME).stat().st_size <= 0.30 * (out / FP32_NAME).stat().st_size
    assert card["parity"]["fp32"]["min_cosine"] > 0.9999
    assert card["parity"]["int8"]["mean_cosine"] >= export.PARITY_MEAN_FLOOR
    load_card(out)  # hashes verify
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary leftovers


@pytest.mark.slow
def test_parity_below_the_floor_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(export, "PARITY_MEAN_FLOOR", 1.01)
    out = tmp_path / "model"
    assert cli_main(["export-model", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "INT8 parity below the floor: mean cosine 0.99" in err and "nothing was published" in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_unknown_model_is_refused_without_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["export-model", "--model", "no-such-org/no-such-model", "--out", str(tmp_path / "m")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "never downloads models" in err


def test_default_model_resolves_to_the_packaged_copy() -> None:
    source = export.resolve_source(None)
    assert (source / "model.safetensors").is_file()
    assert export.resolve_source("all-MiniLM-L6-v2") == source
