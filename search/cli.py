"""``semsearch``: run the search service, or query one.

Errors are rendered once, here: ``semsearch: error: ...`` and exit code 1.
Logging is configured here only (``search.logs.configure_logging``): JSON
lines by default for ``serve``, text for ``query``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import grpc

from search.config import ConfigError, Paths, ServiceSettings, load_section, read_config_file
from search.errors import SemsearchError
from search.logs import FORMATS, configure_logging

EXIT_FAILURE = 1


def _cmd_serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from search.app import Application, serve_forever

    table = read_config_file(args.config)
    paths = load_section(Paths, table.get("paths", {}), environ,
                         index_dir=args.index_dir, model_dir=args.model_dir, cache_dir=args.cache_dir)
    settings = load_section(
        ServiceSettings, table.get("service", {}), environ, listen=args.listen, metrics_listen=args.metrics_listen,
        metrics_public=args.metrics_public, slow_query_ms=args.slow_query_ms, log_queries=args.log_queries,
        tls_cert=args.tls_cert, tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
        auth_tokens_file=args.auth_tokens_file,
    )
    asyncio.run(serve_forever(Application(paths, settings)))
    return 0


def _cmd_query(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from google.protobuf.json_format import MessageToDict

    from search.client import SearchClient, make_filters

    filters = make_filters(category_prefix=args.category, brands=args.brand or (), price_min=args.price_min,
                           price_max=args.price_max, in_stock=args.in_stock)
    root = Path(args.ca_cert).read_bytes() if args.ca_cert else None
    pair = (Path(args.client_key).read_bytes(), Path(args.client_cert).read_bytes()) if args.client_cert else None
    token = environ.get("SEMSEARCH_TOKEN")
    with SearchClient(args.target, token=token, root_certificates=root, client_certificate=pair) as client:
        try:
            response = client.search(args.text, top_k=args.top_k, offset=args.offset, filters=filters, timeout=args.timeout)
        except grpc.RpcError as err:
            print(f"semsearch: error: {err.code().name}: {err.details()}", file=sys.stderr)
            return EXIT_FAILURE
    if args.json:
        print(json.dumps(MessageToDict(response, preserving_proto_field_name=True), indent=2, ensure_ascii=False))
        return 0
    tier = response.DESCRIPTOR.fields_by_name["embedding_tier"].enum_type.values_by_number[response.embedding_tier].name
    print(f"{len(response.hits)} hits for {response.normalized_query!r} (snapshot v{response.snapshot_version}, "
          f"embedding from {tier}, {response.timings.total_ms:.1f} ms)")
    for rank, hit in enumerate(response.hits, start=args.offset + 1):
        price = f"{hit.price:.0f}" if hit.HasField("price") else "-"
        print(f"{rank:3d}. {hit.score:.3f}  {hit.title}  [{hit.category}]  {hit.brand}  {price}  id={hit.product_id}")
    return 0


def _flag_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semsearch", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING… (default: $SEMSEARCH_LOG_LEVEL or INFO; "
                        "DEBUG logs one line per request)")
    parser.add_argument("--log-format", choices=FORMATS,
                        help="log lines as JSON objects or plain text (default: $SEMSEARCH_LOG_FORMAT, else json for "
                             "serve and text for query)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gRPC search service")
    serve.add_argument("--index-dir", help="index directory written by semsearch-index (default: var/index)")
    serve.add_argument("--model-dir", help="exported model directory (default: models/all-minilm-l6-v2)")
    serve.add_argument("--listen", help="HOST:PORT to bind (default: 127.0.0.1:50051)")
    serve.add_argument("--cache-dir", help="L2 embedding cache directory (default: beside the index dir)")
    serve.add_argument("--config", help="TOML config file ([paths], [service] sections)")
    serve.add_argument("--tls-cert", help="PEM server certificate (TLS on, with --tls-key)")
    serve.add_argument("--tls-key", help="PEM private key of the server certificate")
    serve.add_argument("--tls-client-ca", help="PEM CA that client certificates must chain to (mutual TLS)")
    serve.add_argument("--auth-tokens-file", help="file with accepted bearer tokens, one per line")
    serve.add_argument("--metrics-listen", metavar="HOST:PORT",
                       help="serve Prometheus metrics over HTTP here, e.g. 127.0.0.1:9464 (default: off)")
    serve.add_argument("--metrics-public", action="store_const", const=True,
                       help="allow a --metrics-listen host that is not a loopback address")
    serve.add_argument("--slow-query-ms", type=float,
                       help="log requests slower than this at WARNING with their stage timings (default: 250)")
    serve.add_argument("--log-queries", action="store_const", const=True,
                       help="include query text in request logs (off by default: searches are personal data)")
    serve.set_defaults(run=_cmd_serve)

    query = commands.add_parser("query", help="send one query to a running service")
    query.add_argument("text", help="the query")
    query.add_argument("--target", default="127.0.0.1:50051", help="HOST:PORT of the service (default: %(default)s)")
    query.add_argument("--top-k", type=int, default=10, help="number of hits (default: %(default)s)")
    query.add_argument("--offset", type=int, default=0, help="skip this many hits (pagination)")
    query.add_argument("--category", help="category prefix filter, e.g. 'Footwear > Shoes'")
    query.add_argument("--brand", action="append", help="brand filter (repeatable)")
    query.add_argument("--price-min", type=float, help="minimum price")
    query.add_argument("--price-max", type=float, help="maximum price")
    query.add_argument("--in-stock", type=_flag_bool, help="true or false")
    query.add_argument("--timeout", type=float, default=10.0, help="deadline in seconds (default: %(default)s)")
    query.add_argument("--json", action="store_true", help="print the response as JSON")
    query.add_argument("--ca-cert", help="PEM CA to verify a TLS server (TLS on)")
    query.add_argument("--client-cert", help="PEM client certificate (mutual TLS, with --client-key)")
    query.add_argument("--client-key", help="PEM client private key")
    query.set_defaults(run=_cmd_query)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    level = args.log_level or environ.get("SEMSEARCH_LOG_LEVEL", "INFO")
    fmt = args.log_format or environ.get("SEMSEARCH_LOG_FORMAT") or ("json" if args.command == "serve" else "text")
    try:
        configure_logging(level, fmt)
    except ValueError as err:
        print(f"semsearch: error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        return args.run(args, environ)
    except (SemsearchError, ConfigError, OSError, RuntimeError) as err:
        print(f"semsearch: error: {err}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
