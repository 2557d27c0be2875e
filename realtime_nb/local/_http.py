"""Plain HTTP on the local server's port, next to the WebSocket endpoint: the calls endpoint.

``websockets`` parses only ``GET`` requests (a WebSocket handshake), and its ``process_request``
hook cannot read a request body, so the server's connections go through :class:`FrontConnection`
first: it reads the request head, hands a ``GET`` to ``websockets`` untouched (head included), and
answers anything else itself: it reads the body (``Content-Length`` only, within
:data:`MAX_BODY_BYTES`), awaits the server's handler and writes its :class:`HttpResponse`, then
closes the connection.

The rest of the module is pure: parsing a request head, reading the calls endpoint's body (raw
``application/sdp`` or ``multipart/form-data`` with ``sdp`` and ``session``), checking an SDP offer,
and the API's JSON error bodies.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import http
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "CallOffer",
    "FrontConnection",
    "HttpError",
    "HttpRequest",
    "HttpResponse",
    "json_error",
    "parse_call_body",
    "parse_head",
]

log = logging.getLogger("realtime_nb.local")

#: Largest request line plus headers: 16 KiB, as most HTTP servers allow (nginx's large header
#: buffers are 8 KiB each); a browser's or an SDK's head is well under 2 KiB.
MAX_HEAD_BYTES: Final = 16 * 1024
#: Largest request body: 1 MiB. A browser's offer for one audio track and a data channel is
#: 3-6 KiB; the session config beside it (instructions, tool schemas) rarely passes 100 KiB.
MAX_BODY_BYTES: Final = 1024 * 1024
#: How long a client may take to send the whole request: as long as ``websockets`` gives an
#: opening handshake (10 s), so a stalled client cannot hold a connection open.
REQUEST_TIMEOUT_S: Final = 10.0
_CORS_HEADERS: Final = (
    # A local development server, reachable from any page as its WebSocket already is: the
    # browser may post an offer itself, as it may to the API's own calls endpoint.
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Expose-Headers", "Location"),
)


class HttpError(Exception):
    """A request this server refuses: its status and a message saying what is accepted."""

    def __init__(
        self, status: int, message: str, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    def response(self) -> HttpResponse:
        return json_error(self.status, self.message, self.code, self.param)


@dataclass
class HttpRequest:
    """A complete HTTP request: method, path, query, headers and body."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Headers
    body: bytes = b""


@dataclass
class HttpResponse:
    """An HTTP response to write (the connection closes after it)."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    def serialize(self) -> bytes:
        phrase = http.HTTPStatus(self.status).phrase
        lines = [f"HTTP/1.1 {self.status} {phrase}"]
        if self.content_type is not None:
            lines.append(f"Content-Type: {self.content_type}")
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("Connection: close")
        lines += [f"{k}: {v}" for k, v in (*_CORS_HEADERS, *self.headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def json_error(
    status: int,
    message: str,
    code: str | None = None,
    param: str | None = None,
    error_type: str = "invalid_request_error",
) -> HttpResponse:
    """The API's error body: ``{"error": {"message", "type", "code", "param"}}``."""
    body = {"error": {"message": message, "type": error_type, "code": code, "param": param}}
    return HttpResponse(status, json.dumps(body).encode() + b"\n", "application/json")


def parse_head(head: bytes) -> tuple[str, str, dict[str, list[str]], Headers]:
    """``(method, path, query, headers)`` of a request head (without the blank line).

    Raises:
        HttpError: 400, the head is not HTTP/1.x.
    """
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        raise HttpError(
            400, "Malformed HTTP request line: expected 'METHOD /path HTTP/1.1'."
        ) from None
    if not version.startswith("HTTP/1."):
        raise HttpError(400, f"Unsupported HTTP version {version!r}: this server speaks HTTP/1.1.")
    headers = Headers()
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(
                400, f"Malformed HTTP header line {line[:80]!r}: expected 'Name: value'."
            )
        headers[name] = value.strip()
    parts = urlsplit(target)
    return method, parts.path, parse_qs(parts.query), headers


# --- the calls endpoint's body ---------------------------------------------------------------

SDP_TYPE: Final = "application/sdp"
FORM_TYPE: Final = "multipart/form-data"
_ACCEPTED: Final = (
    "Send the SDP offer as the body with Content-Type: application/sdp, or as multipart/form-data "
    "with a field 'sdp' (the offer) and optionally a field 'session' (the session config as JSON)."
)


@dataclass(frozen=True)
class CallOffer:
    """What a ``POST /v1/realtime/calls`` carries: the SDP offer and an optional session config."""

    sdp: str
    session: dict[str, Any] | None = None


def parse_call_body(content_type: str | None, body: bytes) -> CallOffer:
    """Read the calls endpoint's body (see :data:`_ACCEPTED`) and check the offer.

    Raises:
        HttpError: 400 naming what is wrong (content type, missing or bad field, bad SDP).
    """
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime == SDP_TYPE:
        sdp, session = _text(body, "body"), None
    elif mime == FORM_TYPE:
        fields = _form_fields(content_type or "", body)
        if "sdp" not in fields:
            names = ", ".join(repr(n) for n in fields) or "none"
            raise HttpError(
                400,
                f"Missing required parameter: 'sdp' (the form's fields: {names}). {_ACCEPTED}",
                "missing_required_parameter",
                "sdp",
            )
        sdp = _text(fields["sdp"], "sdp")
        session = _session(fields["session"]) if "session" in fields else None
    else:
        shown = repr(content_type) if content_type else "none"
        raise HttpError(
            400, f"Unsupported Content-Type {shown}. {_ACCEPTED}", "invalid_content_type"
        )
    check_offer(sdp)
    return CallOffer(sdp, session)


def _text(data: bytes, param: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(
            400, f"Invalid '{param}': the SDP offer must be UTF-8 text.", "invalid_value", param
        ) from None


def _form_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    if "boundary=" not in content_type:
        raise HttpError(
            400,
            f"Invalid Content-Type {content_type!r}: multipart/form-data needs a boundary "
            f"parameter. {_ACCEPTED}",
            "invalid_content_type",
        )
    # The email package parses MIME multipart as RFC 7578 describes form-data; fed the
    # Content-Type header and the body, it yields the parts with their Content-Disposition.
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise HttpError(400, f"The multipart/form-data body could not be read. {_ACCEPTED}")
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        fields[name] = payload if isinstance(payload, bytes) else b""
    return fields


def _session(data: bytes) -> dict[str, Any]:
    try:
        session = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError(
            400,
            f"Invalid 'session': expected a JSON object (the session config, "
            f'{{"type": "realtime", ...}}), but it does not parse ({exc}).',
            "invalid_json",
            "session",
        ) from None
    if not isinstance(session, dict):
        raise HttpError(
            400,
            f"Invalid 'session': expected a JSON object, got {type(session).__name__}.",
            "invalid_type",
            "session",
        )
    return session


def check_offer(sdp: str) -> None:
    """Check that ``sdp`` is an SDP offer this server can answer: one audio section with Opus.

    Raises:
        HttpError: 400 saying what is missing.
    """
    lines = [line.strip() for line in sdp.strip().splitlines()]
    if not lines or lines[0] != "v=0":
        start = lines[0][:40] if lines else ""
        raise HttpError(
            400,
            f"Invalid SDP offer: it must start with 'v=0' (got {start!r}). Send the "
            f"RTCPeerConnection's offer (pc.localDescription.sdp) as is.",
            "invalid_offer",
            "sdp",
        )
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
    for attribute, what in (
        ("a=fingerprint:", "the DTLS certificate's fingerprint"),
        ("a=ice-ufrag:", "the ICE username fragment"),
        ("a=ice-pwd:", "the ICE password"),
    ):
        if not any(line.startswith(attribute) for line in lines):
            raise HttpError(
                400,
                f"Invalid SDP offer: no {attribute.rstrip(':')} line ({what}). Send the "
                f"RTCPeerConnection's offer (pc.localDescription.sdp) as is.",
                "invalid_offer",
                "sdp",
            )
    audio = [s for s in sections if s[0].startswith("m=audio ")]
    if not audio:
        raise HttpError(
            400,
            "Invalid SDP offer: it has no audio section (m=audio). Add the microphone track, or "
            "an audio transceiver, before creating the offer.",
            "invalid_offer",
            "sdp",
        )
    if not any(line.lower().startswith("a=rtpmap:") and " opus/48000" in line.lower()
               for line in audio[0]):  # fmt: skip
        raise HttpError(
            400,
            "Invalid SDP offer: its audio section offers no Opus codec (a=rtpmap:... "
            "opus/48000/2). This server speaks Opus only, as the API does.",
            "invalid_offer",
            "sdp",
        )


# --- the connection front --------------------------------------------------------------------

HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class FrontConnection(ServerConnection):
    """A connection of the server's port that is either a WebSocket or a plain HTTP request.

    It waits for the request head: a ``GET`` becomes the ``websockets`` connection it is (the
    handshake runs from the head on, as if nothing had looked at it); a request with any other
    method is read here and answered by :attr:`http_handler` (set by
    :func:`front_connection_class`).
    """

    http_handler: HttpHandler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not yet websockets': its handshake (and its timeout) starts only for a GET.
        self._mode = "sniffing"  # then "websocket", or "http" then "answered"
        self._front: bytearray | None = bytearray()
        self._front_transport = transport
        self._http_task: asyncio.Task[None] | None = None
        self._http_body: bytearray | None = None
        self._http_head: tuple[str, str, dict[str, list[str]], Headers] | None = None
        self._http_length = 0
        self._http_timer = asyncio.get_running_loop().call_later(
            REQUEST_TIMEOUT_S, self._http_timeout
        )

    @property
    def _is_websocket(self) -> bool:
        return self._mode == "websocket"

    def data_received(self, data: bytes) -> None:
        if self._is_websocket:
            super().data_received(data)
            return
        if self._mode == "answered":
            return  # one request per connection; it is closing
        if self._http_body is not None:
            self._body_received(data)
            return
        assert self._front is not None
        self._front += data
        end = self._front.find(b"\r\n\r\n")
        if end < 0:
            if len(self._front) > MAX_HEAD_BYTES:
                self._answer(json_error(431, f"Request head larger than {MAX_HEAD_BYTES} bytes."))
            return
        head, rest = bytes(self._front[:end]), bytes(self._front[end + 4 :])
        if head.startswith(b"GET "):  # a WebSocket handshake (or websockets' own 426 for a GET)
            buffered = bytes(self._front)
            self._front = None
            self._mode = "websocket"
            self._http_timer.cancel()
            super().connection_made(self._front_transport)
            super().data_received(buffered)
            return
        self._front = None
        self._mode = "http"
        if len(head) > MAX_HEAD_BYTES:
            self._answer(json_error(431, f"Request head larger than {MAX_HEAD_BYTES} bytes."))
            return
        try:
            self._http_head = parsed = parse_head(head)
            self._http_length = _content_length(parsed[3])
        except HttpError as err:
            self._answer(err.response())
            return
        if parsed[3].get("Expect", "").lower() == "100-continue":
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._http_body = bytearray()
        self._body_received(rest)

    def _body_received(self, data: bytes) -> None:
        assert self._http_body is not None and self._http_head is not None
        if self._http_task is not None:
            return  # pipelined bytes after the body: this connection answers one request
        self._http_body += data
        if len(self._http_body) < self._http_length:
            return
        method, path, query, headers = self._http_head
        request = HttpRequest(
            method, path, query, headers, bytes(self._http_body[: self._http_length])
        )
        self._http_task = asyncio.get_running_loop().create_task(self._serve_http(request))

    async def _serve_http(self, request: HttpRequest) -> None:
        try:
            response = await self.http_handler(request)
        except HttpError as err:
            response = err.response()
        except Exception as exc:  # a bug must cost this request, not the server
            log.exception("local server: the HTTP handler failed")
            response = json_error(
                500, f"The server had an error ({type(exc).__name__}: {exc}).", None, None,
                "server_error",
            )  # fmt: skip
        self._answer(response)

    def _answer(self, response: HttpResponse) -> None:
        self._mode = "answered"
        self._http_timer.cancel()
        self._write(response.serialize())
        transport = self._front_transport
        if not transport.is_closing():
            transport.close()  # after the buffered response is written

    def _write(self, data: bytes) -> None:
        transport = self._front_transport
        if not transport.is_closing():
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(data)

    def _http_timeout(self) -> None:
        if self._mode in ("websocket", "answered") or self._http_task is not None:
            return
        self._answer(
            json_error(408, f"The request was not received within {REQUEST_TIMEOUT_S:g} s.")
        )

    def eof_received(self) -> None:
        if self._is_websocket:
            super().eof_received()
        # Otherwise returning None closes the transport: an unanswered request ends with it.

    def connection_lost(self, exc: Exception | None) -> None:
        if self._is_websocket:
            super().connection_lost(exc)
            return
        self._http_timer.cancel()
        if self._http_task is not None and not self._http_task.done():
            self._http_task.cancel()

    def pause_writing(self) -> None:
        if self._is_websocket:
            super().pause_writing()

    def resume_writing(self) -> None:
        if self._is_websocket:
            super().resume_writing()


def _content_length(headers: Headers) -> int:
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        raise HttpError(
            411, "Chunked request bodies are not accepted: send a Content-Length header."
        )
    raw = headers.get("Content-Length", "0").strip()
    if not raw.isdigit():
        raise HttpError(400, f"Invalid Content-Length {raw!r}: expected a number of bytes.")
    length = int(raw)
    if length > MAX_BODY_BYTES:
        raise HttpError(
            413,
            f"Request body of {length} bytes is larger than the {MAX_BODY_BYTES} bytes this "
            f"server accepts (an SDP offer and a session config take a few KiB).",
            "request_too_large",
        )
    return length


def front_connection_class(handler: HttpHandler) -> type[FrontConnection]:
    """A :class:`FrontConnection` class whose HTTP requests go to ``handler`` (one per server,
    for ``websockets``' ``create_connection``)."""

    class _Front(FrontConnection):
        http_handler = staticmethod(handler)

    return _Front
