"""Keeping secrets out of recordings, logs, exception texts and reprs (pure, stdlib only).

Three kinds of knowledge, used together:

- **Position.** A URL shows only the query values named in :data:`SAFE_QUERY_PARAMS` (every other
  value may be a key: gateways put them under any name) and never its user info; a JSON field named
  in :data:`SECRET_FIELDS` keeps its key and loses its value; a credential header
  (``Authorization``, ``api-key``...) loses its value.
- **Shape.** ``sk-...`` API keys, ``ek_...`` ephemeral secrets, ``Bearer <token>``, ``Basic
  <base64 user:password>``, the browser subprotocol ``openai-insecure-api-key.<key>``.
- **Knowledge.** The exact secrets in play (the API key, the URL's credential-like query values and
  password, credential header values: see :func:`url_secrets`, :func:`header_secrets`) are
  replaced wherever they appear: close reasons, server error messages, exception texts.

:func:`redact_message` is for free text (log lines, exception texts, close reasons);
:func:`redact_text` / :func:`redact_obj` for recorded JSON, which they change as little as
possible; :class:`RedactingFilter` / :func:`install` put :func:`redact_message` on loggers.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

__all__ = [
    "MIN_SECRET_LEN",
    "REDACTED",
    "SAFE_QUERY_PARAMS",
    "SECRET_FIELDS",
    "RedactingFilter",
    "header_secrets",
    "hint_pattern",
    "install",
    "needs_redaction",
    "redact_message",
    "redact_obj",
    "redact_text",
    "safe_url",
    "searchable",
    "url_secrets",
]

REDACTED: Final = "[REDACTED]"
#: What replaces a URL's user info: ``wss://user:pass@host`` is shown as ``wss://***@host``.
USERINFO_MASK: Final = "***"

#: The only URL query parameters whose values are shown (in metadata, logs, error messages).
#: Every other value is masked: keys travel under any name (``?auth=``, ``?client_secret=``,
#: ``?access_token=``, ``?sig=``...), so a list of secret names always misses one.
SAFE_QUERY_PARAMS: Final = frozenset(
    {
        "model",  # OpenAI: the model of the session
        "deployment",  # Azure OpenAI: the deployment name
        "api-version",  # Azure OpenAI: the API version (preview path)
        "api_version",  # the same, as some gateways spell it
        "call_id",  # OpenAI SIP/sideband: the id of the call the socket attaches to
        "intent",  # OpenAI: intent=transcription
    }
)

#: JSON fields (any depth, any case) whose value is never recorded: the key stays, its value
#: becomes :data:`REDACTED`. ``token`` is exempt inside a log-probability entry (an object that
#: also has ``logprob``), where it is a piece of the model's text.
SECRET_FIELDS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api_key",
        "api-key",
        "apikey",
        "x-api-key",
        "client_secret",
        "secret",
        "password",
        "access_token",
        "refresh_token",
        "token",
    }
)

#: Known secrets shorter than this are not searched for in free text: a 4-letter key would blank
#: every "test" in the transcripts. Such keys are still masked where their position gives them
#: away (headers, URLs, credential fields). Real API keys are far longer.
MIN_SECRET_LEN: Final = 6
#: Log lines elide long payloads (websockets keeps a frame's first 48 and last 24 characters):
#: a known secret of at least twice this length is also redacted from a run that starts with its
#: first, or ends with its last, this many characters.
FRAGMENT_LEN: Final = 8

#: Substrings (of the lower-cased text) whose presence makes a recorded payload worth a closer
#: look. ``in`` checks cost nanoseconds, so the common frame (no secret) never pays for a regex or
#: a parse. Field names end in ``"`` so that ``input_tokens`` does not trigger a walk. Each
#: pattern below must have a hint here (tests/core/test_redact.py checks the cases).
_HINTS: Final = (
    "sk-",
    "ek_",
    "earer",
    "basic ",
    "://",
    "ecret",
    'token"',
    "password",
    "api",  # api_key, api-key, apikey, x-api-key, openai-insecure-api-key
    "authoriz",
    "\\/",  # JSON's optional escape of "/" (in a URL, in a key)
    "\\u",  # anything written with \u escapes (a field name, a key) is only seen once parsed
)

_KEY_CHARS: Final = r"[A-Za-z0-9_\-\.=:+/~]"
#: Things shaped like keys, wherever they are. Only the secret part (the named group) is replaced.
_SHAPES: Final = re.compile(
    r"(?P<sk>sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,})"  # OpenAI API keys
    r"|(?P<ek>ek_[A-Za-z0-9_\-]{8,})"  # ephemeral client secrets
    r"|(?i:bearer)\s+(?P<bearer>" + _KEY_CHARS + r"{8,})"  # Authorization header values
    r"|openai-insecure-api-key\.(?P<sub>[^\s,'\"\]\)]+)"  # the browser's key subprotocol
    r"|\b(?i:basic) +(?P<basic>[A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])"  # Basic user:password
)
#: ``Authorization: <value>``, ``'api-key': '<value>'``, ``x-api-key=<value>``: the value goes.
_HEADER: Final = re.compile(
    r"(?i)\b(?:proxy-authorization|authorization|x-api-key|api-key|api_key|apikey)"
    r"[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?(?P<v>[^\s\"',;}\]\)]+)"
)
#: ``password=...``, ``'client_secret': '...'`` in log lines and reprs.
_ASSIGNMENT: Final = re.compile(
    r"(?i)\b(?:password|passwd|secret|client_secret|access_token|refresh_token|token|auth)"
    r"[\"']?\s*[:=]\s*[\"']?(?P<v>[^\s\"',;&}\]\)]+)"
)
#: A URL with a scheme; its user info and its query are looked at.
_URL: Final = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>\\]+")
#: ``?name=value`` / ``&name=value`` pairs of URLs without a scheme (``GET /v1/realtime?...``).
_QUERY_PAIR: Final = re.compile(r"(?P<lead>[?&])(?P<name>[^=&\s#\"'?]+)=(?P<v>[^&\s#\"']+)")
#: Query parameter names that say "credential", for URLs inside conversation content: those are
#: the user's data, so only what is named like a credential is masked there.
_CREDENTIAL_NAME: Final = re.compile(r"(?i)key|token|secret|auth|sig|pass|cred|session|code")
#: Query values that are plain words or small numbers (``?mode=realtime``, ``?v=2``): not
#: searched for in free text, where they would blank ordinary words.
_WORDLIKE: Final = re.compile(r"[a-z]+(?:[-_.][a-z]+)*|[0-9]{1,9}")


# --- known secrets -------------------------------------------------------------------------------


def searchable(secrets: Iterable[str | None]) -> tuple[str, ...]:
    """The secrets worth searching for in text: at least :data:`MIN_SECRET_LEN` characters, each
    once, longest first (so a secret that contains another is replaced whole)."""
    seen = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LEN}
    return tuple(sorted(seen, key=len, reverse=True))


def _credential_like(value: str) -> bool:
    return len(value) >= MIN_SECRET_LEN and not _WORDLIKE.fullmatch(value)


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The secrets a URL carries, to search for in text: the values of its query parameters not
    in :data:`SAFE_QUERY_PARAMS` (both as written and decoded), its user info password and user
    name. Plain words and short values are left out (see :data:`MIN_SECRET_LEN`); they are still
    masked by :func:`safe_url`."""
    if not url:
        return ()
    found: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    for pair in parts.query.split("&"):
        name, eq, value = pair.partition("=")
        if not eq:
            name, value = "", name
        if unquote_plus(name).lower() in SAFE_QUERY_PARAMS:
            continue
        for v in {value, unquote_plus(value)}:
            if _credential_like(v):
                found.append(v)
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        user, _, password = userinfo.partition(":")
        for v in {password, unquote(password)}:
            if len(v) >= MIN_SECRET_LEN:
                found.append(v)
        for v in {user, unquote(user)}:
            if _credential_like(v):
                found.append(v)
        if password:  # websockets sends it as Authorization: Basic base64(user:password)
            plain = f"{unquote(user)}:{unquote(password)}"
            found.append(base64.b64encode(plain.encode()).decode())
    if parts.fragment and _credential_like(parts.fragment):
        found.append(parts.fragment)
    return searchable(found)


def header_secrets(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The secrets request headers carry: the values of ``Authorization``-like and ``api-key``
    headers (the token alone too, and a Basic credential's decoded password), and the key of an
    ``openai-insecure-api-key.<key>`` subprotocol."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: list[str] = []
    for name, value in items:
        lname, value = name.lower(), str(value).strip()
        if lname in SECRET_FIELDS or lname.endswith("authorization"):
            found.append(value)
            scheme, _, token = value.partition(" ")
            token = token.strip()
            if token:
                found.append(token)
                if scheme.lower() == "basic":
                    found.extend(_basic_parts(token))
        elif lname == "sec-websocket-protocol":
            for proto in value.split(","):
                proto = proto.strip()
                if proto.startswith("openai-insecure-api-key."):
                    found.append(proto[len("openai-insecure-api-key.") :])
    return searchable(found)


def _basic_parts(token: str) -> list[str]:
    """``[user:password, password]`` of a Basic credential, or ``[]`` if it is not one."""
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return []
    if ":" not in decoded:
        return []
    return [decoded, decoded.partition(":")[2]]


# --- URLs ----------------------------------------------------------------------------------------


def _mask_query(query: str, keep: Callable[[str], bool]) -> str:
    """``query`` with every value whose (decoded) name ``keep`` refuses replaced by REDACTED;
    what stays is kept exactly as written."""
    out: list[str] = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        if not eq:  # ?<bare value>: may be a key on its own
            out.append(REDACTED if name else name)
        elif not value or keep(unquote_plus(name).lower()):
            out.append(pair)
        else:
            out.append(f"{name}={REDACTED}")
    return "&".join(out)


def _safe_name(name: str) -> bool:
    return name in SAFE_QUERY_PARAMS


def safe_url(url: str | None) -> str | None:
    """The URL to show, log or store: user info replaced by ``***``, every query value not named
    in :data:`SAFE_QUERY_PARAMS` replaced by ``[REDACTED]``, the fragment dropped, key-shaped path
    segments redacted. Never raises (an unparsable URL loses everything after its host)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        head = re.split(r"[?#]", url, maxsplit=1)[0]
        return _scrub(re.sub(r"(?<=://)[^/]*@", USERINFO_MASK + "@", head), ())
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{USERINFO_MASK}@{netloc.rpartition('@')[2]}"
    query = _mask_query(parts.query, _safe_name) if parts.query else ""
    path = _scrub(parts.path, ()) if parts.path else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _content_url(m: re.Match[str]) -> str:
    """A URL inside recorded content: user info masked, credential-named query values masked,
    everything else (the user's data) kept as written."""
    url = m.group()
    head, q, rest = url.partition("?")
    head = re.sub(r"(?<=://)[^/]*@", USERINFO_MASK + "@", head)
    if not q:
        return head
    query, h, fragment = rest.partition("#")
    return head + q + _mask_query(query, lambda n: not _CREDENTIAL_NAME.search(n)) + h + fragment


def _log_url(m: re.Match[str]) -> str:
    return safe_url(m.group()) or ""


def _log_pair(m: re.Match[str]) -> str:
    name = unquote_plus(m.group("name")).lower()
    if name in SAFE_QUERY_PARAMS or m.string.startswith(REDACTED, m.start("v")):
        return m.group()
    return f"{m.group('lead')}{m.group('name')}={REDACTED}"


# --- free text -----------------------------------------------------------------------------------


def _sub_group(m: re.Match[str]) -> str:
    """The match with its secret group(s) replaced (Basic only if it really is user:password)."""
    text, start = m.group(), m.start()
    for name, value in m.groupdict().items():
        if value is None:
            continue
        a, b = m.span(name)
        if m.string.startswith(REDACTED, a) or (name == "basic" and not _basic_parts(value)):
            continue
        return text[: a - start] + REDACTED + text[b - start :]
    return text


def _scrub(s: str, known: Iterable[str]) -> str:
    """Known secrets, key shapes, credential headers and URL user info/credential parameters."""
    for k in known:
        if k in s:
            s = s.replace(k, REDACTED)
    s = _SHAPES.sub(_sub_group, s)
    lower = s.lower()
    if "authoriz" in lower or "api" in lower:
        s = _HEADER.sub(_sub_group, s)
    if "://" in s:
        s = _URL.sub(_content_url, s)
    return s


def redact_message(text: str, known: Iterable[str] = ()) -> str:
    """Free text to log or show (a log line, an exception's text, a close reason, a server's error
    message) with every secret replaced by ``[REDACTED]``: the ``known`` ones (and runs of their
    first or last :data:`FRAGMENT_LEN` characters, for elided log lines), key shapes, credential
    headers and assignments (``password=...``), and in URLs user info and every query value not in
    :data:`SAFE_QUERY_PARAMS`. Returns ``text`` itself when nothing changes."""
    if not text:
        return text
    keys = searchable(known)
    s = text
    for k in keys:
        if k in s:
            s = s.replace(k, REDACTED)
        if len(k) >= 2 * FRAGMENT_LEN:
            head, tail = k[:FRAGMENT_LEN], k[-FRAGMENT_LEN:]
            if head in s:
                s = re.sub(re.escape(head) + r"[^\s'\"]*", REDACTED, s)
            if tail in s:
                s = re.sub(r"[^\s'\"]*" + re.escape(tail), REDACTED, s)
    s = _scrub(s, ())
    if "://" in s:
        s = _URL.sub(_log_url, s)
    if "=" in s:
        s = _QUERY_PAIR.sub(_log_pair, s)
    s = _ASSIGNMENT.sub(_sub_group, s)
    return text if s == text else s


# --- recorded JSON -------------------------------------------------------------------------------


def redact_obj(obj: Any, known: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like object with every secret replaced by ``[REDACTED]``: the values of
    :data:`SECRET_FIELDS` (any depth, any case; ``client_secret`` objects lose their ``value``),
    and in every string the ``known`` secrets, key shapes, credential headers and URL user info."""
    return _redact(obj, searchable(known))


def _blank(v: Any) -> Any:
    """A credential field's value: every string or number in it replaced, structure kept."""
    if isinstance(v, dict):
        return {k: _blank(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_blank(x) for x in v]
    if (isinstance(v, str) and v) or (isinstance(v, (int, float)) and not isinstance(v, bool)):
        return REDACTED
    return v


def _redact(obj: Any, known: tuple[str, ...]) -> Any:
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            lk = k.lower() if isinstance(k, str) else k
            if isinstance(k, str) and known and any(s in k for s in known):
                k = _scrub(k, known)  # an echoed key can be a field name ("Unknown parameter")
            if lk not in SECRET_FIELDS or (lk == "token" and "logprob" in obj):
                out[k] = _redact(v, known)
            elif lk == "client_secret" and isinstance(v, dict):
                # {"value": "ek_...", "expires_at": ...}: the expiry is worth keeping.
                out[k] = {
                    ck: _blank(cv) if ck == "value" else _redact(cv, known) for ck, cv in v.items()
                }
            else:
                out[k] = _blank(v)
        return out
    if isinstance(obj, list):
        return [_redact(v, known) for v in obj]
    if isinstance(obj, str):
        return _scrub(obj, known)
    return obj


def needs_redaction(text: str, known: Iterable[str] = ()) -> bool:
    """A cheap test for the recorder's hot path: could ``text`` hold a secret? (False means
    certainly not, for :func:`redact_text` with the same ``known``.)"""
    lower = text.lower()
    # _HINTS spelled out: one C-level scan each with no loop or generator around them, which
    # halves what the common frame pays (tests/storage/test_write_path.py keeps them in step).
    if (
        "sk-" in lower
        or "ek_" in lower
        or "earer" in lower
        or "basic " in lower
        or "://" in lower
        or "ecret" in lower
        or 'token"' in lower
        or "password" in lower
        or "api" in lower
        or "authoriz" in lower
        or "\\/" in lower
        or "\\u" in lower
    ):
        return True
    return any(k and k in text for k in known)


#: The characters outside ASCII whose ``str.lower()`` holds an ASCII letter (U+0130 ``İ`` lowers to
#: ``i`` and a combining dot, U+212A the Kelvin sign to ``k``): :func:`needs_redaction` sees a
#: hint through them. Unicode simple case folding (a regex engine's ignore-case) folds the Kelvin
#: sign to ``k`` but not ``İ`` to ``i``, so :func:`hint_pattern` matches ``İ`` itself.
_LOWERS_TO_ASCII: Final = ("\u0130", "\u212a")


def _re2_literal(s: str) -> str:
    # Letters, digits and non-ASCII characters as they are; every other character as \x{..}
    # (RE2 rejects escapes such as "\ " that Python's re.escape writes).
    return "".join(c if c.isalnum() or not c.isascii() else f"\\x{{{ord(c):x}}}" for c in s)


def hint_pattern(known: Iterable[str] = ()) -> str:
    """:func:`needs_redaction` as one RE2 regular expression (for ``pyarrow.compute``, which
    scans a whole batch once, in C++, without the GIL): it matches wherever
    ``needs_redaction(text, known)`` would be true, and on a few more texts (characters that fold
    to a hint's letters, such as ``ſ`` for ``s``), never on fewer."""
    hints = "|".join(_re2_literal(h) for h in _HINTS)
    extra = [_re2_literal(c) for c in _LOWERS_TO_ASCII]
    extra += [_re2_literal(k) for k in known if k]
    return "|".join([f"(?i:{hints})", *extra])


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """Redact a JSON text (a recorded frame); returns ``text`` itself (no copy) when it holds no
    secret, so a frame is re-serialized only when something in it changed.

    Text that is not JSON is redacted as a plain string (as in :func:`redact_obj`).
    """
    keys = searchable(known)
    if not needs_redaction(text, keys):
        return text
    try:
        obj = json.loads(text)
    except ValueError:
        red_s = _scrub(text, keys)
        return text if red_s == text else red_s
    red = _redact(obj, keys)
    if red == obj:
        return text
    return json.dumps(red, ensure_ascii=False, separators=(",", ":"))


# --- logging -------------------------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """A :class:`logging.Filter` that passes every record with its text redacted by
    :func:`redact_message`: the message with its args (websockets' header dumps at DEBUG:
    ``Authorization: Bearer ...``, ``api-key: ...``, the key subprotocol, Basic credentials), the
    exception text and the stack. A record with nothing to redact is left untouched (its args
    too). Thread-safe; :meth:`add` adds known secrets at any time."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = searchable(secrets)

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def add(self, secrets: Iterable[str]) -> None:
        """Also redact ``secrets`` (short ones are skipped: see :data:`MIN_SECRET_LEN`)."""
        with self._lock:
            self._secrets = searchable([*self._secrets, *secrets])

    def filter(self, record: logging.LogRecord) -> bool:
        keys = self._secrets  # one read: add() replaces the tuple, never mutates it
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string or args: logging reports it itself
            return True
        red = redact_message(msg, keys)
        if red is not msg:
            record.msg, record.args = red, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_message(record.exc_text, keys)
        if record.stack_info:
            record.stack_info = redact_message(record.stack_info, keys)
        return True


_install_lock = threading.Lock()


def install(logger_names: Iterable[str], secrets: Iterable[str] = ()) -> list[RedactingFilter]:
    """Put a :class:`RedactingFilter` on each named logger (or add ``secrets`` to the one already
    there) and return them. A logger's filters see only the records logged through that logger,
    not its children's: name each logger that emits (``websockets.client``,
    ``websockets.server``...). Idempotent; the filters stay for the life of the process."""
    secrets = tuple(secrets)
    out = []
    with _install_lock:
        for name in logger_names:
            logger = logging.getLogger(name)
            f = next((x for x in logger.filters if isinstance(x, RedactingFilter)), None)
            if f is None:
                f = RedactingFilter(secrets)
                logger.addFilter(f)
            elif secrets:
                f.add(secrets)
            out.append(f)
    return out
