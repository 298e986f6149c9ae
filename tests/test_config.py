"""Configuration: TOML file, then SEMSEARCH_* environment, then flags; errors name the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.config import IndexerSettings
from search.config import ConfigError, Paths, ServiceSettings, load_section, read_config_file


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "semsearch.toml"
    path.write_text('[service]\nmax_top_k = 50\nlisten = "127.0.0.1:6000"\nbatch_max_wait_ms = 1.5\n'
                    '[paths]\nindex_dir = "/srv/index"\n')
    table = read_config_file(path)
    env = {"SEMSEARCH_MAX_TOP_K": "70", "SEMSEARCH_LOG_QUERIES": "yes"}
    settings = load_section(ServiceSettings, table["service"], env, listen="127.0.0.1:7000")
    assert settings.max_top_k == 70 and settings.log_queries is True
    assert settings.listen == "127.0.0.1:7000" and settings.batch_max_wait_ms == 1.5
    paths = load_section(Paths, table["paths"], {}, model_dir=None)
    assert paths.index_dir == Path("/srv/index") and paths.embedding_cache_dir == Path("/srv/embedding-cache")


def test_settings_are_frozen() -> None:
    settings = ServiceSettings()
    with pytest.raises(AttributeError):
        settings.max_top_k = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("table", "env", "message"),
    [
        ({"max_top_kk": 3}, {}, "unknown setting"),
        ({"max_top_k": "many"}, {}, r"max_top_k \(config file\)"),
        ({}, {"SEMSEARCH_MAX_IN_FLIGHT": "lots"}, r"max_in_flight \(SEMSEARCH_MAX_IN_FLIGHT\)"),
        ({"default_top_k": 0}, {}, "default_top_k"),
        ({"listen": "nowhere"}, {}, "listen"),
        ({"l2_bytes": 1000}, {}, "l2_bytes"),
        ({}, {"SEMSEARCH_LOG_QUERIES": "perhaps"}, "not a boolean"),
    ],
    ids=["unknown-key", "bad-int-file", "bad-int-env", "top-k-range", "listen", "l2-too-small", "bad-bool"],
)
def test_invalid_values_name_the_setting(table: dict, env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_section(ServiceSettings, table, env)


def test_indexer_settings_validate_and_parse_fields() -> None:
    settings = load_section(IndexerSettings, {"text_fields": "title, brand"}, {"SEMSEARCH_KEEP_SNAPSHOTS": "3"})
    assert settings.text_fields == ("title", "brand") and settings.keep_snapshots == 3
    with pytest.raises(ConfigError, match="unknown field"):
        load_section(IndexerSettings, {"text_fields": "title,colour"}, {})
    with pytest.raises(ConfigError, match="together"):
        load_section(IndexerSettings, {"quality_queries": "q.tsv"}, {})


def test_a_broken_config_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[service\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        read_config_file(path)
    with pytest.raises(ConfigError, match="missing.toml"):
        read_config_file(tmp_path / "missing.toml")
