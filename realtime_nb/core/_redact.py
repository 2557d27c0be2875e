"""Keeping secrets out of recordings, logs and reprs (pure).

What counts as a secret: API keys (``sk-...``), ephemeral client secrets (``ek_...``), any value of
a field named like a credential (``authorization``, ``api_key``, ``api-key``, ``client_secret``
and its ``value``), bearer tokens, and any exact string the caller declares secret (the session
passes the key it was given, whatever its shape).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["REDACTED", "redact_obj", "redact_text", "safe_url"]

REDACTED: Final = "[REDACTED]"

#: Substrings whose presence makes a payload worth a closer look. Checking these with ``in`` costs
#: nanoseconds, so the common case (no secret anywhere) never pays for a regex or a parse.
_HINTS: Final = ("sk-", "ek_", "ecret", "uthorization", "api_key", "api-key", "apikey", "earer ")

_SECRET_VALUE: Final = re.compile(
    r"(?:sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}"  # OpenAI API keys
    r"|ek_[A-Za-z0-9_\-]{8,}"  # ephemeral client secrets
    r"|(?i:bearer)\s+[A-Za-z0-9_\-\.=:+/]{8,})"  # Authorization header values
)

_SECRET_KEYS: Final = frozenset(
    {
        "authorization",
        "api_key",
        "api-key",
        "apikey",
        "x-api-key",
        "client_secret",
        "secret",
        "password",
        "access_token",
    }
)

#: URL query parameters that carry credentials (Azure's ``api-key``, gateways' ``token``...).
_SECRET_QUERY: Final = frozenset(
    {"api-key", "api_key", "apikey", "key", "token", "access_token", "sig", "signature"}
)


def redact_obj(obj: Any, known: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like object with every secret replaced by ``[REDACTED]``."""
    known_list = [k for k in known if k]
    return _redact(obj, known_list, key=None)


def _redact(obj: Any, known: list[str], key: str | None) -> Any:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            lk = str(k).lower()
            if lk in _SECRET_KEYS and isinstance(v, str) and v:
                out[k] = REDACTED
            elif lk in ("client_secret",) and isinstance(v, dict):
                out[k] = {
                    ck: (
                        REDACTED
                        if ck == "value" and isinstance(cv, str)
                        else _redact(cv, known, ck)
                    )
                    for ck, cv in v.items()
                }
            else:
                out[k] = _redact(v, known, lk)
        return out
    if isinstance(obj, list):
        return [_redact(v, known, key) for v in obj]
    if isinstance(obj, str):
        return _redact_string(obj, known)
    return obj


def _redact_string(s: str, known: list[str]) -> str:
    for k in known:
        if k in s:
            s = s.replace(k, REDACTED)
    return _SECRET_VALUE.sub(REDACTED, s)


def needs_redaction(text: str, known: Iterable[str] = ()) -> bool:
    """A cheap test: could ``text`` hold a secret? (False means certainly not.)"""
    for hint in _HINTS:
        if hint in text:
            return True
    return any(k and k in text for k in known)


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """Redact a JSON text; returns ``text`` itself (no copy) when it holds no secret.

    Secrets inside JSON strings are replaced in place; a credential-named field is blanked whole.
    Text that is not JSON is redacted as a plain string.
    """
    known_list = [k for k in known if k]
    if not any(h in text for h in _HINTS) and not any(k in text for k in known_list):
        return text
    try:
        obj = json.loads(text)
    except ValueError:
        return _redact_string(text, known_list)
    red = _redact(obj, known_list, key=None)
    if red == obj:
        return text
    return json.dumps(red, ensure_ascii=False, separators=(",", ":"))


def contains_secret(text: str, known: Iterable[str] = ()) -> bool:
    """Whether ``text`` would be changed by :func:`redact_text`."""
    return redact_text(text, known) != text


def safe_url(url: str | None) -> str | None:
    """A URL without user info and without credential query parameters (for metadata and logs)."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    query = [
        (k, REDACTED if k.lower() in _SECRET_QUERY else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="[]"), ""))
