"""Semsearch service library: encoder, caches, index, gRPC service."""

__version__ = "0.1.0"
