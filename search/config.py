"""Configuration: one TOML file, ``SEMSEARCH_*`` environment overrides, then CLI flags.

Read once at an entry point into frozen, keyword-only dataclasses and passed
down; nothing reads the environment at import. Each section is a dataclass;
every field ``name`` of a section can be overridden by the environment
variable ``SEMSEARCH_<NAME>`` (field names are unique across sections).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TypeVar

from search.l2_cache import MIN_L2_BYTES

ENV_PREFIX = "SEMSEARCH_"
T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the setting and its source."""


@dataclass(frozen=True, kw_only=True)
class Paths:
    """Where things live. ``cache_dir`` defaults to a folder beside the index."""

    index_dir: Path = Path("var/index")
    model_dir: Path = Path("models/all-minilm-l6-v2")
    cache_dir: Path | None = None

    @property
    def embedding_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.index_dir.parent / "embedding-cache"


def _convert(value: Any, annotation: Any, name: str, source: str) -> Any:
    """Convert a TOML or environment value to the field's annotated type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        if value is None or (isinstance(value, str) and value.lower() in ("", "none")):
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], name, source)
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if annotation is int:
            if isinstance(value, bool):
                raise ValueError("not an integer")
            return int(value)
        if annotation is float:
            return float(value)
        if annotation is Path:
            return Path(value)
        if annotation is str:
            return str(value)
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} ({source}): {err}") from err
    raise ConfigError(f"{name} ({source}): unsupported setting type {annotation!r}")


def load_section(cls: type[T], table: Mapping[str, Any], environ: Mapping[str, str], **overrides: Any) -> T:
    """Build section ``cls`` from a TOML table, then the environment, then ``overrides`` (CLI flags; None = unset).

    Raises ConfigError for unknown keys and invalid values, naming the source.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(table) - names
    if unknown:
        raise ConfigError(f"unknown setting(s) in config file for [{cls.__name__.lower()}]: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name in names:
        if name in table:
            values[name] = _convert(table[name], hints[name], name, "config file")
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            values[name] = _convert(environ[env_name], hints[name], name, env_name)
        if overrides.get(name) is not None:
            values[name] = _convert(overrides[name], hints[name], name, "command line")
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from err


def read_config_file(path: Path | str | None) -> dict[str, Any]:
    """The parsed TOML file, or {} when no file is given. Raises ConfigError naming the file."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"config file {path}: {err}") from err


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """The service's knobs: section ``[service]`` of the config file."""

    listen: str = "127.0.0.1:50051"
    default_top_k: int = 10
    max_top_k: int = 100
    max_results: int = 1000  # offset + top_k
    max_query_chars: int = 512
    max_batch_queries: int = 32
    l1_bytes: int = 64 << 20
    l2_bytes: int = 1 << 30
    result_cache_bytes: int = 32 << 20
    batch_max_size: int = 32
    # 0: no artificial wait; batches form from what queued while the encoder
    # was busy. Measured at 32 concurrent misses: 533 QPS vs 502 with 2 ms, and
    # a lone request is not held back (bench/RESULTS.md, service section).
    batch_max_wait_ms: float = 0.0
    batch_max_queue: int = 1024
    max_in_flight: int = 256
    # Calls read off the wire but not yet taken by the event loop (a saturated
    # loop takes them slower than they arrive); beyond it gRPC refuses at once.
    max_pending_calls: int = 64
    encoder_threads: int | None = None
    # Off: onnxruntime's threads sleep between calls instead of spinning, which
    # leaves the cores to the event loop. c=32 misses, 3 alternating runs:
    # batching on 509 vs 491 QPS, batching off 368 vs 260; a lone miss pays
    # ~0.5 ms for waking them (c=1 p50 4.2 vs 3.7 ms). bench/RESULTS.md.
    encoder_spin_wait: bool = False
    search_threads: int = 2
    reload_interval_s: float = 2.0
    shutdown_grace_s: float = 5.0
    max_receive_bytes: int = 1 << 20
    # Access: TLS when cert and key are set; mutual TLS with a client CA;
    # bearer tokens (one per line in the file) for every RPC but health.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auth_tokens_file: Path | None = None
    # Drift: live window size and PSI thresholds (see search/drift.py for why not 0.1/0.25).
    drift_window: int = 500
    drift_warn_psi: float = 0.5
    drift_alert_psi: float = 1.0
    drift_no_hit_floor: float = 0.3
    # Prometheus endpoint; None: off. Loopback only unless metrics_public:
    # the metrics reveal traffic volume and cache internals.
    metrics_listen: str | None = None
    metrics_public: bool = False
    slow_query_ms: float = 250.0  # requests slower than this are logged at WARNING with their stages
    log_queries: bool = False  # query text in logs; off because shoppers' searches are personal data

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of ``metrics_listen`` (IPv6 brackets removed), or None when metrics are off."""
        if self.metrics_listen is None:
            return None
        host, _, port = self.metrics_listen.rpartition(":")  # validated in __post_init__
        return host.removeprefix("[").removesuffix("]"), int(port)

    def __post_init__(self) -> None:
        if 0 < self.l2_bytes < MIN_L2_BYTES:
            raise ValueError(f"l2_bytes must be 0 (off) or >= {MIN_L2_BYTES}, got {self.l2_bytes}")
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"listen: expected HOST:PORT, got {self.listen!r}")
        if not 1 <= self.default_top_k <= self.max_top_k:
            raise ValueError(f"default_top_k must be within 1..max_top_k ({self.max_top_k}), got {self.default_top_k}")
        if self.max_results < self.max_top_k:
            raise ValueError("max_results must be >= max_top_k")
        for name in ("max_query_chars", "max_batch_queries", "batch_max_size", "batch_max_queue", "max_in_flight",
                     "max_pending_calls", "search_threads", "max_receive_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.metrics_listen is not None:
            host, sep, port = self.metrics_listen.rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 65535:
                raise ValueError(f"metrics_listen: expected HOST:PORT, got {self.metrics_listen!r}")
            host = host.removeprefix("[").removesuffix("]")  # [::1]:9100
            try:
                loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False  # a host name other than localhost may resolve anywhere
            if not loopback and not self.metrics_public:
                raise ValueError(
                    f"metrics_listen: {host} is not a loopback address; the metrics reveal traffic and cache "
                    "internals, so serve them on 127.0.0.1 or set metrics_public = true to expose them"
                )
        for name in ("l1_bytes", "l2_bytes", "result_cache_bytes", "batch_max_wait_ms", "reload_interval_s", "shutdown_grace_s",
                     "slow_query_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
