"""gRPC edge: protobuf <-> SearchService, Semsearch errors <-> status codes.

Nothing here decides anything about search; it translates. Health and
reflection are registered beside the search service so stock tools (grpcurl,
grpc_health_probe) can list, check and call everything. One interceptor
(``TelemetryInterceptor``) does what every search RPC needs: the request id,
the request's latency and status code for metrics, and its log lines.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Any, Awaitable, Callable, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from search.errors import InvalidArgument, SemsearchError
from search.filters import Filters
from search.logs import request_id
from search.proto import search_pb2, search_pb2_grpc
from search.security import TokenAuthInterceptor
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


REQUEST_ID_KEY = "x-request-id"
MAX_REQUEST_ID_CHARS = 128
_TIMING_STAGES = [(name, field) for name, field in _TIMING_FIELDS.items() if name != "total"]


class RequestObserver(Protocol):
    """Told about every finished search-service RPC (metrics); must be quick and must not raise."""

    def observe_request(self, method: str, code: str, seconds: float) -> None: ...


def choose_request_id(metadata: Any) -> str:
    """The client's ``x-request-id`` if it is 1..128 printable ASCII characters, else a new uuid4 hex."""
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str):
            if 0 < len(value) <= MAX_REQUEST_ID_CHARS and value.isascii() and value.isprintable():
                return value
            break
    return uuid.uuid4().hex


def _stages(response: Any) -> dict[str, float] | list[dict[str, float]] | None:
    """Milliseconds per stage of a search response, a list of them for a batch; None for other responses."""
    if isinstance(response, search_pb2.BatchSearchResponse):
        return [_stages(r.response) for r in response.results if r.HasField("response")]
    if not isinstance(response, search_pb2.SearchResponse):
        return None
    # Stages that did not run are 0 in the proto; leave them out.
    return {name: round(getattr(response.timings, f), 3) for name, f in _TIMING_STAGES if getattr(response.timings, f)}


def _summary(response: Any) -> dict[str, Any]:
    """What the request log line tells about a response (never query text)."""
    if isinstance(response, search_pb2.SearchResponse):
        return {"tier": search_pb2.EmbeddingTier.Name(response.embedding_tier), "hits": len(response.hits),
                "snapshot_version": response.snapshot_version}
    if isinstance(response, search_pb2.BatchSearchResponse):
        answered = [r.response for r in response.results if r.HasField("response")]
        return {"tier": [search_pb2.EmbeddingTier.Name(r.embedding_tier) for r in answered],
                "hits": sum(len(r.hits) for r in answered),
                "snapshot_version": answered[0].snapshot_version if answered else None,
                "queries": len(response.results), "failed_queries": len(response.results) - len(answered)}
    if isinstance(response, search_pb2.IndexInfo):
        return {"snapshot_version": response.snapshot_version}
    return {}


def _query_text(request: Any) -> str | list[str] | None:
    if isinstance(request, search_pb2.SearchRequest):
        return request.query
    if isinstance(request, search_pb2.BatchSearchRequest):
        return [r.query for r in request.requests]
    return None


class TelemetryInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each SearchService RPC (health and reflection pass untouched).

    Per RPC: a request id (the client's valid ``x-request-id`` or a new one)
    set as ``search.logs.request_id`` and returned in trailing metadata, on
    errors too; ``observer.observe_request(method, code, seconds)``; one DEBUG
    line; one WARNING line with the stage breakdown above ``slow_query_ms``.
    Query text is logged only when ``log_queries`` is true.
    """

    def __init__(self, *, observer: RequestObserver | None, slow_query_ms: float, log_queries: bool) -> None:
        self._observer = observer
        self._slow_ms = slow_query_ms
        self._log_queries = log_queries

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        service, _, method = handler_call_details.method.rpartition("/")
        if handler is None or handler.unary_unary is None or service != f"/{SERVICE_NAME}":
            return handler
        inner = handler.unary_unary

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            rid = choose_request_id(context.invocation_metadata())
            token = request_id.set(rid)
            context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
            started = time.perf_counter()
            code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
            response = None
            try:
                response = await inner(request, context)
                code = context.code() or grpc.StatusCode.OK
                return response
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED  # the client went away or its deadline passed
                raise
            except BaseException:
                code = context.code() or grpc.StatusCode.UNKNOWN  # abort() set it
                raise
            finally:
                self._finish(method, code.name, time.perf_counter() - started, request, response, rid)
                request_id.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )

    def _finish(self, method: str, code: str, seconds: float, request: Any, response: Any, rid: str) -> None:
        if self._observer is not None:
            try:
                self._observer.observe_request(method, code, seconds)
            except Exception:
                log.exception("request observer failed")
        ms = seconds * 1000
        slow = ms > self._slow_ms
        if not slow and not log.isEnabledFor(logging.DEBUG):
            return  # the common case at INFO pays for nothing below
        fields: dict[str, Any] = {"method": method, "code": code, "duration_ms": round(ms, 3), "request_id": rid,
                                  **_summary(response)}
        if self._log_queries:
            fields["query"] = _query_text(request)
        log.debug("%s %s %.1f ms request_id=%s", method, code, ms, rid, extra=fields)
        if slow:
            stages = _stages(response)
            log.warning("slow request: %s %s %.1f ms (over %s ms) request_id=%s stages=%s", method, code, ms,
                        self._slow_ms, rid, stages, extra={**fields, "stages": stages, "slow_query_ms": self._slow_ms})


def create_server(
    service: SearchService,
    listen: str,
    *,
    max_receive_bytes: int = 1 << 20,
    observer: RequestObserver | None = None,
    credentials: grpc.ServerCredentials | None = None,
    tokens: frozenset[str] | None = None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A grpc.aio server with search, health and reflection, bound to ``listen``; returns (server, port, health).

    ``listen`` may use port 0 (tests): the bound port is returned. Health
    starts NOT_SERVING; the caller flips it once the model is warm and a
    snapshot is loaded. Search RPCs go through ``TelemetryInterceptor``
    (``observer`` gets their latency; logging follows the service's
    ``slow_query_ms`` and ``log_queries``). Raises RuntimeError when the
    address cannot be bound. With ``credentials`` the port speaks TLS; with
    ``tokens`` every RPC but health needs a bearer token.

    Shedding has two gates, both answered before any handler runs. gRPC's
    concurrent-RPC cap (``max_in_flight``) refuses a call with
    RESOURCE_EXHAUSTED as the event loop takes it off the transport -- cheaper
    than ``SearchService.admit``, which stays as the exact count. But the loop
    takes calls one at a time, and when it is saturated they would wait unseen
    in the transport; so the transport's pending-call queue is bounded too
    (``max_pending_calls``), past which gRPC refuses at once with CANCELLED.
    How each gate moved admitted p99 and goodput at 3x capacity is in
    bench/RESULTS.md (overload section).
    """
    s = service.settings
    telemetry = TelemetryInterceptor(observer=observer, slow_query_ms=s.slow_query_ms, log_queries=s.log_queries)
    interceptors: list[grpc.aio.ServerInterceptor] = [telemetry]
    if tokens:
        interceptors.append(TokenAuthInterceptor(tokens))
    server = grpc.aio.server(
        interceptors=interceptors,
        maximum_concurrent_rpcs=s.max_in_flight,
        options=[
            ("grpc.max_receive_message_length", max_receive_bytes),
            ("grpc.so_reuseport", 0),
            # Calls the transport has read but the event loop has not taken
            # yet: past the soft bound some, past twice it all new ones are
            # refused at once (CANCELLED, by gRPC itself) instead of queueing
            # unseen while the loop is saturated.
            ("grpc.server.max_pending_requests", s.max_pending_calls),
            ("grpc.server.max_pending_requests_hard_limit", 2 * s.max_pending_calls),
        ]
    )
    search_pb2_grpc.add_SearchServiceServicer_to_server(SearchServicer(service), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    port = server.add_secure_port(listen, credentials) if credentials is not None else server.add_insecure_port(listen)
    if port == 0:
        raise RuntimeError(f"cannot listen on {listen}")
    return server, port, health_servicer


NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


async def set_health(health_servicer: health.aio.HealthServicer, status: int) -> None:
    """Set the overall ("") and the search service's health status."""
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, status)
