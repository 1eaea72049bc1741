"""Capture settings of modeltrace: the ``MODELTRACE_*`` variables, their defaults and parsing.

Precedence (SPEC "Settings"): arguments beat variables, variables beat defaults.
``load_settings(**overrides)`` reads the environment once and applies the
overrides; invalid values raise ``ValueError`` naming the variable or argument.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ENV_DISABLED = "MODELTRACE_DISABLED"
ENV_SAMPLE_RATE = "MODELTRACE_SAMPLE_RATE"
ENV_ROWS_PER_SECOND = "MODELTRACE_ROWS_PER_SECOND"
ENV_MAX_ROWS = "MODELTRACE_MAX_ROWS"
ENV_MAX_FEATURES = "MODELTRACE_MAX_FEATURES"
ENV_MAX_STRING_LENGTH = "MODELTRACE_MAX_STRING_LENGTH"
ENV_CAPTURE_FEATURES = "MODELTRACE_CAPTURE_FEATURES"
ENV_CAPTURE_PREDICTIONS = "MODELTRACE_CAPTURE_PREDICTIONS"
ENV_REDACT = "MODELTRACE_REDACT"
ENV_REDACT_DEFAULTS = "MODELTRACE_REDACT_DEFAULTS"
ENV_HASH = "MODELTRACE_HASH"
ENV_HASH_SALT = "MODELTRACE_HASH_SALT"

# Feature-name globs dropped by default (case-insensitive): obvious personal data.
DEFAULT_REDACT: tuple[str, ...] = (
    "*email*",
    "*e_mail*",
    "*phone*",
    "*mobile_number*",
    "ssn",
    "*social_security*",
    "*password*",
    "*passwd*",
    "*secret*",
    "*api_key*",
    "*access_token*",
    "*credit_card*",
    "*card_number*",
    "cvv",
    "*iban*",
    "first_name",
    "last_name",
    "full_name",
    "*street_address*",
    "date_of_birth",
    "dob",
    "*passport*",
    "ip_address",
)

# Attributes a prediction span carries besides features; the feature cap keeps
# the total under OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT (SDK default 128).
RESERVED_ATTRIBUTES = 16
_SDK_DEFAULT_ATTRIBUTE_LIMIT = 128

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Settings:
    """Resolved capture settings; one immutable value shared by all monitored calls."""

    disabled: bool = False
    # Constant capture probability per call; None means "row budget" sampling.
    sample_rate: float | None = None
    # Row budget per second per model when sample_rate is None.
    rows_per_second: float = 50.0
    max_rows: int = 8
    max_features: int = 100
    max_string_length: int = 256
    capture_features: bool = True
    capture_predictions: bool = True
    redact: tuple[str, ...] = ()
    redact_defaults: bool = True
    hash: tuple[str, ...] = ()
    hash_salt: str = ""

    def effective_max_features(self, environ: Mapping[str, str] | None = None) -> int:
        """``max_features`` capped so a span stays under the SDK attribute count limit."""
        env = os.environ if environ is None else environ
        raw = env.get("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT") or env.get("OTEL_ATTRIBUTE_COUNT_LIMIT")
        limit = _SDK_DEFAULT_ATTRIBUTE_LIMIT
        if raw:
            try:
                limit = int(raw)
            except ValueError:
                limit = _SDK_DEFAULT_ATTRIBUTE_LIMIT
        return max(0, min(self.max_features, limit - RESERVED_ATTRIBUTES))

    def redact_patterns(self) -> tuple[str, ...]:
        """The redact globs in force: the user's plus, unless disabled, ``DEFAULT_REDACT``."""
        return self.redact + (DEFAULT_REDACT if self.redact_defaults else ())


def parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r}: expected true/false, 1/0, yes/no or on/off")


def parse_names(raw: str) -> tuple[str, ...]:
    """A comma-separated list of names or globs; blanks ignored."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _validate(name: str, value: Any) -> Any:
    """Check one setting's value; returns it normalised or raises ``ValueError``/``TypeError``."""
    if name in ("disabled", "capture_features", "capture_predictions", "redact_defaults"):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
        return value
    if name == "sample_rate":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"sample_rate must be a number in [0, 1] or None, got {value!r}")
        if not (0.0 <= float(value) <= 1.0) or math.isnan(value):
            raise ValueError(f"sample_rate must be in [0, 1], got {value!r}")
        return float(value)
    if name == "rows_per_second":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"rows_per_second must be a positive number, got {value!r}")
        if not float(value) > 0 or math.isinf(value):
            raise ValueError(f"rows_per_second must be a finite number > 0, got {value!r}")
        return float(value)
    if name in ("max_rows", "max_features", "max_string_length"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if value < 0 or (name == "max_string_length" and value < 1):
            raise ValueError(f"{name} must be >= {1 if name == 'max_string_length' else 0}")
        return value
    if name in ("redact", "hash"):
        if isinstance(value, str):
            return parse_names(value)
        if not isinstance(value, Iterable):
            raise TypeError(f"{name} must be a sequence of names or globs, got {value!r}")
        items = tuple(value)
        for item in items:
            if not isinstance(item, str):
                raise TypeError(f"{name} entries must be strings, got {item!r}")
        return items
    if name == "hash_salt":
        if not isinstance(value, str):
            raise TypeError(f"hash_salt must be a string, got {type(value).__name__}")
        return value
    raise TypeError(f"unknown modeltrace setting {name!r}")


SETTING_NAMES: frozenset[str] = frozenset(f.name for f in dataclasses.fields(Settings))


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}

    def number(var: str, kind: type) -> Any:
        raw = environ[var].strip()
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"{var}={raw!r}: expected {kind.__name__}") from None

    def given(var: str) -> bool:
        return bool(environ.get(var, "").strip())

    if given(ENV_DISABLED):
        values["disabled"] = parse_bool(ENV_DISABLED, environ[ENV_DISABLED])
    if given(ENV_SAMPLE_RATE):
        values["sample_rate"] = number(ENV_SAMPLE_RATE, float)
    if given(ENV_ROWS_PER_SECOND):
        values["rows_per_second"] = number(ENV_ROWS_PER_SECOND, float)
    for var, key in (
        (ENV_MAX_ROWS, "max_rows"),
        (ENV_MAX_FEATURES, "max_features"),
        (ENV_MAX_STRING_LENGTH, "max_string_length"),
    ):
        if given(var):
            values[key] = number(var, int)
    for var, key in (
        (ENV_CAPTURE_FEATURES, "capture_features"),
        (ENV_CAPTURE_PREDICTIONS, "capture_predictions"),
        (ENV_REDACT_DEFAULTS, "redact_defaults"),
    ):
        if given(var):
            values[key] = parse_bool(var, environ[var])
    if ENV_REDACT in environ:
        values["redact"] = parse_names(environ[ENV_REDACT])
    if ENV_HASH in environ:
        values["hash"] = parse_names(environ[ENV_HASH])
    if ENV_HASH_SALT in environ:
        values["hash_salt"] = environ[ENV_HASH_SALT]
    variables = {
        "disabled": ENV_DISABLED,
        "sample_rate": ENV_SAMPLE_RATE,
        "rows_per_second": ENV_ROWS_PER_SECOND,
        "max_rows": ENV_MAX_ROWS,
        "max_features": ENV_MAX_FEATURES,
        "max_string_length": ENV_MAX_STRING_LENGTH,
    }
    for key, value in list(values.items()):
        try:
            values[key] = _validate(key, value)
        except (TypeError, ValueError) as exc:
            var = variables.get(key, "MODELTRACE_*")
            raise ValueError(f"{var}={environ.get(var, '')!r}: {exc}") from None
    return values


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults, then ``MODELTRACE_*`` variables, then ``overrides`` (None means "not given")."""
    values = _from_environ(os.environ if environ is None else environ)
    for key, value in overrides.items():
        if key not in SETTING_NAMES:
            raise TypeError(f"unknown modeltrace setting {key!r}")
        if value is None:
            continue
        values[key] = _validate(key, value)
    return Settings(**values)


def merge(base: Settings, **overrides: Any) -> Settings:
    """``base`` with the non-None ``overrides`` applied (per-decorator options)."""
    changes = {k: _validate(k, v) for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **changes) if changes else base
