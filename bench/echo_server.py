"""The transport ceiling: a grpc.aio server of the same proto that answers Search with a canned response.

Command (normally run for you by bench/service.py):
    .venv/bin/python bench/echo_server.py [--port N]
Prints the bound port on its first line; runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.proto import search_pb2, search_pb2_grpc  # noqa: E402

# Ten hits of a realistic size, so the ceiling pays the same serialization cost.
CANNED = search_pb2.SearchResponse(
    hits=[search_pb2.Hit(product_id=str(10000 + i), score=0.5, title="Nike Men Blue T20 Indian Cricket Jersey",
                         category="Apparel > Topwear > Tshirts", brand="Nike", price=895.0, in_stock=True)
          for i in range(10)],
    snapshot_version=1, model_fingerprint="echo", embedding_tier=search_pb2.RESULT_CACHE,
)


class Echo(search_pb2_grpc.SearchServiceServicer):
    async def Search(self, request, context):  # noqa: N802 (gRPC method name)
        return CANNED


async def main(port: int) -> None:
    server = grpc.aio.server()
    search_pb2_grpc.add_SearchServiceServicer_to_server(Echo(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(bound, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(main(parser.parse_args().port))
