"""The model card: what an exported model directory holds and how to trust it.

The exporter (``semsearch-index export-model``) writes ``model_card.json``
beside the ONNX files; the runtime encoder reads it back. The card records
everything that determines the vectors, and the *fingerprint* is hashed from
exactly those things (the INT8 file, the tokenizer and the vector settings),
so that caches and index snapshots can be namespaced by it. Parity figures and
tool versions are recorded but deliberately left out of the fingerprint: they
describe the export, they do not change a single vector.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.errors import ModelLoadError

CARD_NAME = "model_card.json"
INT8_NAME = "model_int8.onnx"
FP32_NAME = "model_fp32.onnx"
TOKENIZER_NAME = "tokenizer.json"
CARD_FORMAT = 1
EXPORT_HINT = "create it with: semsearch-index export-model --out {path}"

# The card keys that change the vectors an encoder produces.
VECTOR_SETTINGS = ("dimension", "max_seq_length", "pooling", "normalize")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_of(card: dict[str, Any], variant: str) -> str:
    """Fingerprint of the vectors that ``variant`` ("int8" or "fp32") produces.

    Hashed from the variant's ONNX file hash, the tokenizer hash and the
    vector settings, so any change that could move a vector changes it.
    """
    model_file = INT8_NAME if variant == "int8" else FP32_NAME
    payload = {
        "variant": variant,
        "model_sha256": card["files"][model_file],
        "tokenizer_sha256": card["files"][TOKENIZER_NAME],
        **{key: card[key] for key in VECTOR_SETTINGS},
    }
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """The parsed card of one model directory."""

    path: Path
    raw: dict[str, Any]

    @property
    def dimension(self) -> int:
        return int(self.raw["dimension"])

    @property
    def max_seq_length(self) -> int:
        return int(self.raw["max_seq_length"])

    @property
    def pooling(self) -> str:
        return str(self.raw["pooling"])

    @property
    def normalize(self) -> bool:
        return bool(self.raw["normalize"])

    def fingerprint(self, variant: str = "int8") -> str:
        return str(self.raw["fingerprints"][variant])

    def model_file(self, variant: str) -> Path:
        if variant not in ("int8", "fp32"):
            raise ValueError(f"variant must be 'int8' or 'fp32', got {variant!r}")
        return self.path / (INT8_NAME if variant == "int8" else FP32_NAME)


def write_card(model_dir: Path, card: dict[str, Any]) -> None:
    """Write ``card`` as the directory's model card, fsynced."""
    target = model_dir / CARD_NAME
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(card, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(target)


def load_card(model_dir: Path | str, *, variant: str = "int8", verify: bool = True) -> ModelCard:
    """Read and check a model directory's card.

    Raises ModelLoadError naming the path and the export command when the
    directory, the card or a file it lists is missing, or (with ``verify``)
    when the model or tokenizer file's hash differs from the card's.
    """
    model_dir = Path(model_dir)
    hint = EXPORT_HINT.format(path=model_dir)
    card_path = model_dir / CARD_NAME
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist; {hint}")
    if not card_path.is_file():
        raise ModelLoadError(f"model card {card_path} is missing; {hint}")
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
        if raw.get("format") != CARD_FORMAT:
            raise ValueError(f"unsupported card format {raw.get('format')!r}")
        for key in (*VECTOR_SETTINGS, "files", "fingerprints"):
            if key not in raw:
                raise ValueError(f"missing key {key!r}")
    except (ValueError, OSError) as err:
        raise ModelLoadError(f"model card {card_path} is corrupt ({err}); {hint}") from err
    card = ModelCard(path=model_dir, raw=raw)
    needed = [card.model_file(variant).name, TOKENIZER_NAME]
    for name in needed:
        file_path = model_dir / name
        if not file_path.is_file():
            raise ModelLoadError(f"model file {file_path} is missing; {hint}")
        if verify and sha256_file(file_path) != raw["files"].get(name):
            raise ModelLoadError(
                f"model file {file_path} does not match its card (corrupt or modified); {hint}"
            )
    return card
