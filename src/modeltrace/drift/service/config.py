"""Settings of ``modeltrace serve``: one option table for flags, environment and config file.

Every option is declared once in :data:`OPTIONS`; the CLI builds its parser from
it, and :func:`resolve` merges the sources with the precedence
flags > ``MODELTRACE_SERVE_*`` environment variables > ``--config`` file > defaults.
Values are validated here, with errors naming the option and its source.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "MODELTRACE_SERVE_"


class ConfigError(ValueError):
    """An option has an invalid value, or the config file cannot be used."""


@dataclass(frozen=True)
class HostPort:
    """A listening address; port 0 lets the OS choose."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Parse ``1h``, ``15m``, ``1h30m``, ``500ms``, ``2d`` or plain seconds into seconds (> 0)."""
    raw = str(text).strip().lower()
    if not raw:
        raise ValueError("empty duration")
    try:
        seconds = float(raw)
    except ValueError:
        pos = 0
        seconds = 0.0
        for match in _DURATION_PART.finditer(raw):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            pos = match.end()
        if pos != len(raw) or pos == 0:
            raise ValueError(
                f"invalid duration {text!r}: use a number of seconds or units ms, s, m, h, d "
                "(e.g. 15m, 1h30m)"
            ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be positive")
    return seconds


def parse_duration_or_zero(text: str) -> float:
    """``parse_duration``, or 0 for ``0`` / ``0s`` (meaning "every time")."""
    if str(text).strip().lower() in ("0", "0s", "0.0"):
        return 0.0
    return parse_duration(text)


def parse_host_port(text: str) -> HostPort:
    """Parse ``HOST:PORT`` (IPv6 hosts in brackets: ``[::1]:4318``)."""
    raw = str(text).strip()
    match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", raw)
    if match is None:
        raise ValueError(f"invalid address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:4318")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ValueError(f"invalid address {text!r}: port must be 0..65535")
    return HostPort(host, port)


def parse_optional_host_port(text: str) -> HostPort | None:
    """Like :func:`parse_host_port`, with ``off`` disabling the listener."""
    if str(text).strip().lower() in ("off", "none", "disabled"):
        return None
    return parse_host_port(text)


_SIZE = re.compile(r"(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """Parse a byte size: ``4194304``, ``4MiB``, ``512KiB``, ``1GB`` (> 0)."""
    match = _SIZE.fullmatch(str(text).strip())
    if match is None:
        raise ValueError(f"invalid size {text!r}: use bytes or units KiB, MiB, GiB, KB, MB, GB")
    size = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
    if size <= 0:
        raise ValueError(f"invalid size {text!r}: must be positive")
    return size


def parse_positive_int(text: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"invalid integer {text!r}") from None
    if value <= 0:
        raise ValueError(f"invalid value {text!r}: must be a positive integer")
    return value


def parse_path(text: str) -> Path:
    if not str(text).strip():
        raise ValueError("empty path")
    return Path(str(text))


def parse_url(text: str) -> str:
    raw = str(text).strip()
    if not re.match(r"^https?://[^/\s]+", raw):
        raise ValueError(f"invalid URL {text!r}: expected http(s)://HOST[:PORT][/path]")
    return raw


def parse_log_level(text: str) -> str:
    level = str(text).strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"invalid log level {text!r}: use debug, info, warning or error")
    return level


@dataclass(frozen=True)
class OptionSpec:
    """One setting: its flag, parser, default (as text, parsed like user input) and help."""

    name: str
    parse: Callable[[str], Any]
    default: str | None
    help: str
    metavar: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "store",
        str,
        "modeltrace.db",
        "SQLite file holding references, window state and the inbox of acknowledged "
        "requests (':memory:' keeps nothing across restarts)",
        "PATH",
    ),
    OptionSpec(
        "http",
        parse_host_port,
        "127.0.0.1:4318",
        "address of the HTTP port: OTLP/HTTP POST /v1/traces, the JSON API, /metrics, "
        "/healthz, /readyz",
        "HOST:PORT",
    ),
    OptionSpec(
        "grpc",
        parse_optional_host_port,
        "127.0.0.1:4317",
        "address of the OTLP/gRPC TraceService/Export port, or 'off'",
        "HOST:PORT|off",
    ),
    OptionSpec(
        "auth_token_file",
        parse_path,
        None,
        "file holding a bearer token; when set every endpoint but /healthz and /readyz "
        "requires 'Authorization: Bearer TOKEN' (gRPC: 'authorization' metadata)",
        "FILE",
    ),
    OptionSpec(
        "tls_cert", parse_path, None, "PEM certificate chain: serve HTTP and gRPC over TLS", "FILE"
    ),
    OptionSpec("tls_key", parse_path, None, "PEM private key for --tls-cert", "FILE"),
    OptionSpec(
        "export_endpoint",
        parse_url,
        None,
        "push the drift metrics (ml.drift.*) as OTLP/HTTP metrics to this URL, "
        "e.g. http://collector:4318/v1/metrics",
        "URL",
    ),
    OptionSpec(
        "export_interval",
        parse_duration,
        "60s",
        "how often to push to --export-endpoint",
        "DURATION",
    ),
    OptionSpec(
        "window",
        parse_duration,
        "1h",
        "length of the sliding window compared with the reference (e.g. 1h, 15m)",
        "DURATION",
    ),
    OptionSpec(
        "pane",
        parse_duration,
        "1m",
        "length of the tumbling panes the window is made of (e.g. 1m)",
        "DURATION",
    ),
    OptionSpec(
        "multivariate_interval",
        parse_duration_or_zero,
        "30s",
        "recompute the dataset-level drift entries (__multivariate__, __embedding__: "
        "seconds of CPU each) at most this often per model, carrying them over in "
        "between; 0 recomputes them on every evaluation and scrape",
        "DURATION",
    ),
    OptionSpec(
        "max_body_size",
        parse_size,
        "16MiB",
        "largest accepted request body, after decompression (larger: 413)",
        "SIZE",
    ),
    OptionSpec(
        "queue_size",
        parse_size,
        "64MiB",
        "bytes of requests waiting for their group commit; when full, exports get "
        "429 / RESOURCE_EXHAUSTED so that clients retry",
        "SIZE",
    ),
    OptionSpec(
        "checkpoint_interval",
        parse_duration,
        "30s",
        "how often window state is checkpointed and the inbox of raw requests trimmed",
        "DURATION",
    ),
    OptionSpec(
        "grpc_workers",
        parse_positive_int,
        "16",
        "threads answering gRPC exports (each waits for its group commit)",
        "N",
    ),
    OptionSpec("log_level", parse_log_level, "info", "debug, info, warning or error", "LEVEL"),
)

_BY_NAME = {spec.name: spec for spec in OPTIONS}


@dataclass(frozen=True)
class ServeConfig:
    """Resolved settings of the aggregator service."""

    store: str
    http: HostPort
    grpc: HostPort | None
    auth_token_file: Path | None
    tls_cert: Path | None
    tls_key: Path | None
    export_endpoint: str | None
    export_interval: float
    window: float
    pane: float
    multivariate_interval: float
    max_body_size: int
    queue_size: int
    checkpoint_interval: float
    grpc_workers: int
    log_level: str

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or JSON config file (keys are option names, '-' or '_')."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if path.suffix.lower() == ".json":
        try:
            loaded = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            loaded = tomllib.loads(data.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("serve"), dict):
        loaded = loaded["serve"]
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a table/object of options")
    result: dict[str, Any] = {}
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        if name not in _BY_NAME:
            known = ", ".join(sorted(_BY_NAME))
            raise ConfigError(f"config file {path}: unknown option {key!r} (known: {known})")
        result[name] = value
    return result


def resolve(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> ServeConfig:
    """Merge flags (None = not given), environment, config file and defaults; validate."""
    env = os.environ if environ is None else environ
    if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(env[ENV_PREFIX + "CONFIG"])
    from_file = load_config_file(config_file) if config_file is not None else {}
    values: dict[str, Any] = {}
    for spec in OPTIONS:
        source: str
        raw: Any
        if flags.get(spec.name) is not None:
            raw, source = flags[spec.name], spec.flag
        elif env.get(spec.env, "") != "":
            raw, source = env[spec.env], spec.env
        elif spec.name in from_file:
            raw, source = from_file[spec.name], f"{config_file}: {spec.name}"
        else:
            raw, source = spec.default, "default"
        if raw is None:
            values[spec.name] = None
            continue
        try:
            values[spec.name] = spec.parse(str(raw))
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    config = ServeConfig(**values)
    _check_consistency(config)
    return config


def _check_consistency(config: ServeConfig) -> None:
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key must be given together")
    for name in ("auth_token_file", "tls_cert", "tls_key"):
        path = getattr(config, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"{_BY_NAME[name].flag}: no such file: {path}")
    if config.pane > config.window:
        raise ConfigError(
            f"--pane ({config.pane:g}s) must not be longer than --window ({config.window:g}s)"
        )
    if config.queue_size < config.max_body_size:
        raise ConfigError("--queue-size must be at least --max-body-size")
    if config.grpc is not None and config.grpc == config.http and config.http.port != 0:
        raise ConfigError("--grpc and --http must use different addresses")
