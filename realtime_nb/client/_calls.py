"""A WebRTC call's setup and bookkeeping, sans I/O: the calls endpoint's request and answer, the
sideband URL, the deduplication of events seen twice, and which reply the output track plays.

Over WebRTC the browser holds the peer connection and the kernel holds the key: the kernel posts
the page's SDP offer to ``POST /v1/realtime/calls`` (a ``multipart/form-data`` body with the offer
and the session configuration, as OpenAI's SDKs send it), reads the answer SDP and the call id
(``Location: /v1/realtime/calls/{call_id}``), then attaches a WebSocket to the call
(``/v1/realtime?call_id=...``: the "sideband", which sees every server event of the call and
sends client events). The page forwards what its data channel sees too, so each server event may
arrive twice: :class:`EventDedup` keeps the first copy. Audio never crosses the data channel;
the page taps both tracks and the kernel records them (``local.track.input`` /
``local.track.output``); :class:`OutputPlayback` says which reply a played chunk belongs to.

The I/O (HTTP on the session's executor, the sideband socket) is in
:class:`~realtime_nb.client.session.Session`.
"""

from __future__ import annotations

import json
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from ..core._redact import redact_message, safe_url

__all__ = [
    "CALLS_PATH",
    "CallAnswer",
    "CallRefusedError",
    "EventDedup",
    "OutputPlayback",
    "Transport",
    "build_call_request",
    "call_id_from_location",
    "call_session",
    "calls_url",
    "hangup_url",
    "http_event",
    "is_silent",
    "parse_call_answer",
    "sideband_url",
    "validate_offer",
]

JSON = dict[str, Any]

#: Where the calls endpoint sits below the API base (OpenAI: ``/v1``; Azure: ``/openai/v1``).
CALLS_PATH: Final = "/realtime/calls"
#: Server event ids remembered to drop a second copy of an event: the sideband's and the data
#: channel's copies of one event arrive within a second or two of each other, and a call without
#: audio deltas has at most a few hundred events a second, so 8192 ids cover minutes.
DEDUP_WINDOW: Final = 8192
#: How long before ``output_audio_buffer.started`` reached the kernel a played chunk may
#: already belong to that reply: the RTP path can beat the sideband's event by a few tens of ms.
EARLY_PLAY_MS: Final = 60
#: Peak level (of 32768) at or under which a played chunk is silence: Opus decodes the digital
#: silence between replies to a few units; speech peaks in the thousands.
SILENT_PEAK: Final = 64
#: Longest error body quoted in a message (enough for the API's JSON error).
MAX_ERROR_CHARS: Final = 600


class Transport(str, Enum):
    """How a :class:`~realtime_nb.client.session.Session` talks to the model."""

    WEBSOCKET = "websocket"  #: the kernel holds the socket; audio goes through it
    WEBRTC = "webrtc"  #: the page holds a peer connection; the kernel posts its offer

    @classmethod
    def parse(cls, value: Transport | str) -> Transport:
        """Raises ValueError naming the value and the accepted ones."""
        try:
            return cls(value)
        except ValueError:
            accepted = ", ".join(repr(t.value) for t in cls)
            raise ValueError(f"transport={value!r} is not accepted; use {accepted}") from None


class CallRefusedError(RuntimeError):
    """The calls endpoint did not answer the offer (the message is the server's, redacted).

    Attributes:
        status: the HTTP status (``0``: no answer at all).
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CallAnswer:
    """The calls endpoint's answer: the SDP for the page, the call id for the sideband."""

    sdp: str
    call_id: str
    location: str


def _split(url: str) -> tuple[str, str, str, str]:
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https"):
        raise ValueError(
            f"a Realtime URL starts with ws://, wss://, http:// or https://, got "
            f"{safe_url(url) or ''!r}"
        )
    return scheme, parts.netloc, parts.path.rstrip("/"), parts.query


def calls_url(ws_url_or_base: str) -> str:
    """The calls endpoint for a Session's WebSocket URL or an API base URL.

    ``wss://api.openai.com/v1/realtime?model=m`` and ``https://api.openai.com/v1`` give
    ``https://api.openai.com/v1/realtime/calls``; a URL already ending in ``/realtime/calls`` is
    kept; a bare host gets ``/v1/realtime/calls``. The query (``model=``) is dropped: the model
    goes in the session part of the form.

    Raises:
        ValueError: not an http(s) or ws(s) URL.
    """
    scheme, netloc, path, _ = _split(ws_url_or_base)
    if path.endswith(CALLS_PATH):
        pass
    elif path.endswith("/realtime"):
        path += "/calls"
    elif path == "":
        path = "/v1" + CALLS_PATH
    else:
        path += CALLS_PATH
    return urlunsplit((scheme, netloc, path, "", ""))


def hangup_url(calls: str, call_id: str) -> str:
    """``POST`` here to end the call."""
    return f"{calls.rstrip('/')}/{call_id}/hangup"


def sideband_url(ws_url: str, call_id: str) -> str:
    """The WebSocket that attaches to the call: the session's URL with ``call_id=`` in place of
    ``model=`` (the call already has its model); other query values (Azure's ``api-version``)
    stay."""
    parts = urlsplit(ws_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "model"]
    query.append(("call_id", call_id))
    path = parts.path.rstrip("/") or "/v1/realtime"
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))


def validate_offer(offer_sdp: Any) -> str:
    """The offer as given, if it is an SDP offer with an audio section.

    Raises:
        TypeError: not a str. ValueError: not an SDP offer (says what is accepted).
    """
    if not isinstance(offer_sdp, str):
        raise TypeError(f"offer_sdp must be a str (the RTCSessionDescription's sdp), got "
                        f"{type(offer_sdp).__name__}")  # fmt: skip
    text = offer_sdp.lstrip()
    if not text.startswith("v=0"):
        raise ValueError(
            f"offer_sdp is not an SDP offer (it starts {offer_sdp[:20]!r}); accepted: the sdp "
            "text of the page's RTCPeerConnection offer, starting 'v=0'"
        )
    if "m=audio" not in text:
        raise ValueError(
            "offer_sdp has no audio section ('m=audio'); the page must add its microphone track "
            "(or an audio transceiver) before creating the offer"
        )
    return offer_sdp


def call_session(model: str, config: Mapping[str, Any]) -> JSON:
    """The ``session`` part of the call request: the GA session object (as ``session.update``
    sends it) with the call's ``model`` first, as OpenAI's SDKs write it."""
    return {"model": model, "type": "realtime", **{k: v for k, v in config.items() if k != "type"}}


def build_call_request(
    offer_sdp: str, session: Mapping[str, Any], *, boundary: str | None = None
) -> tuple[bytes, str]:
    """The ``multipart/form-data`` body posted to the calls endpoint and its content type: a
    part ``sdp`` (``application/sdp``, the offer) and a part ``session`` (``application/json``,
    the GA session object, ``model`` included), as OpenAI's SDKs send it."""
    b = boundary or secrets.token_hex(16)
    session_json = json.dumps(dict(session), ensure_ascii=False, separators=(", ", ": "))
    parts = [
        f'--{b}\r\nContent-Disposition: form-data; name="sdp"\r\n'
        f"Content-Type: application/sdp\r\n\r\n{offer_sdp}\r\n",
        f'--{b}\r\nContent-Disposition: form-data; name="session"\r\n'
        f"Content-Type: application/json\r\n\r\n{session_json}\r\n",
        f"--{b}--\r\n",
    ]
    return "".join(parts).encode("utf-8"), f"multipart/form-data; boundary={b}"


def call_id_from_location(location: str | None) -> str | None:
    """The call id at the end of a ``Location: /v1/realtime/calls/{call_id}`` header."""
    if not location:
        return None
    tail = urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]
    return tail or None


def _error_text(body: bytes, secrets: tuple[str, ...]) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        text = str(err.get("message") or err)
        if err.get("code"):
            text = f"{err['code']}: {text}"
    return redact_message(text[:MAX_ERROR_CHARS], secrets)


def parse_call_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    where: str = "the calls endpoint",
    secrets: tuple[str, ...] = (),
) -> CallAnswer:
    """The answer SDP and call id of the calls endpoint's response.

    ``headers`` are matched without regard to case. The answer's content type is not checked:
    OpenAI sends ``text/plain`` where the docs say ``application/sdp``.

    Raises:
        CallRefusedError: any status but 200/201 (the server's error message, redacted), an
            answer that is not SDP, or no call id in ``Location``.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    if status not in (200, 201):
        raise CallRefusedError(
            f"{where} refused the call: HTTP {status}: {_error_text(body, secrets) or '(no body)'}",
            status,
        )
    sdp = body.decode("utf-8", "replace")
    if not sdp.lstrip().startswith("v=0"):
        raise CallRefusedError(
            f"{where} answered HTTP {status} without an SDP answer: {_error_text(body, secrets)}",
            status,
        )
    location = lower.get("location") or ""
    call_id = call_id_from_location(location)
    if call_id is None:
        raise CallRefusedError(
            f"{where} answered without a call id (no 'Location: .../realtime/calls/<call_id>' "
            "header); the sideband cannot attach without it",
            status,
        )
    return CallAnswer(sdp, call_id, location)


def http_event(
    *,
    method: str,
    uri: str,
    status: int | None,
    request_body: str | None,
    response_body: str | None,
    request_content_type: str | None = None,
    response_headers: Mapping[str, str] | None = None,
    duration_ms: float | None = None,
    error: str | None = None,
    call_id: str | None = None,
) -> JSON:
    """A ``local.http`` event of one exchange with the calls endpoint, in the shape an imported
    cassette's HTTP interaction has (``method``, ``uri``, ``status``, ``request_body``,
    ``response_body``), plus what the live session knows. No request header is kept: the
    ``Authorization``/``api-key`` header never reaches the recording."""
    kept = {
        k.lower(): v
        for k, v in (response_headers or {}).items()
        if k.lower() in ("location", "content-type", "x-request-id")
    }
    return {
        "type": "local.http",
        "method": method,
        "uri": safe_url(uri),
        "status": status,
        "request_content_type": request_content_type,
        "request_body": request_body,
        "response_headers": kept,
        "response_body": response_body,
        "duration_ms": None if duration_ms is None else round(duration_ms, 3),
        "error": error,
        "call_id": call_id,
    }


class EventDedup:
    """Which server events were seen already, by ``event_id``: a call's events come over the
    sideband and again from the page's data channel; the first copy wins."""

    def __init__(self, window: int = DEDUP_WINDOW) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._window = window

    def first_sighting(self, event: Mapping[str, Any]) -> bool:
        """Whether this is the first copy of the event (remembered from now on). An event
        without an ``event_id`` cannot be matched with its other copy: it counts as seen, so the
        caller keeps the copy it trusts (the sideband's)."""
        eid = event.get("event_id")
        if not isinstance(eid, str) or not eid:
            return False
        if eid in self._seen:
            return False
        self._seen[eid] = None
        if len(self._seen) > self._window:
            self._seen.popitem(last=False)
        return True

    def note(self, event: Mapping[str, Any]) -> bool:
        """:meth:`first_sighting`, for the trusted copy: without an ``event_id`` it is new."""
        eid = event.get("event_id")
        if not isinstance(eid, str) or not eid:
            return True
        return self.first_sighting(event)


@dataclass
class _Window:
    response_id: str | None
    start_ns: int
    end_ns: int | None = None


class OutputPlayback:
    """Which reply the page's output track was playing at a moment: from the server's
    ``output_audio_buffer.started`` of a response (less :data:`EARLY_PLAY_MS`) until the next
    one's. Past the response's ``stopped``/``cleared`` only sound is its audio (the page plays
    out what it had buffered, later still when it is slow); the server's track carries silence
    between replies. Times are the session's (ns)."""

    #: Windows kept: only recent ones can still own a chunk (chunks arrive within seconds).
    KEEP: Final = 64

    def __init__(self) -> None:
        self._windows: list[_Window] = []

    def on_server_event(self, etype: str, data: Mapping[str, Any], t_ns: int) -> None:
        rid = data.get("response_id")
        rid = rid if isinstance(rid, str) else None
        if etype == "output_audio_buffer.started":
            self._windows.append(_Window(rid, t_ns))
            del self._windows[: -self.KEEP]
        elif etype in ("output_audio_buffer.stopped", "output_audio_buffer.cleared"):
            for w in reversed(self._windows):
                if w.end_ns is None and (rid is None or w.response_id in (rid, None)):
                    w.end_ns = t_ns
                    break

    def streaming(self) -> list[str]:
        """The responses whose audio the server is still sending (started, not yet stopped or
        cleared), oldest first."""
        return [w.response_id or "?" for w in self._windows if w.end_ns is None]

    def owner(self, t_ns: int) -> str | None:
        """The response whose audio a chunk played at ``t_ns`` is (``None``: between replies)."""
        return self.place(t_ns)[0]

    def place(self, t_ns: int) -> tuple[str | None, bool]:
        """:meth:`owner`, and whether ``t_ns`` is only in a margin of its window (before the
        server's start or after its end: the reply's audio if it is sound, the silence between
        replies if it is not)."""
        early = EARLY_PLAY_MS * 1_000_000
        for w in reversed(self._windows):
            if w.start_ns - early <= t_ns:
                margin = t_ns < w.start_ns or (w.end_ns is not None and t_ns > w.end_ns)
                return w.response_id, margin
        return None, False


def is_silent(pcm16: bytes) -> bool:
    """Whether PCM16 audio is silence: no sample above :data:`SILENT_PEAK`."""
    if len(pcm16) < 2:
        return True
    x = np.frombuffer(pcm16, "<i2", count=len(pcm16) // 2)
    return int(np.abs(x.astype(np.int32)).max()) <= SILENT_PEAK
