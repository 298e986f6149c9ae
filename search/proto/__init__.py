"""Generated gRPC code for proto/semsearch/v1/search.proto (scripts/gen_proto.sh)."""
