"""Access control over real channels: TLS, mutual TLS, bearer tokens, message size, loopback default."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from search.client import SearchClient
from search.config import Paths, ServiceSettings
from search.proto import search_pb2
from tests.harness import RunningService, build_index

pytestmark = pytest.mark.model


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=semsearch-test-ca", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        extra = ["-extfile", "san.ext"] if name == "server" else []
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", *extra, cwd=d)
    return d


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Paths:
    tmp = tmp_path_factory.mktemp("access")
    build_index(tmp / "index", model_dir, 60)
    return Paths(index_dir=tmp / "index", model_dir=model_dir, cache_dir=tmp / "l2")


def test_default_bind_is_loopback() -> None:
    assert ServiceSettings().listen.startswith("127.0.0.1:")


def test_tls_refuses_plaintext_and_serves_a_verified_client(paths: Paths, pki: Path) -> None:
    settings = ServiceSettings(tls_cert=pki / "server.pem", tls_key=pki / "server.key")
    with RunningService(paths, settings) as running:
        with SearchClient(running.target) as plain, pytest.raises(grpc.RpcError) as caught:
            plain.search("shoes", timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        with SearchClient(running.target, root_certificates=(pki / "ca.pem").read_bytes()) as client:
            assert len(client.search("shoes", top_k=3).hits) == 3


def test_mutual_tls_needs_a_client_certificate(paths: Paths, pki: Path) -> None:
    settings = ServiceSettings(tls_cert=pki / "server.pem", tls_key=pki / "server.key", tls_client_ca=pki / "ca.pem")
    root = (pki / "ca.pem").read_bytes()
    with RunningService(paths, settings) as running:
        with SearchClient(running.target, root_certificates=root) as anonymous, pytest.raises(grpc.RpcError) as caught:
            anonymous.search("shoes", timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        pair = ((pki / "client.key").read_bytes(), (pki / "client.pem").read_bytes())
        with SearchClient(running.target, root_certificates=root, client_certificate=pair) as client:
            assert len(client.search("shoes", top_k=2).hits) == 2


def test_tokens_guard_every_rpc_but_health(paths: Paths, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# shop frontends\nfront-1-secret\nfront-2-secret\n")
    with RunningService(paths, ServiceSettings(auth_tokens_file=tokens)) as running:
        with SearchClient(running.target) as anonymous:
            assert anonymous.health() == "SERVING"
            for call in (lambda: anonymous.search("shoes"), anonymous.index_info):
                with pytest.raises(grpc.RpcError) as caught:
                    call()
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with SearchClient(running.target, token="wrong") as wrong, pytest.raises(grpc.RpcError) as caught:
            wrong.search("shoes")
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with SearchClient(running.target, token="front-2-secret") as client:
            assert len(client.search("shoes", top_k=4).hits) == 4
            assert client.index_info().product_count == 60
        grpcurl = shutil.which("grpcurl") or str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "grpcurl")
        refused = subprocess.run([grpcurl, "-plaintext", running.target, "list"], capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "Unauthenticated" in refused.stderr
        allowed = subprocess.run([grpcurl, "-plaintext", "-H", "authorization: Bearer front-1-secret", running.target, "list"],
                                 capture_output=True, text=True, timeout=60)
        assert "semsearch.v1.SearchService" in allowed.stdout


def test_messages_over_the_receive_limit_are_refused(paths: Paths) -> None:
    with RunningService(paths, ServiceSettings(max_receive_bytes=4096)) as running, running.client() as client:
        with pytest.raises(grpc.RpcError) as caught:
            client._stub.Search(search_pb2.SearchRequest(query="x" * 10_000), timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.health() == "SERVING"
        assert len(client.search("shoes", top_k=1).hits) == 1


def test_unusable_security_files_fail_at_start_naming_them(paths: Paths, tmp_path: Path) -> None:
    from search.security import SecurityConfigError

    for settings, named in (
        (ServiceSettings(tls_cert=tmp_path / "missing.pem", tls_key=tmp_path / "missing.key"), "missing"),
        (ServiceSettings(tls_cert=tmp_path / "x.pem"), "tls_cert and tls_key"),
        (ServiceSettings(auth_tokens_file=tmp_path / "empty"), "empty"),
    ):
        (tmp_path / "empty").write_text("\n# nothing\n")
        with pytest.raises(SecurityConfigError, match=named):
            RunningService(paths, replace(settings))
