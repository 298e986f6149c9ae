"""Shared fixtures: the real exported model, made once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_CATALOG = REPO / "data" / "myntra_sample" / "products.jsonl.gz"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The real INT8 model directory; exported on first use (a no-op when up to date)."""
    path = Path(os.environ.get("SEMSEARCH_MODEL_DIR", REPO / "models" / "all-minilm-l6-v2"))
    from indexer.export_model import export_model

    export_model(None, path)
    return path


@pytest.fixture(scope="session")
def encoder(model_dir: Path):
    from search.encoder import OnnxEncoder

    return OnnxEncoder(model_dir, threads=2)


@pytest.fixture(scope="session")
def fp32_encoder(model_dir: Path):
    from search.encoder import OnnxEncoder

    return OnnxEncoder(model_dir, variant="fp32", threads=2)
