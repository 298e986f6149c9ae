"""Generated requests against a running server: every answer is a success or a documented status code.

The server must stay SERVING and its memory bounded through all of it.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.config import Paths, ServiceSettings
from search.proto import search_pb2
from tests.harness import RunningService, build_index

pytestmark = pytest.mark.model

MAX_RECEIVE = 64 * 1024
DOCUMENTED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, model_dir: Path):
    tmp = tmp_path_factory.mktemp("fuzz")
    index_dir = build_index(tmp / "index", model_dir, 200)
    paths = Paths(index_dir=index_dir, model_dir=model_dir, cache_dir=tmp / "l2")
    with RunningService(paths, ServiceSettings(max_receive_bytes=MAX_RECEIVE, result_cache_bytes=1 << 20,
                                               l1_bytes=1 << 20, l2_bytes=4 << 20)) as service:
        yield service


any_text = st.text(st.characters(codec="utf-8"), max_size=600)  # arbitrary Unicode, control characters included
floats = st.floats(allow_nan=True, allow_infinity=True)
filters = st.builds(
    search_pb2.Filters,
    brands=st.lists(any_text, max_size=4),
    **{name: st.one_of(st.none(), strategy) for name, strategy in
       (("category_prefix", any_text), ("price_min", floats), ("price_max", floats), ("in_stock", st.booleans()))},
)
ints = st.one_of(st.integers(-2**31, 2**31 - 1), st.sampled_from([0, 1, 10, 100, 101, 1000, -1]))
requests = st.builds(
    lambda query, top_k, offset, f: search_pb2.SearchRequest(query=query, top_k=top_k, offset=offset,
                                                             **({"filters": f} if f is not None else {})),
    any_text, ints, ints, st.one_of(st.none(), filters),
)


def _assert_documented(call) -> None:
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() in DOCUMENTED, (err.code(), err.details())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests)
def test_generated_searches_get_an_answer_or_a_documented_code(running: RunningService, request: search_pb2.SearchRequest) -> None:
    with running.client() as client:
        _assert_documented(lambda: client._stub.Search(request, timeout=30))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(requests, max_size=40))
def test_generated_batches_answer_each_query_or_refuse_the_batch(running: RunningService, batch: list) -> None:
    with running.client() as client:
        try:
            response = client.batch_search(batch, timeout=60)
        except grpc.RpcError as err:
            assert err.code() in DOCUMENTED, (err.code(), err.details())
            if err.code() == grpc.StatusCode.INVALID_ARGUMENT:  # only the batch's own shape refuses it whole
                assert not batch or len(batch) > running.app.settings.max_batch_queries
            return
        assert len(response.results) == len(batch)
        for result in response.results:
            assert result.HasField("response") or grpc.StatusCode.INVALID_ARGUMENT.value[0] == result.error.code


@pytest.mark.parametrize("size", [MAX_RECEIVE // 2, MAX_RECEIVE - 64, MAX_RECEIVE + 1, 4 * MAX_RECEIVE])
def test_strings_up_to_and_past_the_message_limit(running: RunningService, size: int) -> None:
    with running.client() as client:
        with pytest.raises(grpc.RpcError) as caught:
            client._stub.Search(search_pb2.SearchRequest(query="é" * (size // 2)), timeout=30)
        expected = grpc.StatusCode.RESOURCE_EXHAUSTED if size > MAX_RECEIVE else grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.code() == expected


def test_after_the_fuzzing_the_server_serves_and_memory_is_bounded(running: RunningService) -> None:
    process = psutil.Process()
    before = process.memory_info().rss
    with running.client() as client:
        for i in range(300):
            _assert_documented(lambda: client.search(f"memory probe {i} " + "x" * (i % 400), top_k=(i % 120)))
        assert client.health() == "SERVING"
        assert len(client.search("shoes", top_k=5).hits) == 5
    # 300 distinct queries with small caches: growth stays within the caches' bounds plus slack.
    assert process.memory_info().rss - before < 64 << 20
