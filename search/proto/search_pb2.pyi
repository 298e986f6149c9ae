from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbeddingTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMBEDDING_TIER_UNSPECIFIED: _ClassVar[EmbeddingTier]
    RESULT_CACHE: _ClassVar[EmbeddingTier]
    L1: _ClassVar[EmbeddingTier]
    L2: _ClassVar[EmbeddingTier]
    ENCODER: _ClassVar[EmbeddingTier]
    COALESCED: _ClassVar[EmbeddingTier]
EMBEDDING_TIER_UNSPECIFIED: EmbeddingTier
RESULT_CACHE: EmbeddingTier
L1: EmbeddingTier
L2: EmbeddingTier
ENCODER: EmbeddingTier
COALESCED: EmbeddingTier

class Filters(_message.Message):
    __slots__ = ("category_prefix", "brands", "price_min", "price_max", "in_stock")
    CATEGORY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    BRANDS_FIELD_NUMBER: _ClassVar[int]
    PRICE_MIN_FIELD_NUMBER: _ClassVar[int]
    PRICE_MAX_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_FIELD_NUMBER: _ClassVar[int]
    category_prefix: str
    brands: _containers.RepeatedScalarFieldContainer[str]
    price_min: float
    price_max: float
    in_stock: bool
    def __init__(self, category_prefix: _Optional[str] = ..., brands: _Optional[_Iterable[str]] = ..., price_min: _Optional[float] = ..., price_max: _Optional[float] = ..., in_stock: _Optional[bool] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "top_k", "filters", "offset")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    query: str
    top_k: int
    filters: Filters
    offset: int
    def __init__(self, query: _Optional[str] = ..., top_k: _Optional[int] = ..., filters: _Optional[_Union[Filters, _Mapping]] = ..., offset: _Optional[int] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("product_id", "score", "title", "category", "brand", "price", "in_stock")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    score: float
    title: str
    category: str
    brand: str
    price: float
    in_stock: bool
    def __init__(self, product_id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., brand: _Optional[str] = ..., price: _Optional[float] = ..., in_stock: _Optional[bool] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("normalize_ms", "result_cache_ms", "l1_ms", "l2_ms", "encode_ms", "search_ms", "hydrate_ms", "total_ms")
    NORMALIZE_MS_FIELD_NUMBER: _ClassVar[int]
    RESULT_CACHE_MS_FIELD_NUMBER: _ClassVar[int]
    L1_MS_FIELD_NUMBER: _ClassVar[int]
    L2_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_MS_FIELD_NUMBER: _ClassVar[int]
    HYDRATE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    normalize_ms: float
    result_cache_ms: float
    l1_ms: float
    l2_ms: float
    encode_ms: float
    search_ms: float
    hydrate_ms: float
    total_ms: float
    def __init__(self, normalize_ms: _Optional[float] = ..., result_cache_ms: _Optional[float] = ..., l1_ms: _Optional[float] = ..., l2_ms: _Optional[float] = ..., encode_ms: _Optional[float] = ..., search_ms: _Optional[float] = ..., hydrate_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "snapshot_version", "model_fingerprint", "embedding_tier", "timings", "normalized_query")
    HITS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_TIER_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_QUERY_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    snapshot_version: int
    model_fingerprint: str
    embedding_tier: EmbeddingTier
    timings: StageTimings
    normalized_query: str
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., snapshot_version: _Optional[int] = ..., model_fingerprint: _Optional[str] = ..., embedding_tier: _Optional[_Union[EmbeddingTier, str]] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., normalized_query: _Optional[str] = ...) -> None: ...

class BatchSearchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SearchRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SearchRequest, _Mapping]]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class BatchSearchResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: SearchResponse
    error: Error
    def __init__(self, response: _Optional[_Union[SearchResponse, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class BatchSearchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchSearchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchSearchResult, _Mapping]]] = ...) -> None: ...

class GetIndexInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IndexInfo(_message.Message):
    __slots__ = ("snapshot_version", "product_count", "model_fingerprint", "index_type", "index_params", "created", "dimension", "normalization_version", "max_top_k", "drift_state", "drift_psi", "drift_reference")
    class IndexParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class DriftPsiEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SNAPSHOT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    INDEX_TYPE_FIELD_NUMBER: _ClassVar[int]
    INDEX_PARAMS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_TOP_K_FIELD_NUMBER: _ClassVar[int]
    DRIFT_STATE_FIELD_NUMBER: _ClassVar[int]
    DRIFT_PSI_FIELD_NUMBER: _ClassVar[int]
    DRIFT_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    snapshot_version: int
    product_count: int
    model_fingerprint: str
    index_type: str
    index_params: _containers.ScalarMap[str, str]
    created: str
    dimension: int
    normalization_version: int
    max_top_k: int
    drift_state: str
    drift_psi: _containers.ScalarMap[str, float]
    drift_reference: str
    def __init__(self, snapshot_version: _Optional[int] = ..., product_count: _Optional[int] = ..., model_fingerprint: _Optional[str] = ..., index_type: _Optional[str] = ..., index_params: _Optional[_Mapping[str, str]] = ..., created: _Optional[str] = ..., dimension: _Optional[int] = ..., normalization_version: _Optional[int] = ..., max_top_k: _Optional[int] = ..., drift_state: _Optional[str] = ..., drift_psi: _Optional[_Mapping[str, float]] = ..., drift_reference: _Optional[str] = ...) -> None: ...
