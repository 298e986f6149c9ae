"""gRPC edge: protobuf <-> SearchService, Semsearch errors <-> status codes.

Nothing here decides anything about search; it translates. Health and
reflection are registered beside the search service so stock tools (grpcurl,
grpc_health_probe) can list, check and call everything.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, Awaitable, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from search.errors import InvalidArgument, SemsearchError
from search.filters import Filters
from search.proto import search_pb2, search_pb2_grpc
from search.service import SearchOutcome, SearchQuery, SearchService

log = logging.getLogger(__name__)

SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name
_TIMING_FIELDS = {
    "normalize": "normalize_ms", "result_cache": "result_cache_ms", "l1": "l1_ms", "l2": "l2_ms",
    "encode": "encode_ms", "search": "search_ms", "hydrate": "hydrate_ms", "total": "total_ms",
}


def filters_from_proto(message: search_pb2.Filters) -> Filters:
    """Proto filters -> Filters; InvalidArgument names the bad field."""
    for name in ("price_min", "price_max"):
        if message.HasField(name) and math.isnan(getattr(message, name)):
            raise InvalidArgument(f"filters.{name}: must be a number, got NaN")
    return Filters(
        category_prefix=message.category_prefix if message.HasField("category_prefix") else None,
        brands=frozenset(message.brands),
        price_min=message.price_min if message.HasField("price_min") else None,
        price_max=message.price_max if message.HasField("price_max") else None,
        in_stock=message.in_stock if message.HasField("in_stock") else None,
    )


def query_from_proto(request: search_pb2.SearchRequest) -> SearchQuery:
    return SearchQuery(
        text=request.query,
        top_k=request.top_k,
        offset=request.offset,
        filters=filters_from_proto(request.filters) if request.HasField("filters") else Filters(),
    )


def response_to_proto(outcome: SearchOutcome) -> search_pb2.SearchResponse:
    response = search_pb2.SearchResponse(
        snapshot_version=outcome.snapshot_version,
        model_fingerprint=outcome.model_fingerprint,
        embedding_tier=search_pb2.EmbeddingTier.Value(outcome.tier),
        normalized_query=outcome.normalized,
        timings=search_pb2.StageTimings(**{_TIMING_FIELDS[k]: v for k, v in outcome.timings_ms.items()}),
    )
    for hit in outcome.hits:
        p = hit.product
        entry = response.hits.add(
            product_id=p.id, score=hit.score, title=p.title, category=p.category, brand=p.brand, in_stock=p.in_stock
        )
        if p.price is not None:
            entry.price = p.price
    return response


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    """Translates each RPC; errors become status codes in ``_call``."""

    def __init__(self, service: SearchService) -> None:
        self.service = service

    async def _call(self, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[Any]]) -> Any:
        try:
            with self.service.admit():
                return await work()
        except SemsearchError as err:
            await context.abort(grpc.StatusCode[err.status], str(err))
        except Exception:
            log.exception("internal error")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    async def Search(self, request: search_pb2.SearchRequest, context: grpc.aio.ServicerContext) -> search_pb2.SearchResponse:
        async def work() -> search_pb2.SearchResponse:
            outcome = await self.service.search(query_from_proto(request), deadline=_deadline(context))
            return response_to_proto(outcome)

        return await self._call(context, work)

    async def BatchSearch(
        self, request: search_pb2.BatchSearchRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.BatchSearchResponse:
        async def work() -> search_pb2.BatchSearchResponse:
            limit = self.service.settings.max_batch_queries
            if not request.requests:
                raise InvalidArgument("requests: must hold at least one query")
            if len(request.requests) > limit:
                raise InvalidArgument(f"requests: at most {limit} queries per batch, got {len(request.requests)}")
            deadline = _deadline(context)
            outcomes = await asyncio.gather(
                *(self._one(item, deadline) for item in request.requests), return_exceptions=False
            )
            return search_pb2.BatchSearchResponse(results=outcomes)

        return await self._call(context, work)

    async def _one(self, item: search_pb2.SearchRequest, deadline: float | None) -> search_pb2.BatchSearchResult:
        try:
            outcome = await self.service.search(query_from_proto(item), deadline=deadline)
            return search_pb2.BatchSearchResult(response=response_to_proto(outcome))
        except SemsearchError as err:
            code = grpc.StatusCode[err.status].value[0]
            return search_pb2.BatchSearchResult(error=search_pb2.Error(code=code, message=str(err)))
        except Exception:
            log.exception("internal error in a batch query")
            code = grpc.StatusCode.INTERNAL.value[0]
            return search_pb2.BatchSearchResult(error=search_pb2.Error(code=code, message="internal error"))

    async def GetIndexInfo(self, request: search_pb2.GetIndexInfoRequest, context: grpc.aio.ServicerContext) -> search_pb2.IndexInfo:
        async def work() -> search_pb2.IndexInfo:
            return search_pb2.IndexInfo(**self.service.index_info())

        return await self._call(context, work)


def create_server(
    service: SearchService, listen: str, *, max_receive_bytes: int = 1 << 20
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A grpc.aio server with search, health and reflection, bound to ``listen``; returns (server, port, health).

    ``listen`` may use port 0 (tests): the bound port is returned. Health
    starts NOT_SERVING; the caller flips it once the model is warm and a
    snapshot is loaded. Raises RuntimeError when the address cannot be bound.
    """
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_receive_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    search_pb2_grpc.add_SearchServiceServicer_to_server(SearchServicer(service), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise RuntimeError(f"cannot listen on {listen}")
    return server, port, health_servicer


NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


async def set_health(health_servicer: health.aio.HealthServicer, status: int) -> None:
    """Set the overall ("") and the search service's health status."""
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, status)
