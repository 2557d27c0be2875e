"""Redaction (core/_redact.py) and the secrets an endpoint declares (core/_endpoints.py)."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from realtime_nb.core._endpoints import resolve_endpoint
from realtime_nb.core._redact import (
    MIN_SECRET_LEN,
    REDACTED,
    SAFE_QUERY_PARAMS,
    RedactingFilter,
    header_secrets,
    install,
    needs_redaction,
    redact_message,
    redact_obj,
    redact_text,
    safe_url,
    searchable,
    url_secrets,
)

#: Shaped like no known key: only knowing it (or its position) can redact it.
KEY = "rtnbKey-" + "Q7mZ2xVw" * 3
BASIC = base64.b64encode(f"user:{KEY}".encode()).decode()


# --- URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["auth", "client_secret", "access_token", "key", "x", "Sig"])
def test_safe_url_masks_every_query_value_not_on_the_allowlist(name: str) -> None:
    url = f"wss://gw.example/v1/realtime?model=gpt-realtime&{name}={KEY}&intent=transcription"
    assert safe_url(url) == (
        f"wss://gw.example/v1/realtime?model=gpt-realtime&{name}={REDACTED}&intent=transcription"
    )


def test_safe_url_keeps_allowlisted_values_as_written() -> None:
    url = "wss://r.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=a%20b"
    assert safe_url(url) == url
    assert (
        safe_url("ws://h/x?call_id=rtc_123&api_version=1")
        == "ws://h/x?call_id=rtc_123&api_version=1"
    )
    assert {"model", "deployment", "api-version", "call_id", "intent"} <= SAFE_QUERY_PARAMS


def test_safe_url_masks_user_info_bare_values_and_drops_the_fragment() -> None:
    assert (
        safe_url(f"wss://user:{KEY}@gw.example:8443/rt?model=m")
        == "wss://***@gw.example:8443/rt?model=m"
    )
    assert safe_url(f"wss://{KEY}@gw.example/rt") == "wss://***@gw.example/rt"
    assert safe_url(f"ws://h/rt?{KEY}&model=m") == f"ws://h/rt?{REDACTED}&model=m"
    assert safe_url(f"ws://h/rt?model=m#access_token={KEY}") == "ws://h/rt?model=m"
    assert safe_url("ws://h/rt?auth=&model=m") == "ws://h/rt?auth=&model=m"  # nothing to hide
    assert safe_url("ws://h/rt/sk-proj-abcdefghijklmnopqrst") == f"ws://h/rt/{REDACTED}"
    assert safe_url(None) is None and safe_url("") == ""


def test_safe_url_never_raises_and_never_leaks_on_a_broken_url() -> None:
    for url in (f"ws://u:{KEY}@[::1/rt?auth={KEY}", f"ws://u:{KEY}@h:port/rt?auth={KEY}"):
        shown = safe_url(url) or ""
        assert KEY not in shown


def test_url_secrets_are_what_safe_url_hides_and_long_enough_to_search_for() -> None:
    url = (
        f"wss://bob:{KEY}@gw/rt?model=gpt-4o-realtime-preview&auth=a{KEY}&mode=realtime&n=2&t=abc12"
    )
    found = url_secrets(url)
    assert KEY in found and "a" + KEY in found
    assert base64.b64encode(f"bob:{KEY}".encode()).decode() in found  # websockets' Basic header
    assert "gpt-4o-realtime-preview" not in found  # allowlisted
    assert "realtime" not in found and "2" not in found  # plain words, small numbers
    assert "abc12" not in found and "bob" not in found  # too short to search text for
    assert url_secrets(f"ws://h/rt?tok={KEY.replace('-', '%2D')}") == (
        KEY.replace("-", "%2D"),
        KEY,
    )  # as written and decoded


def test_header_secrets() -> None:
    found = header_secrets(
        {
            "Authorization": f"Basic {BASIC}",
            "api-key": KEY + "2",
            "Sec-WebSocket-Protocol": f"realtime, openai-insecure-api-key.{KEY}3",
            "User-Agent": "realtime_nb (websockets)",
        }
    )
    assert {BASIC, f"user:{KEY}", KEY, KEY + "2", KEY + "3"} <= set(found)
    assert "realtime_nb (websockets)" not in found
    assert KEY in header_secrets([("Authorization", f"Bearer {KEY}")])


def test_searchable_drops_short_secrets_and_puts_the_longest_first() -> None:
    assert searchable(["x" * (MIN_SECRET_LEN - 1), None, KEY, KEY + "more", KEY]) == (
        KEY + "more",
        KEY,
    )


# --- free text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"reason 'bad key {KEY}'", f"reason 'bad key {REDACTED}'"),
        ("> Authorization: Bearer sekrit", f"> Authorization: Bearer {REDACTED}"),
        (f"> Authorization: Basic {BASIC}", f"> Authorization: Basic {REDACTED}"),
        ("> api-key: abc", f"> api-key: {REDACTED}"),
        ("> x-api-key: abc", f"> x-api-key: {REDACTED}"),
        (
            f"> Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.{KEY}",
            f"> Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.{REDACTED}",
        ),
        (
            "> GET /v1/realtime?model=m&auth=zz&client_secret=yy HTTP/1.1",
            f"> GET /v1/realtime?model=m&auth={REDACTED}&client_secret={REDACTED} HTTP/1.1",
        ),
        (
            "could not connect to ws://u:pw@h/x?token=abc&model=m: refused",
            f"could not connect to ws://***@h/x?token={REDACTED}&model=m: refused",
        ),
        (
            "headers {'Authorization': 'Bearer abc'}",
            f"headers {{'Authorization': 'Bearer {REDACTED}'}}",
        ),
        ("password=hunter2 user=bob", f"password={REDACTED} user=bob"),
        ("key sk-proj-abcdefghijklmnopqrstu used", f"key {REDACTED} used"),
        ("secret ek_abcdefgh12345", f"secret {REDACTED}"),
        (f"bearer {KEY}", f"bearer {REDACTED}"),
    ],
)
def test_redact_message(text: str, expected: str) -> None:
    assert redact_message(text, [KEY]) == expected
    assert redact_message(expected, [KEY]) == expected  # idempotent: no "[REDACTED]]"


def test_redact_message_leaves_ordinary_text_alone_and_returns_it_unchanged() -> None:
    for text in (
        "Basic understanding of the bearer of bad news",
        "max_output_tokens=4096 voice=alloy",
        "connection to OpenAI gpt-realtime lost: code 1000",
        "",
    ):
        assert redact_message(text, [KEY]) is text


def test_redact_message_catches_a_key_cut_by_an_elided_log_line() -> None:
    head = f'< TEXT \'{{"error":"bad key {KEY[:14]}...\' [300 bytes]'
    tail = f"< TEXT '...{KEY[-10:]}\"}}' [300 bytes]"
    assert KEY[:14] not in redact_message(head, [KEY])
    assert KEY[-10:] not in redact_message(tail, [KEY])


def test_a_short_known_secret_is_masked_by_position_only() -> None:
    # "test" as a key must not blank every "test" in a transcript.
    assert redact_message("a test run", ["test"]) == "a test run"
    assert redact_message("Authorization: Bearer test", ["test"]) == (
        f"Authorization: Bearer {REDACTED}"
    )


# --- recorded JSON -------------------------------------------------------------------------------

FIELDS = [
    "password",
    "access_token",
    "refresh_token",
    "secret",
    "token",
    "client_secret",
    "api_key",
]


@pytest.mark.parametrize("name", FIELDS + [f.upper() for f in FIELDS] + ["Password", "Api_Key"])
def test_credential_fields_keep_the_key_and_lose_the_value_at_any_depth(name: str) -> None:
    obj = {"type": "x", "a": [{"b": {name: "s3cr3t-value"}}], name: 12345}
    out = redact_obj(obj)
    assert out == {"type": "x", "a": [{"b": {name: REDACTED}}], name: REDACTED}
    text = json.dumps(obj)
    assert needs_redaction(text), "the pre-check must see it"
    assert json.loads(redact_text(text)) == out


def test_credential_fields_special_cases() -> None:
    obj = {
        "client_secret": {"value": "v", "expires_at": 5},
        "secret": {"nested": ["a", 1, True, None]},
        "token": None,
        "password": "",
        "logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}],
        "usage": {"input_tokens": 3, "input_token_details": {"cached_tokens": 0}},
    }
    assert redact_obj(obj) == {
        "client_secret": {"value": REDACTED, "expires_at": 5},
        "secret": {"nested": [REDACTED, REDACTED, True, None]},
        "token": None,
        "password": "",
        "logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}],  # a text token
        "usage": {"input_tokens": 3, "input_token_details": {"cached_tokens": 0}},
    }


def test_strings_in_recorded_json() -> None:
    obj = {
        "transcript": "see https://www.example.com/search?q=paris&sig=abc123",
        "server_url": f"https://u:{KEY}@mcp.example/sse?token={KEY}&v=2",
        "note": f"the key is {KEY}",
        KEY: 1,  # an echoed key as a field name ("Unknown parameter: 'session.<key>'")
    }
    assert redact_obj(obj, [KEY]) == {
        "transcript": f"see https://www.example.com/search?q=paris&sig={REDACTED}",
        "server_url": f"https://***@mcp.example/sse?token={REDACTED}&v=2",
        "note": f"the key is {REDACTED}",
        REDACTED: 1,
    }


def test_redact_text_returns_the_same_object_when_nothing_changes() -> None:
    frames = [
        '{"type":"response.done","response":{"usage":{"input_tokens":1,"output_tokens":2}}}',
        '{"type":"response.output_audio_transcript.delta","delta":"a basic secret recipe"}',
        "not json at all",
    ]
    for text in frames:
        assert redact_text(text, [KEY]) is text
    assert not needs_redaction(frames[0])  # the common frame never gets parsed
    assert redact_text(f"not json {KEY}", [KEY]) == f"not json {REDACTED}"


@pytest.mark.parametrize(
    "obj",
    [
        {"PASSWORD": "x"},
        {"Access_Token": "x"},
        {"ApiKey": "x"},
        {"Authorization": "Bearer x"},
        {"text": "Bearer abcdefghijk"},
        {"text": f"basic {BASIC}"},
        {"text": "ws://user:pw@h/"},
        {"text": "sk-abcdefghijklmnopqrstu"},
        {"text": "ek_abcdefghijk"},
        {"text": f"x{KEY}x"},
    ],
)
def test_the_pre_check_never_misses_what_redact_text_would_change(obj: dict[str, Any]) -> None:
    for text in (json.dumps(obj), json.dumps(obj, ensure_ascii=False).replace("/", "\\/")):
        assert redact_text(text, [KEY]) != text
        assert needs_redaction(text, searchable([KEY]))


def test_the_pre_check_sees_through_json_escapes() -> None:
    for text in ('{"\\u0070assword":"x"}', '{"t":"https:\\/\\/u:p@h\\/"}', '{"t":"a\\u00e9"}'):
        assert needs_redaction(text)
    assert json.loads(redact_text('{"\\u0070assword":"x"}')) == {"password": REDACTED}
    assert json.loads(redact_text('{"t":"https:\\/\\/u:p@h\\/"}')) == {"t": "https://***@h/"}


# --- logging -------------------------------------------------------------------------------------


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("websockets.client", logging.DEBUG, __file__, 1, msg, args, exc_info)


def test_filter_redacts_message_args_exception_and_stack() -> None:
    f = RedactingFilter([KEY])
    rec = _record("> %s: %s", "Authorization", f"Bearer {KEY}")
    assert f.filter(rec)
    assert rec.getMessage() == f"> Authorization: Bearer {REDACTED}"
    try:
        raise ConnectionError(f"refused with key {KEY}")
    except ConnectionError as e:
        rec = _record("failed", exc=e)
    rec.stack_info = f"Stack (most recent call last):\n  f(key='{KEY}')"
    f.filter(rec)
    assert rec.exc_text and KEY not in rec.exc_text and "refused with key" in rec.exc_text
    assert KEY not in rec.stack_info
    assert KEY not in logging.Formatter().format(rec)


def test_filter_leaves_clean_records_untouched() -> None:
    rec = _record("> %s: %s", "Host", "127.0.0.1:8765")
    args = rec.args
    RedactingFilter([KEY]).filter(rec)
    assert rec.msg == "> %s: %s" and rec.args is args


def test_install_puts_one_filter_on_each_logger_and_adds_secrets() -> None:
    name = "realtime_nb.tests.redact"
    logger = logging.getLogger(name)
    try:
        (f1,) = install([name], [KEY])
        (f2,) = install([name], [KEY + "2", "short"])
        assert f1 is f2 and logger.filters.count(f1) == 1
        assert set(f1.secrets) == {KEY, KEY + "2"}
        rec = logger.makeRecord(name, logging.WARNING, __file__, 1, "lost: %r", (KEY + "2",), None)
        assert logger.filter(rec)
        assert KEY not in rec.getMessage()
    finally:
        for f in list(logger.filters):
            logger.removeFilter(f)


# --- endpoints -----------------------------------------------------------------------------------


def test_endpoint_secrets_and_display_url_for_a_url_with_keys_everywhere() -> None:
    url = f"wss://user:{KEY}P@gw.example/rt?model=m&auth={KEY}A&access_token={KEY}T&mode=fast"
    ep = resolve_endpoint("m", url=url, api_key=KEY, env={})
    assert ep is not None
    assert {KEY, KEY + "P", KEY + "A", KEY + "T", f"Bearer {KEY}"} <= set(ep.secrets)
    assert "fast" not in ep.secrets
    shown = ep.display_url
    assert KEY not in shown and KEY not in repr(ep) and KEY not in ep.label
    assert shown == (
        f"wss://***@gw.example/rt?model=m&auth={REDACTED}&access_token={REDACTED}&mode={REDACTED}"
    )


def test_endpoint_label_never_shows_the_url_when_it_has_no_host() -> None:
    ep = resolve_endpoint("m", url=f"ws:///rt?auth={KEY}", env={})
    assert ep is not None and KEY not in ep.label
