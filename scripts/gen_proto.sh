#!/usr/bin/env bash
# Regenerate search/proto/ from proto/semsearch/v1/search.proto (run after editing the .proto).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-search/proto}
mkdir -p "$out"
.venv/bin/python -m grpc_tools.protoc -I proto --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    proto/semsearch/v1/search.proto
# protoc mirrors the proto package as folders; flatten into one package with relative imports.
mv "$out"/semsearch/v1/search_pb2.py "$out"/semsearch/v1/search_pb2.pyi "$out"/semsearch/v1/search_pb2_grpc.py "$out"/
rm -r "$out"/semsearch
sed -i 's/^from semsearch\.v1 import search_pb2 as/from . import search_pb2 as/' "$out"/search_pb2_grpc.py
[ -f "$out/__init__.py" ] || printf '"""Generated gRPC code for proto/semsearch/v1/search.proto (scripts/gen_proto.sh)."""\n' > "$out/__init__.py"
