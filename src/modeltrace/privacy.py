"""Privacy policy for captured features: which names are dropped, hashed or kept.

Names are matched case-insensitively against globs (``fnmatch``). An explicit
``hash`` pattern wins over the default redact list (so a user can keep a
pseudonymised ``email``), an explicit ``redact`` pattern wins over ``hash``.
Hashed values are a salted SHA-256 prefix, so equal values stay equal (drift on
categories still works) without revealing the value.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
from collections.abc import Sequence

from modeltrace.settings import DEFAULT_REDACT

KEEP = 0
REDACT = 1
HASH = 2

HASH_HEX_CHARS = 16
_CACHE_LIMIT = 4096


def _matcher(patterns: Sequence[str]):
    lowered = [p.lower() for p in patterns]
    exact = frozenset(p for p in lowered if not any(c in p for c in "*?["))
    globs = [p for p in lowered if p not in exact]

    def matches(name: str) -> bool:
        lowered_name = name.lower()
        if lowered_name in exact:
            return True
        return any(fnmatch.fnmatchcase(lowered_name, g) for g in globs)

    return matches


class PrivacyPolicy:
    """Decides, per feature name, KEEP / REDACT / HASH; decisions are cached (bounded)."""

    def __init__(
        self,
        redact: Sequence[str] = (),
        hash: Sequence[str] = (),
        salt: str = "",
        redact_defaults: bool = True,
    ) -> None:
        self._explicit_redact = _matcher(tuple(redact))
        self._default_redact = _matcher(DEFAULT_REDACT if redact_defaults else ())
        self._hash = _matcher(tuple(hash))
        self._salt = salt.encode("utf-8")
        self._cache: dict[str, int] = {}

    def action(self, name: str) -> int:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        if self._explicit_redact(name):
            decision = REDACT
        elif self._hash(name):
            decision = HASH
        elif self._default_redact(name):
            decision = REDACT
        else:
            decision = KEEP
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[name] = decision
        return decision

    def hash_value(self, value: object) -> object:
        """Salted SHA-256 prefix of ``value``'s text; missing values (NaN, "") stay missing."""
        if isinstance(value, float) and math.isnan(value):
            return value
        if value == "":
            return value
        text = value if isinstance(value, str) else repr(value)
        digest = hashlib.sha256(self._salt + text.encode("utf-8", "replace")).hexdigest()
        return digest[:HASH_HEX_CHARS]
