"""Configuration: YAML and environment, parsed and validated once; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from optimized_versions.config import Config, load_config
from optimized_versions.errors import ConfigError


def test_defaults_match_the_original_server() -> None:
    config = load_config(environ={})
    assert config == Config()
    assert (config.port, config.max_concurrent_jobs, config.max_cached_per_user) == (3000, 1, 10)
    assert config.time_to_keep_files == 8 and config.keep_seconds == 8 * 3600
    assert config.remove_file_after_right_download is False
    assert config.jellyfin_url is None


def test_environment_values_are_parsed() -> None:
    config = load_config(
        environ={
            "JELLYFIN_URL": "http://jellyfin:8096/jf/",
            "MAX_CONCURRENT_JOBS": "3",
            "MAX_CACHED_PER_USER": "0",
            "TIME_TO_KEEP_FILES": "0.5",
            "REMOVE_FILE_AFTER_RIGHT_DOWNLOAD": "yes",
            "PORT": "8080",
            "CACHE_DIR": "/srv/cache",
            "FFMPEG_PATH": "/usr/lib/jellyfin-ffmpeg/ffmpeg",
            "LOG_LEVEL": "debug",
        }
    )
    assert config.jellyfin_url == "http://jellyfin:8096/jf"
    assert (config.max_concurrent_jobs, config.max_cached_per_user, config.port) == (3, 0, 8080)
    assert config.time_to_keep_files == 0.5
    assert config.remove_file_after_right_download is True
    assert config.cache_dir == Path("/srv/cache")
    assert config.log_level == "DEBUG"


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE", " on "])
def test_true_booleans(value: str) -> None:
    config = load_config(environ={"REMOVE_FILE_AFTER_RIGHT_DOWNLOAD": value})
    assert config.remove_file_after_right_download is True


@pytest.mark.parametrize("value", ["false", "0", "no", "off"])
def test_false_booleans(value: str) -> None:
    config = load_config(environ={"REMOVE_FILE_AFTER_RIGHT_DOWNLOAD": value})
    assert config.remove_file_after_right_download is False


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("MAX_CONCURRENT_JOBS", "two", "whole number"),
        ("MAX_CONCURRENT_JOBS", "0", "minimum"),
        ("MAX_CACHED_PER_USER", "-1", "minimum"),
        ("TIME_TO_KEEP_FILES", "soon", "number"),
        ("TIME_TO_KEEP_FILES", "0", "less than or equal"),
        ("REMOVE_FILE_AFTER_RIGHT_DOWNLOAD", "maybe", "boolean"),
        ("PORT", "70000", "maximum"),
        ("JELLYFIN_URL", "jellyfin:8096", "does not match"),
        ("LOG_LEVEL", "LOUD", "is not one of"),
        ("TIME_TO_KEEP_FILES", "nan", "finite"),
        ("STALL_TIMEOUT", "inf", "finite"),
        ("ENCODER_PREFERENCE", "nvenc, qsv", "does not match"),
        ("PATH_MAP", "media:/mnt", "does not match"),
        ("TRUSTED_PROXIES", "10.0.0.1, nas.local", "'nas.local' is not an IP address"),
    ],
)
def test_bad_values_stop_the_start_naming_the_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={name: value})
    assert name in str(caught.value) and says in str(caught.value)


def test_yaml_file_and_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "max_concurrent_jobs: 2\nport: 4000\ntokens:\n"
        "  - {token: abcdefghijklmnopqrstuvwxyz, name: me, admin: true}\n"
    )
    config = load_config(path, environ={"PORT": "5000"})
    assert (config.max_concurrent_jobs, config.port) == (2, 5000)
    assert config.tokens[0].name == "me" and config.tokens[0].admin


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("port: [1]\n", "port"),
        ("nonsense_key: 1\n", "nonsense_key"),
        ("- a list\n", "mapping"),
        ("port: {unclosed\n", "cannot read"),
        ("tokens: [{token: short, name: x}]\n", "tokens"),
        ("time_to_keep_files: .nan\n", "finite"),
    ],
)
def test_bad_yaml_names_the_file_or_key(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=says):
        load_config(path, environ={})


def test_every_key_is_declared_once_in_the_schema_and_the_dataclass() -> None:
    from dataclasses import fields

    from optimized_versions.config import SCHEMA

    assert set(SCHEMA["properties"]) == {f.name for f in fields(Config)}


def test_downmix_setting() -> None:
    from optimized_versions.config import DOWNMIXES
    from optimized_versions.media import audio

    assert DOWNMIXES == audio.DOWNMIXES, "the setting offers exactly the matrices there are"
    assert load_config(environ={}).downmix == "default"
    assert load_config(environ={"DOWNMIX": "NightMode"}).downmix == "nightmode"
    with pytest.raises(ConfigError, match=r"DOWNMIX.*is not one of"):
        load_config(environ={"DOWNMIX": "louder"})
    with pytest.raises(ValueError, match="unknown downmix"):
        audio.downmix_filter(6, "5.1", "louder")
