"""The runtime encoder, on the real exported model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search.encoder import OnnxEncoder
from search.errors import ModelLoadError
from search.model_card import CARD_NAME, INT8_NAME, TOKENIZER_NAME

pytestmark = pytest.mark.model

TEXTS = ["red running shoes", "Nike Men Blue T20 Indian Cricket Jersey", "This is a test"]
# First six dimensions, from sentence-transformers PyTorch FP32 (the reference).
GOLDEN_FP32 = np.array(
    [
        [-0.08195, -0.00796, -0.05866, 0.04264, 0.03555, 0.00648],
        [-0.08688, 0.09620, -0.01132, -0.02988, 0.02527, -0.01538],
        [0.03061, 0.01383, -0.02084, 0.01633, -0.01023, -0.04798],
    ]
)
# The same dimensions from this project's INT8 export, pinned to catch a regression.
GOLDEN_INT8 = np.array(
    [
        [-0.08298, -0.01064, -0.06142, 0.04186, 0.03355, 0.00766],
        [-0.09234, 0.08438, -0.00528, -0.02979, 0.02826, -0.01766],
        [0.03046, -0.00268, -0.02092, 0.01689, -0.00238, -0.03890],
    ]
)


def test_shape_dtype_and_unit_norm(encoder: OnnxEncoder) -> None:
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_batch_gives_empty_array(encoder: OnnxEncoder) -> None:
    assert encoder.encode([]).shape == (0, 384)


def test_golden_vectors_fp32(fp32_encoder: OnnxEncoder) -> None:
    np.testing.assert_allclose(fp32_encoder.encode(TEXTS)[:, :6], GOLDEN_FP32, atol=2e-4)


def test_golden_vectors_int8(encoder: OnnxEncoder) -> None:
    np.testing.assert_allclose(encoder.encode(TEXTS)[:, :6], GOLDEN_INT8, atol=5e-3)


def test_int8_cosine_to_fp32_floor(encoder: OnnxEncoder, fp32_encoder: OnnxEncoder) -> None:
    from indexer.probes import probe_texts

    texts = [text for _, text in probe_texts()]
    cosines = (encoder.encode(texts) * fp32_encoder.encode(texts)).sum(axis=1)
    assert cosines.mean() >= 0.99
    assert cosines.min() >= 0.97


def test_batch_and_single_calls_agree(encoder: OnnxEncoder, fp32_encoder: OnnxEncoder) -> None:
    texts = TEXTS + ["a much longer product description " * 20, "t-shirt"]
    # FP32: identical. INT8: dynamic quantization scales activations per
    # tensor, over the whole batch, so batch-mates move a vector slightly.
    batch = fp32_encoder.encode(texts)
    singles = np.stack([fp32_encoder.encode_one(t) for t in texts])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    cosines = (encoder.encode(texts) * np.stack([encoder.encode_one(t) for t in texts])).sum(axis=1)
    assert cosines.min() >= 0.96


def test_order_is_kept_across_length_sorted_batches(model_dir: Path) -> None:
    small_batches = OnnxEncoder(model_dir, variant="fp32", batch_size=2)
    texts = ["long text " * 30, "a", "medium length text here", "b c", "x" * 5]
    expected = np.stack([small_batches.encode_one(t) for t in texts])
    np.testing.assert_allclose(small_batches.encode(texts), expected, atol=1e-5)


def test_token_stats_count_the_whole_text_without_special_tokens(encoder: OnnxEncoder) -> None:
    texts = ["red t-shirt", "☃☃ kurta", "word " * 300]
    stats = encoder.token_stats(texts)
    short = encoder.tokenize(texts[:1]).attention_mask.sum() - 2  # [CLS] and [SEP]
    assert stats[0] == (short, 0)
    assert stats[1][1] >= 1  # the snowmen are unknown to the vocabulary
    assert stats[2] == (300, 0)  # not cut at the model's 256-token limit


def test_spin_wait_off_changes_scheduling_not_vectors(model_dir: Path, encoder: OnnxEncoder) -> None:
    sleeping = OnnxEncoder(model_dir, spin_wait=False)
    texts = TEXTS + ["t-shirt"]
    np.testing.assert_array_equal(sleeping.encode(texts), encoder.encode(texts))


@pytest.mark.parametrize(
    "text",
    ["", "   \t\n ", "日本語の商品説明", "кроссовки красные", "حذاء رياضي", "👟🔥 sneakers 💯", "\x00\x01control"],
    ids=["empty", "whitespace", "japanese", "cyrillic", "arabic", "emoji", "control-chars"],
)
def test_unusual_text_gives_a_unit_vector(encoder: OnnxEncoder, text: str) -> None:
    vector = encoder.encode_one(text)
    assert np.isfinite(vector).all()
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-5


def test_very_long_text_is_truncated(encoder: OnnxEncoder) -> None:
    long_text = "cotton shirt with stripes " * 400  # 10,400 characters
    assert len(long_text) >= 10_000
    batch = encoder.tokenize([long_text])
    assert batch.input_ids.shape == (1, encoder.max_seq_length)
    vector = encoder.encode_one(long_text)
    # Truncation keeps the head: the same as encoding the first part only.
    head = encoder.encode_one("cotton shirt with stripes " * 60)
    assert float(vector @ head) > 0.99


def test_padding_is_to_the_longest_text(encoder: OnnxEncoder) -> None:
    batch = encoder.tokenize(["a", "a b c d e"])
    assert batch.input_ids.shape == (2, 7)  # [CLS] a b c d e [SEP]
    assert batch.attention_mask.sum(axis=1).tolist() == [3, 7]


def test_fingerprint_differs_per_variant(encoder: OnnxEncoder, fp32_encoder: OnnxEncoder) -> None:
    assert len(encoder.fingerprint) == 16
    assert encoder.fingerprint != fp32_encoder.fingerprint


def _copy_model(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("model_fp32.onnx"))
    return target


def test_missing_directory_names_path_and_command(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelLoadError, match=r"nowhere does not exist.*semsearch-index export-model --out"):
        OnnxEncoder(missing)


@pytest.mark.parametrize("name", [CARD_NAME, INT8_NAME, TOKENIZER_NAME])
def test_missing_file_names_it(model_dir: Path, tmp_path: Path, name: str) -> None:
    copy = _copy_model(model_dir, tmp_path)
    (copy / name).unlink()
    with pytest.raises(ModelLoadError, match=rf"{name}.*missing.*semsearch-index export-model"):
        OnnxEncoder(copy)


@pytest.mark.parametrize("name", [INT8_NAME, TOKENIZER_NAME])
def test_corrupt_file_is_detected(model_dir: Path, tmp_path: Path, name: str) -> None:
    copy = _copy_model(model_dir, tmp_path)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=rf"{name} does not match its card"):
        OnnxEncoder(copy)


def test_corrupt_card_is_reported(model_dir: Path, tmp_path: Path) -> None:
    copy = _copy_model(model_dir, tmp_path)
    (copy / CARD_NAME).write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"model_card.json is corrupt.*export-model"):
        OnnxEncoder(copy)


def test_truncated_model_without_verification_still_fails_cleanly(model_dir: Path, tmp_path: Path) -> None:
    copy = _copy_model(model_dir, tmp_path)
    data = (copy / INT8_NAME).read_bytes()
    (copy / INT8_NAME).write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match=r"cannot be loaded.*export-model"):
        OnnxEncoder(copy, verify=False)


def test_card_records_what_the_issue_asks(model_dir: Path) -> None:
    card = json.loads((model_dir / CARD_NAME).read_text())
    assert card["dimension"] == 384 and card["max_seq_length"] == 256
    assert card["pooling"] == "mean" and card["normalize"] is True
    assert card["quantization"]["per_channel"] is True
    assert set(card["source_model"]["files"]) >= {"model.safetensors", "tokenizer.json"}
    assert card["parity"]["int8"]["mean_cosine"] >= 0.99


def test_importing_the_service_library_never_imports_torch(model_dir: Path) -> None:
    code = (
        "import sys, search, search.encoder, search.model_card, search.errors\n"
        f"search.encoder.OnnxEncoder({str(model_dir)!r}).encode(['x'])\n"
        "import pkgutil, importlib\n"
        "for m in pkgutil.iter_modules(search.__path__):\n"
        "    importlib.import_module('search.' + m.name)\n"
        "bad = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
