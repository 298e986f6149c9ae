#!/usr/bin/env bash
# Set everything up (scripts/setup.sh), index the bundled sample catalog, and run the service
# on 127.0.0.1:50051 until Ctrl-C. Query it from a second terminal:
#   .venv/bin/semsearch query "red running shoes"
#   .venv/bin/grpcurl -plaintext -d '{"query": "kurta", "top_k": 3}' 127.0.0.1:50051 semsearch.v1.SearchService/Search
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export SEMSEARCH_INDEX_DIR=${SEMSEARCH_INDEX_DIR:-var/index}
# A no-op when the sample is already indexed.
.venv/bin/semsearch-index ingest data/myntra_sample/products.jsonl.gz
echo 'In another terminal: .venv/bin/semsearch query "red running shoes"'
exec .venv/bin/semsearch serve "$@"
