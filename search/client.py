"""A small synchronous Python client for the Semsearch gRPC API."""

from __future__ import annotations

from typing import Any, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from search.proto import search_pb2, search_pb2_grpc


def make_filters(
    *,
    category_prefix: str | None = None,
    brands: Sequence[str] = (),
    price_min: float | None = None,
    price_max: float | None = None,
    in_stock: bool | None = None,
) -> search_pb2.Filters:
    message = search_pb2.Filters(brands=list(brands))
    for name, value in (("category_prefix", category_prefix), ("price_min", price_min),
                        ("price_max", price_max), ("in_stock", in_stock)):
        if value is not None:
            setattr(message, name, value)
    return message


class SearchClient:
    """Blocking client; ``with SearchClient("127.0.0.1:50051") as c: c.search("red shoes")``.

    Methods raise grpc.RpcError with the server's status code and message.
    """

    def __init__(
        self,
        target: str,
        *,
        metadata: Sequence[tuple[str, str]] = (),
        channel: grpc.Channel | None = None,
        token: str | None = None,
        root_certificates: bytes | None = None,
        client_certificate: tuple[bytes, bytes] | None = None,
        server_name: str | None = None,
    ) -> None:
        """Plaintext by default; TLS when ``root_certificates`` is given (``client_certificate``
        = (key PEM, cert PEM) for mutual TLS); ``token`` is sent as a bearer token."""
        if channel is None and root_certificates is not None:
            key, cert = client_certificate or (None, None)
            credentials = grpc.ssl_channel_credentials(root_certificates, private_key=key, certificate_chain=cert)
            options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
            channel = grpc.secure_channel(target, credentials, options=options)
        self.channel = channel or grpc.insecure_channel(target)
        if token is not None:
            metadata = (*metadata, ("authorization", f"Bearer {token}"))
        self._stub = search_pb2_grpc.SearchServiceStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._metadata = tuple(metadata)

    def search(
        self, query: str, *, top_k: int = 0, offset: int = 0, filters: search_pb2.Filters | None = None,
        timeout: float | None = 10.0,
    ) -> search_pb2.SearchResponse:
        request = search_pb2.SearchRequest(query=query, top_k=top_k, offset=offset)
        if filters is not None:
            request.filters.CopyFrom(filters)
        return self._stub.Search(request, timeout=timeout, metadata=self._metadata)

    def batch_search(self, requests: Sequence[search_pb2.SearchRequest], *, timeout: float | None = 10.0) -> search_pb2.BatchSearchResponse:
        return self._stub.BatchSearch(search_pb2.BatchSearchRequest(requests=list(requests)), timeout=timeout, metadata=self._metadata)

    def index_info(self, *, timeout: float | None = 10.0) -> search_pb2.IndexInfo:
        return self._stub.GetIndexInfo(search_pb2.GetIndexInfoRequest(), timeout=timeout, metadata=self._metadata)

    def health(self, service: str = "", *, timeout: float | None = 5.0) -> str:
        """"SERVING", "NOT_SERVING", ... for ``service`` ("" = the whole server)."""
        response = self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout, metadata=self._metadata)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> SearchClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
