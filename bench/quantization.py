"""Quantization granularity: which INT8 settings keep the vectors closest to FP32.

Command:
    .venv/bin/python bench/quantization.py [--quick] [--json PATH]

Quantizes the exported FP32 ONNX model (models/all-minilm-l6-v2) with
onnxruntime dynamic quantization in several ways, then compares each with the
sentence-transformers PyTorch FP32 vectors on 300 fashion texts (100 dev
queries, 100 titles, 100 descriptions; --quick: 30 of each): mean/min cosine,
file size, and single-query p50 latency at 2 threads.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import FASHION, MODEL_DIR, fashion_products, machine, now, table, write_json  # noqa: E402
from search.evaluation import read_queries  # noqa: E402
from search.model_card import load_card  # noqa: E402

VARIANTS = {
    "per-tensor": {"per_channel": False},
    "per-channel (chosen)": {"per_channel": True},
    "per-channel, reduce_range": {"per_channel": True, "reduce_range": True},
    "per-channel, MatMul only": {"per_channel": True, "op_types_to_quantize": ["MatMul"]},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="90 texts")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    import onnxruntime as ort
    from tokenizers import Tokenizer

    card = load_card(MODEL_DIR, variant="fp32")
    n = 30 if args.quick else 100
    rng = random.Random(1)
    products = rng.sample(fashion_products(), 2000)
    texts = (list(read_queries(FASHION / "queries_dev.tsv").values())[:n] + [p["title"] for p in products[:n]]
             + [p["description"] for p in products if p.get("description")][:n])
    reference = SentenceTransformer(card.raw["source_model"]["path"], device="cpu").encode(texts, normalize_embeddings=True)
    tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tokenizer.enable_truncation(card.max_seq_length)
    tokenizer.enable_padding()

    def run(path: Path) -> tuple[np.ndarray, float]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def encode(batch: list[str]) -> np.ndarray:
            enc = tokenizer.encode_batch(batch)
            feed = {"input_ids": np.array([e.ids for e in enc], np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                    "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}
            hidden = session.run(None, {k: feed[k] for k in names})[0]
            mask = feed["attention_mask"][..., None]
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

        vectors = np.concatenate([encode(texts[i:i + 16]) for i in range(0, len(texts), 16)])
        samples = []
        for text in texts[:n][:50]:
            started = time.perf_counter()
            encode([text])
            samples.append(time.perf_counter() - started)
        return vectors, float(np.median(samples) * 1000)

    rows, figures = [], {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        candidates = {"FP32 (no quantization)": card.model_file("fp32")}
        for name, options in VARIANTS.items():
            out = Path(tmp) / f"{len(candidates)}.onnx"
            quantize_dynamic(str(card.model_file("fp32")), str(out), weight_type=QuantType.QInt8, **options)
            candidates[name] = out
        for name, path in candidates.items():
            vectors, p50 = run(path)
            cosine = (vectors * reference).sum(axis=1)
            figures[name] = {"size_mb": path.stat().st_size / 1e6, "mean_cosine": float(cosine.mean()),
                             "min_cosine": float(cosine.min()), "p50_ms": p50}
            rows.append([name, f"{figures[name]['size_mb']:.1f}", f"{cosine.mean():.4f}", f"{cosine.min():.4f}", p50])
    print(f"\nINT8 quantization granularity, cosine to PyTorch FP32 on {len(texts)} fashion texts, {now()}, {machine()}\n")
    print(table(["variant", "size MB", "mean cosine", "min cosine", "p50 ms (1 query)"], rows))
    write_json(args.json, {"date": now(), "machine": machine(), "texts": len(texts), "variants": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
