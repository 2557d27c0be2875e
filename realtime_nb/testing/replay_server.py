"""Cassette server: answer a client with a recorded session, offline and deterministically.

``ReplayServer(recording)`` is a real WebSocket server on loopback that plays the *server* side of
a recorded session (a realtime_nb recording, a JSONL log or a YAML cassette) to whatever connects,
and checks that the client sends what the recorded client sent: the VCR idea for realtime.

    with ReplayServer("tests/cassettes/weather.arrow") as srv:
        run_my_agent(url=srv.url)       # any Realtime client: realtime_nb.Session, openai, ...
    # leaving the block raises ReplayMismatch if the client went off script

Matching rules (:class:`CassetteMatcher`, pure and usable without a socket):

1. Client events are matched **in order** against the recorded client events (``local`` events of
   the recording are ignored). The ``type`` must be equal (beta names count as their GA names).
2. Every other field is compared as JSON, recursively, **except**:
   - fields whose dotted path matches one of ``ignore`` (fnmatch patterns; list items are path
     segments ``0``, ``1``...). The default, :data:`DEFAULT_IGNORE`, ignores ``event_id`` (client
     generated, random per run);
   - the audio of ``input_audio_buffer.append``, compared according to ``audio``
     (:class:`AudioMatch`): ``exact`` (same bytes), ``length`` (same byte count, one append for
     one append) or ``total`` (default: appends may be chunked differently; the number of audio
     bytes sent so far must reach the recorded total before each non-append event, and may never
     exceed it).
3. The recorded server events are sent in their recorded order, each as soon as the client events
   it may depend on have arrived: a server event waits for the last recorded client event before
   it that could have caused it. Audio appends cause only ``input_audio_buffer.*`` events (VAD);
   ``conversation.item.create`` causes only the ``conversation.item.added``/``done`` of
   non-assistant items and errors; every other client event may cause anything. So a client that
   sends a tool output later (after ``response.done``) than the recorded one still gets the same
   stream, and one that streams its microphone is never waited for by a response.
4. A mismatch (a different event, more events than recorded, audio beyond the recorded total)
   raises :class:`ReplayMismatch` naming what was expected, what was got, the differing fields
   and the closest recorded client event. The server sends the client an ``error`` event with code
   ``replay_mismatch`` and the same message, closes the connection (1008), and re-raises the
   mismatch from :meth:`ReplayServer.check` and when its ``with`` block ends.

5. A recording of several connections (a cassette's ``{kind: close}`` interaction, a live
   session's ``local.connection.closed``) is replayed one connection per connection: the first
   client to connect gets the first recorded connection, the next one (a reconnect) the second,
   and so on; after the last, the next client starts again from the first. When the recorded
   connection ended with a close that the client did not ask for (a cassette's close, a drop or
   a server's close in a live recording; not ``initiated_by: "client"``), the server closes the
   connection at that point, once every recorded client event of it has arrived and every
   server event has been sent, with the recorded code and reason. A code that cannot be sent in
   a close frame (1006 "abnormal closure", 1015) drops the TCP connection instead, and 1005
   sends a close frame without a code: the client sees what the recorded client saw.

A recording of one connection is replayed from the start to every client that connects.
"""

from __future__ import annotations

import binascii
import copy
import fnmatch
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Final

from ..core.protocol import Source, canonical_type
from ..runtime import LoopThread
from ..storage.recording import Recording

__all__ = [
    "DEFAULT_IGNORE",
    "AudioMatch",
    "CassetteMatcher",
    "Difference",
    "RecordedConnection",
    "ReplayMismatch",
    "ReplayServer",
    "load_recording",
    "recorded_connections",
]

JSON = dict[str, Any]

#: Fields that legitimately differ between runs of the same client: ids the client generates.
DEFAULT_IGNORE: Final = ("event_id",)
#: Longest JSON shown for an event in a mismatch message: enough to read the event, not a page
#: of base64 (audio fields are abbreviated first).
MAX_SHOWN_CHARS: Final = 600
#: Most differing fields listed in a mismatch message.
MAX_SHOWN_DIFFS: Final = 8
#: WebSocket close code on a mismatch: 1008 "policy violation" (the client broke the script).
MISMATCH_CLOSE_CODE: Final = 1008
#: Largest frame accepted from a client: 16 MiB, as the real API (an append of ~5 min of audio).
MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
#: Seconds :meth:`ReplayServer.start` waits for the server thread to bind its port (and
#: :meth:`ReplayServer.stop` for its connections to close and its thread to end).
START_TIMEOUT_S: Final = 10.0
#: Close codes a close frame may carry (RFC 6455 section 7.4 and the IANA registry; 3000-4999
#: are for applications): a recorded close with another code is replayed by dropping the TCP
#: connection (the peer then sees 1006), 1005 by a close frame without a code.
SENDABLE_CLOSE_CODES: Final = frozenset(range(1000, 1004)) | frozenset(range(1007, 1015))
#: Longest close reason, in UTF-8 bytes, a close frame can carry (125-byte payload - the code).
MAX_CLOSE_REASON_BYTES: Final = 123

_APPEND: Final = "input_audio_buffer.append"
_ITEM_EVENTS: Final = frozenset(
    {"conversation.item.added", "conversation.item.done", "conversation.item.created"}
)


class AudioMatch(str, Enum):
    """How the audio of ``input_audio_buffer.append`` events is matched."""

    EXACT = "exact"  #: one append per recorded append, the same bytes
    LENGTH = "length"  #: one append per recorded append, the same number of bytes
    TOTAL = "total"  #: any chunking; the running total of bytes must follow the recording

    @classmethod
    def parse(cls, value: AudioMatch | str) -> AudioMatch:
        """Raises ValueError naming the value and the accepted ones."""
        try:
            return cls(value)
        except ValueError:
            accepted = ", ".join(repr(m.value) for m in cls)
            raise ValueError(f"unknown audio matching {value!r}; accepted: {accepted}") from None


@dataclass(frozen=True)
class Difference:
    """One field that differs: its dotted path, the recorded value and the value got."""

    path: str
    expected: Any
    got: Any

    def __str__(self) -> str:
        return f"{self.path or '<event>'}: expected {_short(self.expected, 120)}, got {_short(self.got, 120)}"


class ReplayMismatch(AssertionError):
    """The client did not send what the recorded client sent.

    Attributes:
        index: position of the offending client event (0-based, among client events).
        expected: the recorded client event expected there (``None``: the recording had no more).
        got: the event the client sent.
        differences: the fields that differ from ``expected``.
        closest: ``(index, event)`` of the recorded client event most like ``got``, or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        index: int,
        expected: JSON | None,
        got: JSON,
        differences: Sequence[Difference] = (),
        closest: tuple[int, JSON] | None = None,
    ) -> None:
        super().__init__(message)
        self.index = index
        self.expected = expected
        self.got = got
        self.differences = list(differences)
        self.closest = closest


def _short(value: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    text = json.dumps(_abbreviate(value), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _abbreviate(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("audio", "delta") and isinstance(v, str) and len(v) > 40:
                out[k] = f"<{_b64_len(v)} bytes of audio>"
            else:
                out[k] = _abbreviate(v)
        return out
    if isinstance(value, list):
        return [_abbreviate(v) for v in value]
    return value


def _b64_len(text: str) -> int:
    """Decoded length of base64 text (without decoding it)."""
    n = len(text)
    return n * 3 // 4 - (text.endswith("=") + text.endswith("=="))


def json_differences(
    expected: Any, got: Any, ignore: Sequence[str] = (), path: str = ""
) -> list[Difference]:
    """The leaf fields where ``got`` differs from ``expected`` (dotted paths; ``ignore`` are
    fnmatch patterns of paths left out)."""
    if path and any(fnmatch.fnmatchcase(path, pat) for pat in ignore):
        return []
    if isinstance(expected, dict) and isinstance(got, dict):
        out: list[Difference] = []
        for k in list(expected) + [k for k in got if k not in expected]:
            sub = f"{path}.{k}" if path else str(k)
            if k not in got:
                if not any(fnmatch.fnmatchcase(sub, pat) for pat in ignore):
                    out.append(Difference(sub, expected[k], "<missing>"))
            elif k not in expected:
                if not any(fnmatch.fnmatchcase(sub, pat) for pat in ignore):
                    out.append(Difference(sub, "<missing>", got[k]))
            else:
                out.extend(json_differences(expected[k], got[k], ignore, sub))
        return out
    if isinstance(expected, list) and isinstance(got, list):
        out = []
        for i in range(max(len(expected), len(got))):
            sub = f"{path}.{i}" if path else str(i)
            if i >= len(got):
                out.append(Difference(sub, expected[i], "<missing>"))
            elif i >= len(expected):
                out.append(Difference(sub, "<missing>", got[i]))
            else:
                out.extend(json_differences(expected[i], got[i], ignore, sub))
        return out
    if expected != got or type(expected) is not type(got):
        return [Difference(path, expected, got)]
    return []


def _audio_of(data: Mapping[str, Any]) -> bytes | None:
    b64 = data.get("audio")
    if not isinstance(b64, str):
        return None
    try:
        return binascii.a2b_base64(b64)
    except (binascii.Error, ValueError):
        return None


def _can_cause(client_type: str, server: Mapping[str, Any]) -> bool:
    """Whether a client event of this type may have caused this server event (rule 3)."""
    stype = canonical_type(str(server.get("type", "")))
    if client_type == _APPEND:
        return stype.startswith("input_audio_buffer.")
    if client_type == "conversation.item.create":
        if stype == "error":
            return True
        if stype not in _ITEM_EVENTS:
            return False
        item = server.get("item")
        if not isinstance(item, Mapping):
            return True
        return item.get("role") != "assistant" and item.get("type") not in (
            "function_call",
            "mcp_call",
            "mcp_list_tools",
            "mcp_approval_request",
        )
    return True


class CassetteMatcher:
    """The sans-I/O core of :class:`ReplayServer`: one replay of one recorded connection.

    Call :meth:`start` once (the server events to send on connect), then :meth:`receive` for
    each client event (the server events it releases). Raises :class:`ReplayMismatch`.

    Args:
        client_events, server_events: the recorded events as wire dicts, with ``order``: for
            each server event, how many recorded client events preceded it.
        audio: :class:`AudioMatch` (or its value).
        ignore: fnmatch patterns of field paths left out of the comparison.
    """

    def __init__(
        self,
        client_events: Sequence[JSON],
        server_events: Sequence[JSON],
        order: Sequence[int],
        *,
        audio: AudioMatch | str = AudioMatch.TOTAL,
        ignore: Sequence[str] = DEFAULT_IGNORE,
    ) -> None:
        if len(order) != len(server_events):
            raise ValueError("order needs one entry per server event")
        self.client_events = list(client_events)
        self.server_events = list(server_events)
        self.audio = AudioMatch.parse(audio)
        self.ignore = tuple(ignore)
        self.ctypes = [canonical_type(str(e.get("type", ""))) for e in self.client_events]
        # Audio bytes of each recorded append, and running totals (before event k: cum[k]).
        self._alen = [
            _b64_len(e["audio"]) if t == _APPEND and isinstance(e.get("audio"), str) else 0
            for e, t in zip(self.client_events, self.ctypes, strict=True)
        ]
        self._cum = [0]
        for n in self._alen:
            self._cum.append(self._cum[-1] + n)
        self.needs = self._needs(order)
        #: Recorded client events matched so far; server events sent so far.
        self.matched = 0
        self.sent = 0
        self.received = 0
        self._audio_got = 0  # TOTAL mode: audio bytes the client sent

    @classmethod
    def from_recording(
        cls,
        recording: Recording,
        *,
        audio: AudioMatch | str = AudioMatch.TOTAL,
        ignore: Sequence[str] = DEFAULT_IGNORE,
    ) -> CassetteMatcher:
        """From a recording's client and server events (local events are left out), every
        connection of it as one script: :func:`recorded_connections` gives one per connection."""
        client: list[JSON] = []
        server: list[JSON] = []
        order: list[int] = []
        for ev in recording.events:
            if ev.source is Source.CLIENT:
                client.append(ev.wire())
            elif ev.source is Source.SERVER:
                server.append(ev.wire())
                order.append(len(client))
        return cls(client, server, order, audio=audio, ignore=ignore)

    def _needs(self, order: Sequence[int]) -> list[int]:
        """For each server event, how many client events must be matched before it is sent."""
        needs: list[int] = []
        last: dict[str, int] = {}  # kind of client event -> its count (index + 1), so far
        c = 0
        need = 0
        for sev, before in zip(self.server_events, order, strict=True):
            while c < before:
                t = self.ctypes[c]
                kind = t if t in (_APPEND, "conversation.item.create") else "other"
                last[kind] = c + 1
                c += 1
            for kind, count in last.items():
                if count > need and _can_cause(kind if kind != "other" else "", sev):
                    need = count
            needs.append(need)
        return needs

    def fresh(self) -> CassetteMatcher:
        """A new replay of the same recording, from the start (the recorded events shared)."""
        m = copy.copy(self)
        m.matched = m.sent = m.received = 0
        m._audio_got = 0
        return m

    @property
    def finished(self) -> bool:
        """Every recorded client event was matched and every server event sent."""
        return self.matched == len(self.client_events) and self.sent == len(self.server_events)

    def start(self) -> list[JSON]:
        """The server events to send as soon as the client connects."""
        return self._release()

    def _release(self) -> list[JSON]:
        out = []
        while self.sent < len(self.server_events) and self.needs[self.sent] <= self.matched:
            out.append(self.server_events[self.sent])
            self.sent += 1
        return out

    def receive(self, event: JSON) -> list[JSON]:
        """Match one client event; returns the server events it releases.

        Raises:
            ReplayMismatch: ``event`` is not what the recording expects next.
        """
        index = self.received
        self.received += 1
        etype = canonical_type(str(event.get("type", "")))
        if self.audio is AudioMatch.TOTAL:
            self._receive_total(index, etype, event)
        else:
            self._receive_one(index, etype, event)
        return self._release()

    def _expected(self) -> JSON | None:
        return self.client_events[self.matched] if self.matched < len(self.client_events) else None

    def _receive_one(self, index: int, etype: str, event: JSON) -> None:
        expected = self._expected()
        if expected is None:
            raise self._mismatch(index, None, event, [], "the recording has no more client events")
        diffs = self._compare(expected, event)
        if diffs:
            raise self._mismatch(index, expected, event, diffs)
        self.matched += 1

    def _receive_total(self, index: int, etype: str, event: JSON) -> None:
        if etype == _APPEND:
            n = len(_audio_of(event) or b"")
            got = self._audio_got + n
            # The audio expected before the next non-append recorded event.
            k = self.matched
            while k < len(self.ctypes) and self.ctypes[k] == _APPEND:
                k += 1
            limit = self._cum[k]
            if got > limit or k == self.matched:
                expected = self._expected()
                reason = (
                    f"audio beyond the recording: {got - self._cum[self.matched]} bytes appended "
                    f"where the recording has {limit - self._cum[self.matched]} before its next "
                    f"{'event' if expected is None else expected.get('type')!s}"
                )
                raise self._mismatch(
                    index, expected, event, [Difference("audio", limit, got)], reason
                )
            self._audio_got = got
            while self.matched < k and self._cum[self.matched + 1] <= got:
                self.matched += 1
            return
        # A non-append event: every recorded append before it must be covered, exactly.
        if self.matched < len(self.ctypes) and self.ctypes[self.matched] == _APPEND:
            expected = self._expected()
            k = self.matched
            while k < len(self.ctypes) and self.ctypes[k] == _APPEND:
                k += 1
            missing = self._cum[k] - self._audio_got
            nxt = self.client_events[k] if k < len(self.client_events) else None
            reason = (
                f"{missing} more bytes of audio (input_audio_buffer.append) were expected before "
                f"{'the end of the recording' if nxt is None else nxt.get('type')}"
            )
            raise self._mismatch(
                index, expected, event, [Difference("type", _APPEND, event.get("type"))], reason
            )
        self._receive_one(index, etype, event)

    def _compare(self, expected: JSON, got: JSON) -> list[Difference]:
        et = canonical_type(str(expected.get("type", "")))
        gt = canonical_type(str(got.get("type", "")))
        if et != gt:
            return [Difference("type", expected.get("type"), got.get("type"))]
        ignore = self.ignore
        if et == _APPEND:
            ignore = (*ignore, "audio")
            a, b = _audio_of(expected) or b"", _audio_of(got) or b""
            if self.audio is AudioMatch.EXACT and a != b:
                return [Difference("audio", f"<{len(a)} bytes>", f"<{len(b)} different bytes>")]
            if len(a) != len(b):
                return [Difference("audio", f"<{len(a)} bytes>", f"<{len(b)} bytes>")]
        return json_differences(
            {k: v for k, v in expected.items() if k != "type"},
            {k: v for k, v in got.items() if k != "type"},
            ignore,
        )

    def closest(self, got: JSON) -> tuple[int, JSON, list[Difference]] | None:
        """The recorded client event most like ``got``: same type first, then fewest
        differing fields (ties: the earliest)."""
        best: tuple[int, int, JSON, list[Difference]] | None = None
        for i, rec in enumerate(self.client_events):
            diffs = self._compare(rec, got)
            score = len(diffs) + (1000 if diffs and diffs[0].path == "type" else 0)
            if best is None or score < best[0]:
                best = (score, i, rec, diffs)
                if score == 0:
                    break
        return None if best is None else (best[1], best[2], best[3])

    def _mismatch(
        self,
        index: int,
        expected: JSON | None,
        got: JSON,
        diffs: Sequence[Difference],
        reason: str | None = None,
    ) -> ReplayMismatch:
        lines = [
            f"client event #{index} ({got.get('type')}) does not match the recording"
            + (f": {reason}" if reason else ""),
            f"  expected (recorded client event #{self.matched}): "
            + (
                _short(expected)
                if expected is not None
                else "nothing (the recorded client sent no more)"
            ),
            f"  got: {_short(got)}",
        ]
        if diffs:
            lines.append("  differences:")
            lines += [f"    {d}" for d in list(diffs)[:MAX_SHOWN_DIFFS]]
            if len(diffs) > MAX_SHOWN_DIFFS:
                lines.append(f"    ... and {len(diffs) - MAX_SHOWN_DIFFS} more")
        near = self.closest(got)
        closest: tuple[int, JSON] | None = None
        if near is not None:
            i, rec, ndiffs = near
            closest = (i, rec)
            what = (
                "identical"
                if not ndiffs
                else f"{len(ndiffs)} difference(s): " + "; ".join(str(d) for d in ndiffs[:3])
            )
            lines.append(f"  closest recorded client event: #{i} {_short(rec, 300)} ({what})")
        lines.append(
            f"  (matched {self.matched} of {len(self.client_events)} recorded client events; "
            f"audio: {self.audio.value}; ignored fields: {', '.join(self.ignore) or 'none'})"
        )
        return ReplayMismatch(
            "\n".join(lines),
            index=index,
            expected=expected,
            got=got,
            differences=diffs,
            closest=closest,
        )


@dataclass(frozen=True)
class RecordedConnection:
    """One connection of a recording: the script of its events, and how it ended.

    Attributes:
        matcher: a :class:`CassetteMatcher` of its client and server events (a template: each
            replay uses :meth:`CassetteMatcher.fresh`).
        close: the ``local.connection.closed`` event that ended it (``code``, ``reason``, and
            ``ok`` from a cassette or ``initiated_by``/``clean`` from a live session), or
            ``None`` when the recording ends while it is open.
    """

    matcher: CassetteMatcher
    close: JSON | None = None

    @property
    def server_closes(self) -> bool:
        """Whether the replay closes this connection itself: it ended with a close the client
        did not ask for (a cassette's close; a drop or a server's close in a live recording)."""
        return self.close is not None and self.close.get("initiated_by") != "client"


def recorded_connections(
    recording: Recording,
    *,
    audio: AudioMatch | str = AudioMatch.TOTAL,
    ignore: Sequence[str] = DEFAULT_IGNORE,
) -> list[RecordedConnection]:
    """The connections of a recording, split at each ``local.connection.closed`` event (a
    recording without one is one connection). A connection is kept even if nothing was exchanged
    on it, as long as it was closed; what follows the last close is kept when it holds events.

    Raises:
        ValueError: an unknown ``audio`` value (the accepted ones are listed).
    """
    out: list[RecordedConnection] = []
    client: list[JSON] = []
    server: list[JSON] = []
    order: list[int] = []

    def cut(close: JSON | None) -> None:
        m = CassetteMatcher(client, server, order, audio=audio, ignore=ignore)
        out.append(RecordedConnection(m, close))

    for ev in recording.events:
        if ev.source is Source.CLIENT:
            client.append(ev.wire())
        elif ev.source is Source.SERVER:
            server.append(ev.wire())
            order.append(len(client))
        elif ev.type == "local.connection.closed":
            cut(dict(ev.data))
            client, server, order = [], [], []
    if client or server or not out:
        cut(None)
    return out


def load_recording(recording: Recording | str | Path) -> Recording:
    """A :class:`Recording` from itself, a recording file, a JSONL log or a YAML cassette.

    Raises:
        FileNotFoundError: no such file. TypeError: not a recording nor a path.
    """
    if isinstance(recording, Recording):
        return recording
    if isinstance(recording, (str, Path)):
        p = Path(recording)
        if not p.exists():
            raise FileNotFoundError(f"no recording or cassette at {p}")
        return Recording.import_file(p)
    raise TypeError(
        f"expected a Recording or the path of a recording/JSONL/YAML cassette, got {type(recording).__name__}"
    )


class ReplayServer:
    """A loopback WebSocket server replaying a recorded session (see the module docstring).

    Args:
        recording: a :class:`Recording`, or the path of a recording, JSONL log or YAML cassette.
        audio: how appends are matched (:class:`AudioMatch`; default ``"total"``).
        ignore: field path patterns left out of the comparison (default :data:`DEFAULT_IGNORE`;
            give ``(*DEFAULT_IGNORE, "item.id")`` to add some).
        host, port: where to listen (``port=0``: a free port).

    Usage::

        with ReplayServer(rec) as srv:
            session = Session(url=srv.url)
            ...

    Raises:
        ValueError: an unknown ``audio`` value (the accepted ones are listed).
        ReplayMismatch: from :meth:`check` and on leaving the ``with`` block, if a client went off
            the recorded script.
    """

    def __init__(
        self,
        recording: Recording | str | Path,
        *,
        audio: AudioMatch | str = AudioMatch.TOTAL,
        ignore: Iterable[str] = DEFAULT_IGNORE,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.recording = load_recording(recording)
        self.audio = AudioMatch.parse(audio)
        self.ignore = tuple(ignore)
        self.host = host
        self.port = port
        #: The recorded connections, replayed in turn to the clients that connect. Built once to
        #: validate the options now; each replay starts from a fresh copy of a matcher.
        self.connections = recorded_connections(
            self.recording, audio=self.audio, ignore=self.ignore
        )
        self.mismatches: list[ReplayMismatch] = []
        #: One matcher per connection, in order (to inspect what was matched).
        self.replays: list[CassetteMatcher] = []
        self._runner: LoopThread | None = None
        self._server: Any = None  # websockets' Server (imported lazily)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/v1/realtime`` (any path and query are accepted)."""
        return f"ws://{self.host}:{self.port}/v1/realtime"

    def _next_connection(self) -> tuple[RecordedConnection, CassetteMatcher]:
        """The recorded connection the next client gets (in turn), and a fresh replay of it."""
        conn = self.connections[len(self.replays) % len(self.connections)]
        m = conn.matcher.fresh()
        self.replays.append(m)
        return conn, m

    async def _handler(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        conn, m = self._next_connection()
        try:
            for ev in m.start():
                await ws.send(json.dumps(ev, ensure_ascii=False))
            if conn.server_closes and m.finished:
                await _close_as_recorded(ws, conn.close or {})
                return
            async for message in ws:
                try:
                    data = json.loads(message)
                    if not isinstance(data, dict):
                        raise ValueError("not a JSON object")
                except ValueError as exc:
                    data = {"type": "<not JSON>", "_text": str(message)[:200], "_error": str(exc)}
                try:
                    out = m.receive(data)
                except ReplayMismatch as exc:
                    self.mismatches.append(exc)
                    await ws.send(json.dumps(_error_event(exc, data)))
                    await ws.close(MISMATCH_CLOSE_CODE, "replay mismatch")
                    return
                for ev in out:
                    await ws.send(json.dumps(ev, ensure_ascii=False))
                if conn.server_closes and m.finished:
                    await _close_as_recorded(ws, conn.close or {})
                    return
        except ConnectionClosed:
            return

    async def _open(self) -> Any:
        from websockets.asyncio.server import serve

        server = await serve(
            self._handler,
            self.host,
            self.port,
            max_size=MAX_FRAME_BYTES,
            compression=None,
            select_subprotocol=_select_subprotocol,
        )
        self.port = int(next(iter(server.sockets)).getsockname()[1])
        return server

    @staticmethod
    async def _close(server: Any) -> None:
        server.close()  # closes open connections with 1001 (going away)
        await server.wait_closed()

    def start(self) -> ReplayServer:
        """Start listening on a thread of its own (``realtime_nb-replay``). Idempotent.

        Raises:
            OSError: the port could not be bound.
            realtime_nb.runtime.LoopTimeoutError: (a ``TimeoutError``, so an ``OSError`` too)
                not listening within :data:`START_TIMEOUT_S`.
        """
        with self._lock:
            if self._runner is not None:
                return self
            self._runner, self._server = LoopThread.start_with(
                "replay", self._open(), START_TIMEOUT_S, what="starting the replay server"
            )
        return self

    def stop(self) -> None:
        """Stop listening and close open connections (1001). Idempotent.

        Raises:
            realtime_nb.runtime.LoopTimeoutError: (a ``TimeoutError``) connections or the thread
                still open after :data:`START_TIMEOUT_S`.
        """
        with self._lock:
            runner, server = self._runner, self._server
            self._runner = self._server = None
        if runner is None:
            return
        try:
            if server is not None:
                runner.run(self._close(server), START_TIMEOUT_S, what="closing the replay server")
        finally:
            runner.stop(START_TIMEOUT_S)

    def check(self) -> None:
        """Raise the first :class:`ReplayMismatch` any client caused (no-op if none)."""
        if self.mismatches:
            raise self.mismatches[0]

    @property
    def finished(self) -> bool:
        """The last connection was a replay of the last recorded connection, and matched every
        recorded client event of it and got every server event (with one recorded connection:
        the last client went through the whole recording)."""
        n = len(self.connections)
        return bool(self.replays) and len(self.replays) % n == 0 and self.replays[-1].finished

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if exc_type is None:
            self.check()

    def __repr__(self) -> str:
        where = self.recording.path.name if self.recording.path else "in memory"
        return f"<ReplayServer {where} at {self.url}: {len(self.replays)} connection(s)>"


async def _close_as_recorded(ws: Any, close: Mapping[str, Any]) -> None:
    """End a connection as the recorded one ended (rule 5 of the module docstring)."""
    code = close.get("code")
    reason = close.get("reason")
    text = reason if isinstance(reason, str) else ""
    text = text.encode("utf-8")[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")
    if isinstance(code, int) and (code in SENDABLE_CLOSE_CODES or 3000 <= code < 5000):
        await ws.close(code, text)
    elif code == 1005:  # "no status received": a close frame with an empty payload
        await ws.close(None)
    else:  # 1006/1015 and anything unsendable: no closing handshake at all
        ws.transport.abort()


def _select_subprotocol(connection: Any, subprotocols: Sequence[str]) -> Any:
    # Browsers authenticate with ["realtime", "openai-insecure-api-key.<key>"]: echo "realtime".
    return "realtime" if "realtime" in subprotocols else None


def _error_event(exc: ReplayMismatch, got: Mapping[str, Any]) -> JSON:
    return {
        "type": "error",
        "event_id": f"event_replay_mismatch_{exc.index}",
        "error": {
            "type": "invalid_request_error",
            "code": "replay_mismatch",
            "message": str(exc),
            "param": None,
            "event_id": got.get("event_id") if isinstance(got.get("event_id"), str) else None,
        },
    }
