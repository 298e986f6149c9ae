"""Access control: TLS (optionally mutual) and bearer-token authentication.

Tokens are read from a file (one per line, ``#`` comments) so they never sit
in the config or the process list, and are compared in constant time. Every
RPC needs ``authorization: Bearer <token>`` metadata when tokens are
configured, except the standard health service, which load balancers probe
without credentials.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Awaitable, Callable, Iterable

import grpc

from search.config import ConfigError

HEALTH_PREFIX = "/grpc.health.v1.Health/"


class SecurityConfigError(ConfigError):
    """A certificate, key or token file is missing or unusable; the message names it."""


def _read(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise SecurityConfigError(f"{what} {path}: {err.strerror or err}") from err
    if not data.strip():
        raise SecurityConfigError(f"{what} {path} is empty")
    return data


def server_credentials(cert: Path | None, key: Path | None, client_ca: Path | None) -> grpc.ServerCredentials | None:
    """TLS credentials, or None for plaintext. With ``client_ca``, clients must present a certificate it signed."""
    if cert is None and key is None:
        if client_ca is not None:
            raise SecurityConfigError("tls_client_ca needs tls_cert and tls_key")
        return None
    if cert is None or key is None:
        raise SecurityConfigError("tls_cert and tls_key must be set together")
    pair = [(_read(key, "TLS key"), _read(cert, "TLS certificate"))]
    if client_ca is None:
        return grpc.ssl_server_credentials(pair)
    return grpc.ssl_server_credentials(pair, root_certificates=_read(client_ca, "TLS client CA"), require_client_auth=True)


def read_tokens(path: Path) -> frozenset[str]:
    """Tokens from ``path``: one per line, blank lines and ``#`` comments ignored."""
    lines = _read(path, "token file").decode("utf-8", errors="strict").splitlines()
    tokens = frozenset(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))
    if not tokens:
        raise SecurityConfigError(f"token file {path} holds no token")
    return tokens


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Answers UNAUTHENTICATED, before any handler runs, to calls without a valid bearer token."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(t.encode() for t in tokens)

    def _valid(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                text = value.decode() if isinstance(value, bytes) else value
                scheme, _, token = text.partition(" ")
                if scheme.lower() == "bearer":
                    candidate = token.strip().encode()
                    # Check every token: the time taken says nothing about which matched.
                    return any([hmac.compare_digest(candidate, t) for t in self._tokens])
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        if self._valid(handler_call_details.invocation_metadata):
            return handler
        return _denial(handler)


async def _deny(request_or_iterator: object, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token (authorization metadata)")


def _denial(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that refuses the call."""
    kwargs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_deny, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_deny, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_deny, **kwargs)
    return grpc.unary_unary_rpc_method_handler(_deny, **kwargs)
