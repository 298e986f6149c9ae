"""The runtime sentence encoder: onnxruntime + tokenizers, no torch.

Encoding is three separate steps -- tokenize, run, pool -- so each can be
measured and tested on its own. The API is batch-first: ``encode`` takes a
list of texts; ``encode_one`` delegates to it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from search.errors import ModelLoadError
from search.model_card import EXPORT_HINT, TOKENIZER_NAME, ModelCard, load_card

log = logging.getLogger(__name__)

_PROVIDER = "CPUExecutionProvider"


class Encoder(Protocol):
    """What callers of an encoder use."""

    @property
    def dimension(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class TokenBatch:
    """Token ids, attention mask and type ids, each (n, longest) int64."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray


class OnnxEncoder:
    """An exported model directory, loaded for inference.

    ``spin_wait=False`` stops onnxruntime's threads from busy-waiting between
    calls (for a process that shares its cores with other work). Raises
    ModelLoadError (naming the path and the export command) when the
    directory is missing, incomplete or corrupt.
    """

    def __init__(
        self,
        model_dir: Path | str,
        *,
        variant: str = "int8",
        threads: int | None = None,
        batch_size: int = 32,
        verify: bool = True,
        spin_wait: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.card: ModelCard = load_card(model_dir, variant=variant, verify=verify)
        self.variant = variant
        self.batch_size = batch_size
        self._tokenizer = self._load_tokenizer(self.card)
        self._session = self._load_session(self.card, variant, threads, spin_wait)
        self._input_names = [item.name for item in self._session.get_inputs()]
        self._counter: Tokenizer | None = None

    @staticmethod
    def _load_tokenizer(card: ModelCard) -> Tokenizer:
        path = card.path / TOKENIZER_NAME
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises a bare Exception
            hint = EXPORT_HINT.format(path=card.path)
            raise ModelLoadError(f"tokenizer {path} cannot be read ({err}); {hint}") from err
        # The file's own settings (fixed padding to 128) are not the model's:
        # truncate at the model's max length, pad to the longest in a batch.
        tokenizer.enable_truncation(max_length=card.max_seq_length)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        return tokenizer

    @staticmethod
    def _load_session(card: ModelCard, variant: str, threads: int | None, spin_wait: bool) -> ort.InferenceSession:
        available = ort.get_available_providers()
        if _PROVIDER not in available:
            raise ModelLoadError(f"onnxruntime lacks {_PROVIDER}; available: {available}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spin_wait:
            # onnxruntime's worker threads busy-wait for the next op by default:
            # the fastest lone call, but a core burned that a server's event
            # loop needs between calls (bench/RESULTS.md, service section).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = card.model_file(variant)
        try:
            return ort.InferenceSession(str(path), options, providers=[_PROVIDER])
        except Exception as err:  # onnxruntime raises its own untyped errors
            hint = EXPORT_HINT.format(path=card.path)
            raise ModelLoadError(f"model {path} cannot be loaded ({err}); {hint}") from err

    @property
    def dimension(self) -> int:
        return self.card.dimension

    @property
    def fingerprint(self) -> str:
        return self.card.fingerprint(self.variant)

    @property
    def max_seq_length(self) -> int:
        return self.card.max_seq_length

    def tokenize(self, texts: Sequence[str]) -> TokenBatch:
        """Tokenize, truncated to the max length and padded to the longest text."""
        encodings = self._tokenizer.encode_batch(list(texts))
        return TokenBatch(
            input_ids=np.array([e.ids for e in encodings], dtype=np.int64),
            attention_mask=np.array([e.attention_mask for e in encodings], dtype=np.int64),
            token_type_ids=np.array([e.type_ids for e in encodings], dtype=np.int64),
        )

    def token_stats(self, texts: Sequence[str]) -> list[tuple[int, int]]:
        """(tokens, unknown tokens) per text, special tokens excluded, before truncation.

        One ``encode`` per text, not ``encode_batch``: the batch call releases
        the GIL, and an event-loop thread that releases the GIL waits up to the
        switch interval (5 ms) to get it back while any other thread runs
        (measured: 5,205 vs 18 us per call beside one busy thread).
        """
        if self._counter is None:
            # A copy without padding or truncation: counting must see the whole text.
            self._counter = Tokenizer.from_str(self._tokenizer.to_str())
            self._counter.no_padding()
            self._counter.no_truncation()
        unknown_id = self._counter.token_to_id("[UNK]")
        stats = []
        for text in texts:
            ids = self._counter.encode(text, add_special_tokens=False).ids
            stats.append((len(ids), sum(1 for i in ids if i == unknown_id)))
        return stats

    def run(self, batch: TokenBatch) -> np.ndarray:
        """Token embeddings, (n, longest, dimension) float32."""
        feed = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids,
        }
        return self._session.run(None, {name: feed[name] for name in self._input_names})[0]

    def pool(self, token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Mean over real tokens, then L2-normalized; (n, dimension) float32."""
        mask = attention_mask[..., None].astype(np.float32)
        summed = (token_embeddings * mask).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1), 1e-9)
        if self.card.normalize:
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32, copy=False)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: float32 (len(texts), dimension), rows L2-normalized.

        Texts are sorted by length and cut into batches of ``batch_size`` so
        that short texts are not padded to a long one's length.
        """
        texts = list(texts)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = self.tokenize([texts[i] for i in chunk])
            out[chunk] = self.pool(self.run(batch), batch.attention_mask)
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """Embed one text: float32 (dimension,)."""
        return self.encode([text])[0]
