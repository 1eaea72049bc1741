"""Fetching the evidence of a root-cause analysis from a running ``modeltrace serve``.

``ServiceClient`` reads the JSON API (standard library HTTP, bearer token
optional) and turns every failure into an ``RcaError`` whose ``exit_code`` the
``modeltrace rca`` command returns: the service unreachable (3), the token
missing or refused (4), an unknown model or version (5), an answer that is not
what the API documents (6). ``collect_evidence`` gathers what
``modeltrace.drift.rca.analyze`` needs: the models list, the drift report, the
drift report history and the call statistics of the period and the one before.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EXIT_AUTH",
    "EXIT_BAD_RESPONSE",
    "EXIT_UNKNOWN_MODEL",
    "EXIT_UNREACHABLE",
    "AuthenticationError",
    "BadResponseError",
    "Evidence",
    "RcaError",
    "ServiceClient",
    "ServiceUnreachableError",
    "UnknownModelError",
    "collect_evidence",
]

EXIT_UNREACHABLE = 3
EXIT_AUTH = 4
EXIT_UNKNOWN_MODEL = 5
EXIT_BAD_RESPONSE = 6
# Error bodies are read up to this size (the message is shown to the user).
_MAX_ERROR_BODY = 4096
# Answers larger than this are refused (a drift report of 500 features is far below).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class RcaError(Exception):
    """A failure of the analysis with the exit code the command returns."""

    exit_code = EXIT_BAD_RESPONSE


class ServiceUnreachableError(RcaError):
    exit_code = EXIT_UNREACHABLE


class AuthenticationError(RcaError):
    exit_code = EXIT_AUTH


class UnknownModelError(RcaError):
    exit_code = EXIT_UNKNOWN_MODEL


class BadResponseError(RcaError):
    exit_code = EXIT_BAD_RESPONSE


class _NotFoundError(RcaError):
    """A 404 (the caller decides: unknown model, or a route this service lacks)."""

    exit_code = EXIT_UNKNOWN_MODEL


def _server_message(error: urllib.error.HTTPError) -> str:
    try:
        raw = error.read(_MAX_ERROR_BODY)
    except OSError:
        return ""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw.decode("utf-8", "replace").strip()[:200]
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return ""


class ServiceClient:
    """GETs JSON from the service at ``url`` (``http(s)://host:port``)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"--url must be an http(s) URL such as http://127.0.0.1:4318, got {url!r}"
            )
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        self.url = url.strip().rstrip("/")
        self.token = token
        self.timeout = timeout

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        target = self.url + path
        if params:
            target += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(target, headers={"Accept": "application/json"})
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            message = _server_message(error)
            detail = f": {message}" if message else ""
            if error.code in (401, 403):
                hint = (
                    "pass the service's token with --token-file FILE"
                    if self.token is None
                    else "the token from --token-file was refused"
                )
                raise AuthenticationError(
                    f"{self.url} answered {error.code} for {path}{detail} ({hint})"
                ) from None
            if error.code == 404:
                raise _NotFoundError(message or f"{path} not found") from None
            raise BadResponseError(f"{self.url} answered {error.code} for {path}{detail}") from None
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ServiceUnreachableError(
                f"cannot reach the modeltrace service at {self.url}: {reason}"
            ) from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise BadResponseError(f"{path}: answer larger than {MAX_RESPONSE_BYTES} bytes")
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BadResponseError(
                f"{self.url}{path} did not answer JSON ({error}); is this a modeltrace service?"
            ) from None


@dataclass
class Evidence:
    """What the analysis reads; ``None`` where the service had nothing (see ``notes``)."""

    url: str
    model: str
    version: str
    since_seconds: float
    versions: list[dict[str, Any]]
    drift: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None
    calls: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def _expect(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise BadResponseError(
            f"{what}: expected a JSON {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _choose_version(model: str, versions: list[dict[str, Any]], version: str | None) -> str:
    known = [str(v.get("version")) for v in versions]
    if version is not None:
        if version not in known:
            raise UnknownModelError(
                f"model {model!r} has no version {version!r}; known versions: {', '.join(known)}"
            )
        return version
    if not versions:
        raise UnknownModelError(f"model {model!r} has no version with data")

    def recency(entry: dict[str, Any]) -> tuple[float, int]:
        last = entry.get("last_seen")
        return (
            float(last) if isinstance(last, (int, float)) else float("-inf"),
            int(entry.get("spans") or 0),
        )

    return str(max(versions, key=recency).get("version"))


def collect_evidence(
    client: ServiceClient, model: str, version: str | None, since_seconds: float
) -> Evidence:
    """Models list, drift report, history and call statistics of one model version.

    Without ``version`` the most recently seen version is analysed. Raises
    ``UnknownModelError`` when the service does not know the model or version."""
    models = _expect(client.get_json("/api/v1/models"), list, "GET /api/v1/models")
    entry = next((m for m in models if isinstance(m, dict) and m.get("model") == model), None)
    if entry is None:
        names = sorted(str(m.get("model")) for m in models if isinstance(m, dict))
        known = ", ".join(names[:20]) if names else "none yet"
        raise UnknownModelError(f"model {model!r} is not known to {client.url} (models: {known})")
    versions = [
        v for v in _expect(entry.get("versions"), list, "model versions") if isinstance(v, dict)
    ]
    chosen = _choose_version(model, versions, version)
    evidence = Evidence(client.url, model, chosen, since_seconds, versions)
    if version is None and len(versions) > 1:
        evidence.notes.append(
            f"analysing version {chosen} (the most recently seen of "
            f"{', '.join(str(v.get('version')) for v in versions)}); choose one with --version"
        )
    base = "/api/v1/models/{}/versions/{}".format(
        urllib.parse.quote(model, safe=""), urllib.parse.quote(chosen, safe="")
    )
    since = {"since": f"{since_seconds:g}"}
    info = next(v for v in versions if str(v.get("version")) == chosen)
    if info.get("has_reference", True):
        try:
            evidence.drift = _expect(client.get_json(base + "/drift"), dict, "GET .../drift")
        except _NotFoundError as error:
            evidence.notes.append(f"no drift report: {error}")
    else:
        evidence.notes.append(
            f"no reference for {model} version {chosen}: drift is not evaluated "
            f"(upload one with PUT {base}/reference)"
        )
    if evidence.drift is not None:
        try:
            answer = _expect(
                client.get_json(base + "/drift/history", {**since, "limit": "200"}),
                dict,
                "GET .../drift/history",
            )
            evidence.history = [r for r in answer.get("reports", []) if isinstance(r, dict)]
        except _NotFoundError:
            evidence.notes.append("this service keeps no drift history API (upgrade modeltrace)")
    try:
        evidence.calls = _expect(
            client.get_json(base + "/spans/stats", since), dict, "GET .../spans/stats"
        )
    except _NotFoundError:
        evidence.notes.append("this service has no call statistics API (upgrade modeltrace)")
    return evidence
