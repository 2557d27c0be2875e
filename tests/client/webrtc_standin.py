"""A loopback stand-in of OpenAI's WebRTC calls endpoint and its sideband, built from a recorded
call: the HTTP setup cassette (``test_openai_ws/test_webrtc_*.yaml``: the multipart offer and
OpenAI's answer) and the sideband cassette (``test_openai_ws_sideband/test_webrtc_*.yaml``: the
WebSocket attached with ``?call_id=``).

One port serves both, as api.openai.com does: ``POST /v1/realtime/calls`` (checked: the bearer
key, a multipart body with exactly ``sdp`` and ``session``, the session a valid
``RealtimeSessionCreateRequest`` equal to the recorded one), ``POST /v1/realtime/calls/{id}/hangup``
and the sideband upgrade ``GET /v1/realtime?call_id={id}`` (checked: the key, the recorded call
id; an unknown one gets the real API's 404 ``call_id_not_found``), whose script is replayed by
:class:`~realtime_nb.testing.CassetteMatcher` (the client must send what the recorded client
sent; the recorded sideband starts with the client's ``session.update``: no
``session.created``). The WebSocket side is websockets' sans-I/O ``ServerProtocol`` over asyncio
streams, so a POST and an upgrade can share the port.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from openai.types.realtime import RealtimeSessionCreateRequest
from pydantic import TypeAdapter, ValidationError
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from realtime_nb.runtime import LoopThread
from realtime_nb.storage.recording import Recording
from realtime_nb.testing import CassetteMatcher, ReplayMismatch

SESSION_REQUEST: TypeAdapter[Any] = TypeAdapter(RealtimeSessionCreateRequest)
#: The real API's answer to a sideband for a call it does not know (community report of
#: 2026-09, quoted in the issue's research): HTTP 404 with this body.
CALL_NOT_FOUND = {
    "error": {
        "message": "No session found for the provided call_id",
        "type": "invalid_request_error",
        "code": "call_id_not_found",
        "param": "",
    }
}


def _multipart(body: bytes, ctype: str) -> dict[str, str]:
    if "boundary=" not in ctype:
        raise ValueError(f"not multipart/form-data with a boundary: {ctype!r}")
    boundary = ctype.split("boundary=", 1)[1].strip('"')
    text = body.decode("utf-8")
    chunks = text.split(f"--{boundary}")
    if chunks[-1].strip() != "--":
        raise ValueError("the multipart body does not end with the closing boundary")
    fields: dict[str, str] = {}
    for part in chunks[1:-1]:
        head, sep, value = part.partition("\r\n\r\n")
        if not sep or 'name="' not in head:
            raise ValueError(f"a multipart part without a name: {head!r}")
        name = head.split('name="', 1)[1].split('"', 1)[0]
        fields[name] = value.removesuffix("\r\n")
    return fields


class CallStandIn:
    """See the module docstring. ``problems`` lists what the client got wrong (a test asserts
    it is empty); ``calls``/``hangups``/``sidebands`` what it did."""

    def __init__(self, setup: Path, sideband: Path, key: str, *, call_id: str | None = None):
        (inter,) = yaml.safe_load(setup.read_text(encoding="utf-8"))["interactions"]
        self.recorded_request = inter["request"]
        self.recorded_response = inter["response"]
        ctype = inter["request"]["headers"]["content-type"][0]
        self.recorded_fields = _multipart(inter["request"]["body"].encode("utf-8"), ctype)
        self.recorded_session = json.loads(self.recorded_fields["session"])
        self.location = inter["response"]["headers"]["location"][0]
        self.call_id = self.location.rsplit("/", 1)[-1]
        #: The call id the sideband accepts (another one: a sideband that cannot attach).
        self.sideband_call_id = call_id or self.call_id
        self.matcher = CassetteMatcher.from_recording(Recording.import_file(sideband))
        self.key = key
        self.problems: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.hangups: list[str] = []
        self.sidebands: list[dict[str, str]] = []
        self.replays: list[CassetteMatcher] = []
        self.mismatches: list[ReplayMismatch] = []
        self._runner: LoopThread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> CallStandIn:
        async def open_() -> asyncio.Server:
            return await asyncio.start_server(self._handle, "127.0.0.1", 0)

        self._runner, self._server = LoopThread.start_with("standin", open_(), 10, what="stand-in")
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None and self._server is not None
        server = self._server

        async def close() -> None:
            server.close()
            for w in list(self._writers):
                w.close()
            await server.wait_closed()

        self._runner.run(close(), 10)
        self._runner.stop(10)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    # -- HTTP -------------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _ = line.split(" ", 2)
            headers = {}
            for h in lines:
                if ":" in h:
                    k, v = h.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            if method == "GET":
                await self._sideband(head, target, headers, reader, writer)
                return
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status, rtype, rbody, extra = self._post(target, headers, body)
            out = [f"HTTP/1.1 {status} {'OK' if status < 300 else 'Error'}",
                   f"Content-Type: {rtype}", f"Content-Length: {len(rbody)}",
                   "Connection: close", *(f"{k}: {v}" for k, v in extra.items())]  # fmt: skip
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + rbody)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == f"Bearer {self.key}"

    def _post(
        self, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes, dict[str, str]]:
        path = urlsplit(target).path
        error = {"error": {"type": "invalid_request_error", "code": None, "message": ""}}
        if not self._authorized(headers):
            error["error"]["message"] = "Incorrect API key provided."
            return 401, "application/json", json.dumps(error).encode(), {}
        if path.endswith("/hangup"):
            call_id = path.split("/")[-2]
            self.hangups.append(call_id)
            if call_id != self.call_id:
                return 404, "application/json", json.dumps(CALL_NOT_FOUND).encode(), {}
            return 200, "application/json", b"{}", {}
        if path != "/v1/realtime/calls":
            return 404, "application/json", b'{"error": {"message": "no such path"}}', {}
        try:
            fields = _multipart(body, headers.get("content-type", ""))
            if set(fields) != {"sdp", "session"}:
                raise ValueError(f"fields {sorted(fields)}; expected sdp and session")
            session = json.loads(fields["session"])
            SESSION_REQUEST.validate_python(session)
        except (ValueError, ValidationError) as exc:
            self.problems.append(f"call request: {exc}")
            error["error"]["message"] = str(exc)
            return 400, "application/json", json.dumps(error).encode(), {}
        self.calls.append({"headers": headers, "sdp": fields["sdp"], "session": session})
        if session != self.recorded_session:
            self.problems.append(f"session {session} is not the recorded {self.recorded_session}")
        if fields["sdp"] != self.recorded_fields["sdp"]:
            self.problems.append("the offer is not the recorded one")
        answer = self.recorded_response["body"]["string"].encode("utf-8")
        return 201, "text/plain; charset=utf-8", answer, {"Location": self.location}

    # -- the sideband ------------------------------------------------------------------------------

    async def _sideband(
        self,
        head: bytes,
        target: str,
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        proto = ServerProtocol(max_size=None)
        proto.receive_data(head)
        (request,) = proto.events_received()
        assert isinstance(request, Request)
        query = parse_qs(urlsplit(target).query)
        self.sidebands.append({"path": target, "authorization": headers.get("authorization", "")})
        if not self._authorized(headers):
            response = proto.reject(401, json.dumps({"error": {"message": "no key"}}))
        elif query.get("call_id") != [self.sideband_call_id]:
            response = proto.reject(404, json.dumps(CALL_NOT_FOUND))
        else:
            response = proto.accept(request)
        proto.send_response(response)
        writer.write(b"".join(proto.data_to_send()))
        await writer.drain()
        if response.status_code != 101:
            return
        m = self.matcher.fresh()
        self.replays.append(m)
        for ev in m.start():
            proto.send_text(json.dumps(ev).encode())
        while True:
            for data in proto.data_to_send():
                if data:
                    writer.write(data)
                else:
                    return
            await writer.drain()
            chunk = await reader.read(65536)
            if not chunk:
                proto.receive_eof()
                continue
            proto.receive_data(chunk)
            for frame in proto.events_received():
                if getattr(frame, "opcode", None) is not Opcode.TEXT:
                    continue
                try:
                    out = m.receive(json.loads(frame.data))
                except ReplayMismatch as exc:
                    self.mismatches.append(exc)
                    proto.send_close(1008, "replay mismatch")
                    break
                for ev in out:
                    proto.send_text(json.dumps(ev).encode())
