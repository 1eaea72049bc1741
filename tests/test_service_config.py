"""Settings of ``modeltrace serve``: parsing, precedence flag > env > file > default, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeltrace.cli import main
from modeltrace.drift.service.auth import AuthTokenError, BearerAuth, load_token
from modeltrace.drift.service.config import (
    OPTIONS,
    ConfigError,
    HostPort,
    parse_duration,
    parse_host_port,
    parse_size,
    resolve,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h", 3600), ("15m", 900), ("1h30m", 5400), ("500ms", 0.5), ("2d", 172800), ("90", 90)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1x", "h1", "-5", "0", "1h 30m", "m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_addresses_and_sizes() -> None:
    assert parse_host_port("127.0.0.1:4318") == HostPort("127.0.0.1", 4318)
    assert parse_host_port("[::1]:0") == HostPort("::1", 0)
    assert str(HostPort("::1", 5)) == "[::1]:5"
    for bad in ("4318", "host:", "a:99999"):
        with pytest.raises(ValueError):
            parse_host_port(bad)
    assert parse_size("4MiB") == 4 * 1024 * 1024
    assert parse_size("512kb") == 512_000
    with pytest.raises(ValueError):
        parse_size("4 parsecs")


def test_defaults_match_the_spec() -> None:
    config = resolve({}, environ={})
    assert config.store == "modeltrace.db"
    assert config.http == HostPort("127.0.0.1", 4318)
    assert config.grpc == HostPort("127.0.0.1", 4317)
    assert config.auth_token_file is None and not config.tls
    assert config.window == 3600


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    toml = tmp_path / "serve.toml"
    toml.write_text('[serve]\nstore = "file.db"\nwindow = "2h"\npane = "5m"\ngrpc = "off"\n')
    env = {"MODELTRACE_SERVE_WINDOW": "30m", "MODELTRACE_SERVE_STORE": "env.db"}
    config = resolve({"store": "flag.db"}, environ=env, config_file=toml)
    assert config.store == "flag.db"  # flag beats env
    assert config.window == 1800  # env beats file
    assert config.pane == 300  # file beats default
    assert config.grpc is None
    as_json = tmp_path / "serve.json"
    as_json.write_text(json.dumps({"max-body-size": "1MiB", "queue_size": "8MiB"}))
    config = resolve({}, environ={"MODELTRACE_SERVE_CONFIG": str(as_json)})
    assert (config.max_body_size, config.queue_size) == (1 << 20, 8 << 20)


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"window": "soon"}, {}, "--window: invalid duration 'soon'"),
        ({}, {"MODELTRACE_SERVE_HTTP": "nowhere"}, "MODELTRACE_SERVE_HTTP: invalid address"),
        ({"tls_cert": "/nonexistent.pem"}, {}, "--tls-cert and --tls-key must be given together"),
        ({"auth_token_file": "/nonexistent"}, {}, "--auth-token-file: no such file"),
        ({"window": "1m", "pane": "5m"}, {}, "must not be longer than --window"),
        ({"export_endpoint": "collector:4318"}, {}, "--export-endpoint: invalid URL"),
        ({"max_body_size": "2MiB", "queue_size": "1MiB"}, {}, "--queue-size must be at least"),
    ],
)
def test_invalid_settings_name_their_source(
    flags: dict[str, str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(flags, environ=env)
    assert message in str(info.value)


def test_config_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("store = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve({}, environ={}, config_file=bad)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"stroe": "x.db"}')
    with pytest.raises(ConfigError, match="unknown option 'stroe'"):
        resolve({}, environ={}, config_file=unknown)


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for spec in OPTIONS:
        assert spec.flag in text and spec.env in text
    assert "--config" in text


def test_cli_reports_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--window", "forever"]) == 2
    assert "--window: invalid duration 'forever'" in capsys.readouterr().err


def test_token_file_and_constant_time_check(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("s3cr3t-token\n")
    auth = BearerAuth(load_token(path))
    assert auth.check("Bearer s3cr3t-token")
    assert auth.check("bearer s3cr3t-token")
    assert not auth.check("Bearer s3cr3t-toke")
    assert not auth.check("Basic s3cr3t-token")
    assert not auth.check(None)
    path.write_text("  \n")
    with pytest.raises(AuthTokenError, match="is empty"):
        load_token(path)
    path.write_text("two words")
    with pytest.raises(AuthTokenError, match="printable ASCII"):
        load_token(path)
