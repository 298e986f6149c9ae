"""Semsearch's error hierarchy.

Every error carries the name of the gRPC status code it maps to, so the server
translates errors to statuses in one place and the library never imports grpc
for error handling.
"""

from __future__ import annotations


class SemsearchError(Exception):
    """Base class; ``status`` names a ``grpc.StatusCode`` member."""

    status = "INTERNAL"


class InvalidArgument(SemsearchError):
    """A request or input field is invalid; the message names the field."""

    status = "INVALID_ARGUMENT"


class Unavailable(SemsearchError):
    """The service cannot answer yet (no snapshot, model not loaded)."""

    status = "UNAVAILABLE"


class ResourceExhausted(SemsearchError):
    """Too many requests in flight; the caller should back off."""

    status = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(SemsearchError):
    """The request's deadline passed before it could be answered."""

    status = "DEADLINE_EXCEEDED"


class ModelLoadError(SemsearchError):
    """The model directory is missing, incomplete or corrupt."""

    status = "FAILED_PRECONDITION"


class SnapshotError(SemsearchError):
    """An index snapshot is missing, corrupt, or does not match the encoder."""

    status = "FAILED_PRECONDITION"
