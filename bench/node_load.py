"""Run bench/grpc_loadgen.js (Node.js, HTTP/2 in C) from the Python benchmarks.

A library for bench/overload.py and bench/service.py (no command of its own;
the generator's own command line is in bench/grpc_loadgen.js).

The requests are encoded here, once, with the service's own protobuf classes
and written as gRPC frames; the Node process only sends bytes and reads
statuses, so it spends a small fraction of a core where a Python generator
would spend most of one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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
