"""Run bench/grpc_loadgen.js (Node.js, HTTP/2 in C) from the Python benchmarks.

Command (a library for bench/overload.py and bench/service.py; by hand):
    .venv/bin/python bench/node_load.py --target HOST:PORT --queries FILE --seconds S (--rate R | --concurrency N)

The requests are encoded here, once, with the service's own protobuf classes
and written as gRPC frames; the Node process only sends bytes and reads
statuses, so it spends a small fraction of a core where a Python generator
would spend most of one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.proto import search_pb2  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "grpc_loadgen.js"


def node() -> str:
    found = shutil.which("node")
    if found is None:
        raise SystemExit("bench needs Node.js (`node`) for its compiled-speed load generator")
    return found


def write_frames(queries: list[str], path: Path, top_k: int = 10) -> Path:
    """Each query as one length-prefixed SearchRequest, the body of one gRPC call."""
    with path.open("wb") as out:
        for query in queries:
            message = search_pb2.SearchRequest(query=query, top_k=top_k).SerializeToString()
            out.write(b"\x00" + len(message).to_bytes(4, "big") + message)
    return path


def node_load(target: str, frames: Path, seconds: float, *, rate: float | None = None,
              concurrency: int | None = None, connections: int = 4, warmup: int = 0,
              timeout_s: float = 30.0) -> dict:
    """One run of the Node generator; its JSON figures."""
    mode = ["--rate", str(rate)] if rate else ["--concurrency", str(concurrency)]
    out = subprocess.run([node(), str(SCRIPT), "--target", target, "--frames", str(frames), "--seconds", str(seconds),
                          *mode, "--connections", str(connections), "--warmup", str(warmup),
                          "--timeout-s", str(timeout_s)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--queries", required=True, type=Path, help="one query per line")
    parser.add_argument("--seconds", type=float, default=5.0)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--rate", type=float)
    group.add_argument("--concurrency", type=int)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    queries = [q for q in args.queries.read_text(encoding="utf-8").splitlines() if q.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        frames = write_frames(queries, Path(tmp) / "frames.bin")
        result = node_load(args.target, frames, args.seconds, rate=args.rate, concurrency=args.concurrency)
    keys = ("sent", "ok", "qps", "p50_ms", "p99_ms", "shed_p99_ms", "send_lag_p99_ms", "generator_cpu_cores")
    print(" | ".join(keys))
    print(" | ".join(str(result.get(k)) for k in keys), "| errors", result["errors"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
