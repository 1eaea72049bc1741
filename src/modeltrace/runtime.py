"""The state every monitored call reads: tracer, instruments, settings, and self-failure reporting.

Until ``configure()`` runs, the tracer and meter are the OpenTelemetry API's
global proxies (so spans go wherever the application's providers send them)
and settings come from the ``MODELTRACE_*`` variables. ``configure()`` installs
a new ``Runtime``; its ``generation`` lets decorators refresh cached options.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from opentelemetry import metrics, trace

from modeltrace import semconv
from modeltrace.metrics import Instruments, create_instruments
from modeltrace.settings import Settings, load_settings

logger = logging.getLogger("modeltrace")


@dataclass(frozen=True)
class Runtime:
    tracer: trace.Tracer
    instruments: Instruments
    settings: Settings
    generation: int


_lock = threading.Lock()
_current: Runtime | None = None
# True once the installed settings say "disabled": the wrappers' fast path reads it.
disabled = False
_generation = 0
_reported: set[tuple[str, str]] = set()
_REPORTED_LIMIT = 1024


def _settings_from_environment() -> Settings:
    try:
        return load_settings()
    except (TypeError, ValueError) as exc:
        logger.error("modeltrace: ignoring invalid settings, using defaults: %s", exc)
        return Settings()


def current() -> Runtime:
    """The installed runtime, created from the global providers on first use."""
    runtime = _current
    if runtime is not None:
        return runtime
    with _lock:
        if _current is None:
            _install_locked(
                trace.get_tracer(semconv.SCOPE),
                create_instruments(metrics.get_meter(semconv.SCOPE)),
                _settings_from_environment(),
            )
        assert _current is not None
        return _current


def _install_locked(tracer: trace.Tracer, instruments: Instruments, settings: Settings) -> Runtime:
    global _current, _generation, disabled
    _generation += 1
    disabled = settings.disabled
    _current = Runtime(tracer, instruments, settings, _generation)
    return _current


def install(
    tracer_provider: trace.TracerProvider | None,
    meter_provider: metrics.MeterProvider | None,
    settings: Settings,
) -> Runtime:
    """Make monitored calls use these providers (None: the global ones) and settings."""
    tracer = (
        tracer_provider.get_tracer(semconv.SCOPE)
        if tracer_provider is not None
        else trace.get_tracer(semconv.SCOPE)
    )
    meter = (
        meter_provider.get_meter(semconv.SCOPE)
        if meter_provider is not None
        else metrics.get_meter(semconv.SCOPE)
    )
    with _lock:
        return _install_locked(tracer, create_instruments(meter), settings)


def reset() -> None:
    """Forget the installed runtime: the next call uses the global providers and environment."""
    global _current, _generation, disabled
    with _lock:
        _current = None
        _generation += 1  # cached per-function configs see the change without calling current()
        disabled = False


def disabled_now() -> bool:
    """True when modeltrace is disabled right now (installed settings, else MODELTRACE_DISABLED).

    ``monitor``/``wrap`` applied while this holds return the function or model
    itself: the cheapest possible pass-through.
    """
    runtime = _current
    if runtime is not None:
        return runtime.settings.disabled
    return _settings_from_environment().disabled


def report_internal_error(where: str, exc: BaseException) -> None:
    """Log an internal failure once per (where, exception type) and count every occurrence."""
    cause = type(exc).__name__
    key = (where, cause)
    try:
        if key not in _reported and len(_reported) < _REPORTED_LIMIT:
            _reported.add(key)
            logger.warning(
                "modeltrace: internal error in %s (%s); the call goes on unaffected, "
                "further occurrences are only counted",
                where,
                cause,
                exc_info=exc,
            )
        runtime = _current
        if runtime is not None:
            runtime.instruments.sdk_errors.add(
                1, {semconv.ERROR_TYPE: cause, "modeltrace.error.where": where}
            )
    except Exception:  # reporting must never raise into the host app
        pass
