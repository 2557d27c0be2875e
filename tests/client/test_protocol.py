"""ClientProtocol without a socket: every recorded session's server events are fed in order (the
tool calls answered, the sent events fed back as the shell does), and what it decides to send,
run and record is checked."""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from openai.types.realtime import RealtimeClientEvent
from pydantic import TypeAdapter

from realtime_nb.client.protocol import ClientProtocol, ToolRun
from realtime_nb.core.events import Event, extract_ids
from realtime_nb.core.protocol import ProtocolError, Source, client
from realtime_nb.core.tools import tool
from realtime_nb.storage.recording import Recording
from tests.conftest import REPO, SESSIONS, cassettes

VALIDATOR: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
JSON = dict[str, Any]

ALL = [*cassettes("**/*.yaml"), REPO / "recordings" / "demo.arrow"]
TOOL_ROUNDS = [
    SESSIONS / "test_openai_ws" / "test_tool_call_round.yaml",
    SESSIONS / "test_azure_ws" / "test_tool_call_round.yaml",
    SESSIONS / "test_xai_ws" / "test_tool_call_round.yaml",
    SESSIONS
    / "test_azure_ws"
    / "test_spoken_turn_transcribed_drives_a_tool_and_answers_in_audio.yaml",
]
AUDIO_OUT = SESSIONS / "test_openai_ws" / "test_text_in_audio_out_turn.yaml"
#: A session with the local backend, its audio and timings kept (the cassettes above keep neither:
#: their audio is elided and they have no clock): a spoken turn, a tool call, a spoken answer.
DEMO = REPO / "recordings" / "demo.arrow"
#: Server events after which the client has something to say (all others need no answer).
ANSWERED = {
    "session.created",  # the configuration
    "input_audio_buffer.speech_started",  # a truncation, when audio was playing
    "response.function_call_arguments.done",  # a tool's output (when it runs at once, as here)
    "response.output_item.done",
    "response.done",  # the follow-up response.create
}


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"It is foggy and 12 degrees in {city}."


@tool
def remember_name(name: str) -> str:
    """Remember the user's name."""
    return f"Stored {name}."


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


class Driver:
    """Feeds a ClientProtocol like the session does: each event, then what it asks to record and
    to send fed back as local and client events; tool calls answered at once by their tools."""

    def __init__(self, proto: ClientProtocol, run_tools: bool = True) -> None:
        self.proto = proto
        self.run_tools = run_tools
        self.seq = itertools.count()
        self.log: list[tuple[Event, list[JSON]]] = []  # (event, client events sent after it)
        self.runs: list[ToolRun] = []
        self.recorded: list[Event] = []

    def event(self, source: Source, data: JSON, t_ns: int, audio: bytes | None = None) -> Event:
        """An event as the recorder makes it (the ids looked up in nested items, responses)."""
        _, item_id, response_id = extract_ids(data)
        return Event(next(self.seq), t_ns, source, data["type"], data=data, audio=audio,
                     item_id=item_id, response_id=response_id)  # fmt: skip

    def feed(self, ev: Event) -> list[JSON]:
        ev = Event(next(self.seq), ev.t_ns, ev.source, ev.type, data=ev.data, audio=ev.audio,
                   item_id=ev.item_id, response_id=ev.response_id)  # fmt: skip
        self.recorded.append(ev)
        self.proto.receive(ev)
        sent = self.settle(ev.t_ns)
        self.log.append((ev, sent))
        return sent

    def settle(self, t_ns: int) -> list[JSON]:
        sent: list[JSON] = []
        while True:
            records = self.proto.events_to_record()
            runs = self.proto.calls_to_run()
            out = self.proto.events_to_send()
            if not (records or runs or out):
                return sent
            for data in records:
                ev = self.event(Source.LOCAL, data, t_ns)
                self.recorded.append(ev)
                self.proto.receive(ev)
            for data, audio in out:
                sent.append(data)
                ev = self.event(Source.CLIENT, data, t_ns, audio)
                self.recorded.append(ev)
                self.proto.receive(ev)
            for run in runs:
                self.runs.append(run)
                if self.run_tools:
                    self.proto.tool_done(run.call, run.tool.func(**run.kwargs), 1.0)


def _server_events(path: Path) -> list[Event]:
    rec = Recording.open(path) if path.suffix == ".arrow" else Recording.import_file(path)
    return [e for e in rec.events if e.source is Source.SERVER]


def _connected(**kwargs: Any) -> Driver:
    proto = ClientProtocol(**kwargs)
    proto.connection_made()
    d = Driver(proto)
    d.settle(0)
    return d


# --- every recorded session ------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_every_session_sends_only_what_its_events_call_for(path: Path) -> None:
    d = _connected()
    for ev in _server_events(path):
        d.feed(ev)
    sent_after = [(ev.type, [s["type"] for s in sent]) for ev, sent in d.log if sent]
    for etype, types in sent_after:
        assert etype in ANSWERED, (etype, types)
        if etype == "input_audio_buffer.speech_started":
            assert types == ["conversation.item.truncate"]
        elif etype == "session.created":
            raise AssertionError("no configuration was given, so none is sent")
        else:
            assert set(types) <= {"conversation.item.create", "response.create"}
    calls = [e for e in _server_events(path) if e.type == "response.function_call_arguments.done"]
    # With no tools registered, each call is answered once with an error the model can read.
    outputs = [s for _, sent in d.log for s in sent if s["type"] == "conversation.item.create"]
    assert [o["item"]["call_id"] for o in outputs] == [c.data["call_id"] for c in calls]
    assert all("no tool named" in o["item"]["output"] for o in outputs)
    assert [e.type for e in d.proto.state.errors if e.event_type.startswith("local.")] == [
        "tool_error"
    ] * len(calls)
    for _, sent in d.log:
        for s in sent:
            VALIDATOR.validate_python(s)
    if not calls and "input_audio_buffer.speech_started" not in {e.type for e, _ in d.log}:
        assert sent_after == []


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_the_protocol_state_is_the_recordings_state(path: Path) -> None:
    """What the protocol folded (server events, its own client and local events) is what a
    recording of the same events reduces to: errors and connection included."""
    d = _connected(tools={"get_weather": get_weather, "remember_name": remember_name})
    for ev in _server_events(path):
        d.feed(ev)
    rec = Recording.from_events(d.recorded)
    assert rec.state.items == d.proto.state.items
    assert rec.state.usage == d.proto.state.usage
    assert rec.state.errors == d.proto.state.errors
    assert rec.state.connection == d.proto.state.connection


# --- tool-call rounds -------------------------------------------------------------------------


@pytest.mark.parametrize("path", TOOL_ROUNDS, ids=_id)
def test_a_recorded_tool_round_is_answered_like_the_recorded_client(path: Path) -> None:
    rec = Recording.import_file(path)
    recorded_outputs = [
        e.data["item"]
        for e in rec.events
        if e.type == "conversation.item.create" and e.data["item"]["type"] == "function_call_output"
    ]
    config = {"type": "realtime", "tools": [get_weather.definition(), remember_name.definition()]}
    d = _connected(
        config=config, tools={"get_weather": get_weather, "remember_name": remember_name}
    )
    for ev in rec.events:
        if ev.source is Source.SERVER:
            d.feed(ev)
    calls = [e.data for e in rec.events if e.type == "response.function_call_arguments.done"]
    # Asked to run each recorded call once (three events name it), with the recorded arguments.
    assert [(r.call.call_id, r.call.name, r.call.arguments) for r in d.runs] == [
        (c["call_id"], c["name"], c["arguments"]) for c in calls
    ]
    assert d.runs[0].kwargs in ({"city": "London"}, {"name": "Marcelo"})
    sent = [(ev.type, s) for ev, ss in d.log for s in ss]
    # The configuration went first, on session.created.
    assert sent[0][0] == "session.created"
    assert sent[0][1]["type"] == "session.update"
    # The output, exactly as the recorded client sent it, then one response.create, and only
    # after the call's response is done.
    answers = [s for _, s in sent[1:]]
    assert [a["type"] for a in answers] == ["conversation.item.create", "response.create"]
    assert {k: answers[0]["item"][k] for k in ("type", "call_id", "output")} == recorded_outputs[0]
    assert [t for t, s in sent if s["type"] == "response.create"] == ["response.done"]
    call_done = next(i for i, (e, _) in enumerate(d.log) if e.type == "response.done")
    first_answer = next(i for i, (_, ss) in enumerate(d.log) if ss and i > 0)
    assert first_answer <= call_done
    finished = [e.data for e in d.recorded if e.type == "local.tool.finished"]
    assert [(f["name"], f["error"]) for f in finished] == [(c["name"], None) for c in calls]
    assert not d.proto.state.errors


def test_a_tool_that_is_not_done_holds_the_follow_up_response() -> None:
    d = _connected(tools={"get_weather": get_weather})
    d.run_tools = False
    for ev in _server_events(TOOL_ROUNDS[0]):
        d.feed(ev)
    # The configuration (it declares a tool), then nothing until the tool answers.
    assert [s["type"] for _, ss in d.log for s in ss] == ["session.update"]
    assert not d.proto.idle
    (run,) = d.runs
    d.proto.tool_failed(run.call, RuntimeError("the weather service is down"), 3.0)
    sent = [s for s, _ in d.proto.events_to_send()]
    assert [s["type"] for s in sent] == ["conversation.item.create", "response.create"]
    assert sent[0]["item"]["output"] == '{"error": "RuntimeError: the weather service is down"}'
    (finished,) = d.proto.events_to_record()
    assert finished["type"] == "local.tool.finished"
    assert finished["error"] == "RuntimeError: the weather service is down"


# --- interruptions ----------------------------------------------------------------------------


def _audio_turn() -> tuple[Driver, str, int]:
    """A driver after a recorded spoken answer: (driver, its item id, the end time in ns)."""
    d = _connected(tools={"get_weather": get_weather})
    events = _server_events(DEMO)
    for ev in events:
        d.feed(ev)
    item = next(i for i in d.proto.state.items if i.role == "assistant")
    return d, item.id, events[-1].t_ns


def test_interruption_with_a_reporting_player_truncates_once_at_the_played_ms() -> None:
    d, item_id, t = _audio_turn()
    received = d.proto.playback.received_ms(d.proto.state, item_id)
    assert received is not None and received > 1000
    local, server = Source.LOCAL, Source.SERVER
    assert d.feed(d.event(local, {"type": "local.playback.started", "item_id": item_id}, t)) == []
    speech = {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "u2"}
    assert d.feed(d.event(server, speech, t + 10**8)) == []  # the player decides, not the VAD
    played = {"type": "local.playback.played", "item_id": item_id, "played_ms": 412.9,
              "reason": "interrupted"}  # fmt: skip
    first = d.feed(d.event(local, played, t + 10**8 + 1))
    again = d.feed(d.event(local, played, t + 10**8 + 2))
    assert first == [
        {"type": "conversation.item.truncate", "event_id": first[0]["event_id"],
         "item_id": item_id, "content_index": 0, "audio_end_ms": 412}
    ]  # fmt: skip
    assert again == []
    assert d.proto.state.item(item_id).truncate_requested_ms == 412


def test_interruption_without_a_player_truncates_to_the_time_since_the_first_delta() -> None:
    d, item_id, _ = _audio_turn()
    first_audio = d.proto.state.item(item_id).first_audio_t_ns
    assert first_audio is not None
    speech = {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "u2"}
    sent = d.feed(d.event(Source.SERVER, speech, first_audio + 300_400_000))
    assert [(s["type"], s["audio_end_ms"]) for s in sent] == [("conversation.item.truncate", 300)]


def _with_player(d: Driver) -> Driver:
    d.feed(d.event(Source.LOCAL, {"type": "local.player.ready", "view": "v1"}, 0))
    return d


def test_without_a_player_no_answer_is_waited_for() -> None:
    d, _, t = _audio_turn()
    assert d.proto.heard_pending(t, 2 * 10**9) == []


def test_a_ready_player_is_waited_for_until_it_has_played_each_answer() -> None:
    d = _with_player(_connected(tools={"get_weather": get_weather}))
    events = _server_events(DEMO)
    for ev in events:
        d.feed(ev)
    spoken = [i.id for i in d.proto.state.items if i.role == "assistant" and i.audio_part()]
    assert spoken
    t = events[-1].t_ns
    # Audio arrived, playback not started yet (the page's first chunk is on its way): waited for.
    first = min(d.proto.state.item(i).first_audio_t_ns or 0 for i in spoken)
    assert d.proto.heard_pending(first + 10**8, 2 * 10**9) == spoken
    for item in spoken:
        d.feed(d.event(Source.LOCAL, {"type": "local.playback.started", "item_id": item}, t))
    # Playing: waited for however long it takes.
    assert d.proto.heard_pending(t + 60 * 10**9, 2 * 10**9) == spoken
    for item in spoken:
        played = {"type": "local.playback.played", "item_id": item, "played_ms": 1.0,
                  "reason": "ended"}  # fmt: skip
        d.feed(d.event(Source.LOCAL, played, t + 1))
    assert d.proto.heard_pending(t + 2, 2 * 10**9) == []


def test_an_answer_the_player_never_starts_stops_being_waited_for_after_the_grace() -> None:
    d = _with_player(_connected(tools={"get_weather": get_weather}))
    for ev in _server_events(DEMO):
        d.feed(ev)
    spoken = [i.id for i in d.proto.state.items if i.role == "assistant" and i.audio_part()]
    last = max(d.proto.state.item(i).first_audio_t_ns or 0 for i in spoken)
    assert d.proto.heard_pending(last + 10**9, 2 * 10**9) != []
    assert d.proto.heard_pending(last + 2 * 10**9, 2 * 10**9) == []


def test_auto_truncate_off_sends_nothing() -> None:
    d = _connected(auto_truncate=False)
    for ev in _server_events(DEMO):
        d.feed(ev)
    item = next(i for i in d.proto.state.items if i.role == "assistant")
    played = {"type": "local.playback.played", "item_id": item.id, "played_ms": 100,
              "reason": "interrupted"}  # fmt: skip
    assert d.feed(d.event(Source.LOCAL, played, 10**10)) == []


# --- requests are validated before they are queued --------------------------------------------


@pytest.mark.parametrize(
    ("event", "match"),
    [
        ({"type": "conversation.item.craete"}, "unknown client event type 'conversation.item.craete'"),
        ({"type": "input_audio_buffer.append"}, "missing required field 'audio'"),
        (
            {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0,
             "audio_end_ms": 1.5},
            "field 'audio_end_ms' must be int, got 1.5",
        ),
        ({"type": "response.create", "response": "fast"}, "field 'response' must be dict"),
        ({"type": "input_audio_buffer.commit", "event_id": "e" * 40}, "event_id must be a string"),
    ],
)  # fmt: skip
def test_a_bad_request_raises_and_nothing_is_queued(event: JSON, match: str) -> None:
    d = _connected()
    d.feed(_server_events(AUDIO_OUT)[0])  # session.created: ready
    assert d.proto.ready and d.proto.idle
    with pytest.raises(ProtocolError, match=match):
        d.proto.send(event)
    assert d.proto.events_to_send() == []
    assert d.proto.idle
    assert not d.proto.gate.busy


def test_requests_wait_for_the_setup_and_go_in_order() -> None:
    proto = ClientProtocol({"type": "realtime", "instructions": "Be brief."})
    first = proto.send(client.conversation_item_create(client.user_text_item("hi")))
    proto.request_response(client.response_create())
    second = proto.request_response(client.response_create())
    assert proto.events_to_send() == []  # not connected
    proto.connection_made()
    d = Driver(proto)
    d.settle(0)
    created = {"type": "session.created", "event_id": "e1", "session": {"id": "s"}}
    assert [s["type"] for s in d.feed(d.event(Source.SERVER, created, 1))] == ["session.update"]
    updated = {"type": "session.updated", "event_id": "e2", "session": {"id": "s"}}
    sent = d.feed(d.event(Source.SERVER, updated, 2))
    assert [s["type"] for s in sent] == ["conversation.item.create", "response.create"]
    assert sent[0] == first
    response = {"id": "r1", "status": "completed", "output": []}
    d.feed(d.event(Source.SERVER, {"type": "response.created", "response": response}, 3))
    assert d.feed(d.event(Source.SERVER, {"type": "response.done", "response": response}, 4)) == [
        second
    ]


def test_a_refused_setup_is_reported() -> None:
    proto = ClientProtocol({"type": "realtime", "voice": "nope"})
    proto.connection_made()
    d = Driver(proto)
    (update,) = d.feed(d.event(Source.SERVER, {"type": "session.created", "session": {}}, 1))
    err = {"type": "error", "error": {"message": "Invalid voice", "event_id": update["event_id"]}}
    d.feed(d.event(Source.SERVER, err, 2))
    assert proto.setup_error == "Invalid voice"
    assert not proto.ready


# --- the connection and tool failures are recorded events -------------------------------------


def test_connection_failures_and_drops_are_events_the_reducer_reports() -> None:
    proto = ClientProtocol(url="ws://example/v1/realtime", backend="example")
    d = Driver(proto)
    proto.connection_failed("example refused the connection: HTTP 401")
    d.settle(1)
    assert proto.state.connection == "error"
    assert [(e.type, e.message) for e in proto.state.errors] == [
        ("connection_failed", "example refused the connection: HTTP 401")
    ]
    proto.connection_made()
    d.settle(2)
    assert proto.state.connection == "connecting"
    d.feed(d.event(Source.SERVER, {"type": "session.created", "session": {}}, 3))
    assert proto.state.connection == "connected" and proto.ready
    message = proto.connection_lost(1006, "", initiated_by="network", clean=False)
    d.settle(4)
    assert message == "connection to example lost: code 1006"
    assert proto.state.connection == "error"
    assert proto.state.errors[-1].type == "connection_closed"
    assert proto.state.connection_closed == {
        "type": "local.connection.closed", "code": 1006, "reason": "", "initiated_by": "network",
        "clean": False, "message": message,
    }  # fmt: skip
    proto.session_closed()
    d.settle(5)
    assert proto.state.connection == "closed"
    rec = Recording.from_events(d.recorded)
    assert rec.state.errors == proto.state.errors
    assert [e.type for e in rec.events] == [
        "local.connection.failed",
        "local.connection.opened",
        "session.created",
        "local.connection.closed",
        "local.session.closed",
    ]


def test_a_tool_output_made_while_disconnected_waits_for_the_next_connection() -> None:
    d = _connected(tools={"get_weather": get_weather})
    d.run_tools = False
    for ev in _server_events(TOOL_ROUNDS[0]):
        d.feed(ev)
    (run,) = d.runs
    d.proto.connection_lost(1001, "going away", initiated_by="server", clean=True)
    d.settle(1)
    d.proto.tool_done(run.call, "foggy", 2.0)
    assert d.settle(2) == []
    d.proto.connection_made(seed=[{"id": "x1", **client.user_text_item("hi")}])
    d.settle(3)
    sent = d.feed(d.event(Source.SERVER, {"type": "session.created", "session": {}}, 4))
    # The configuration and the seed first; the output once the server has confirmed both.
    assert [s["type"] for s in sent] == ["session.update", "conversation.item.create"]
    assert d.feed(d.event(Source.SERVER, {"type": "session.updated", "session": {}}, 5)) == []
    added = {"type": "conversation.item.added", "item": {"id": "x1", "type": "message"}}
    sent = d.feed(d.event(Source.SERVER, added, 6))
    assert [(s["type"], s.get("item", {}).get("output")) for s in sent] == [
        ("conversation.item.create", "foggy"),
        ("response.create", None),
    ]


# --- the protocol is pure ---------------------------------------------------------------------

_IO_MODULES = {"asyncio", "threading", "socket", "selectors", "concurrent", "websockets",
               "time", "subprocess", "multiprocessing"}  # fmt: skip


def _imports(path: Path) -> Iterable[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield ("." * node.level) + (node.module or "")


@pytest.mark.parametrize(
    "name", ["protocol.py", "_policies.py", "_config.py", "_reconnect.py", "_calls.py"]
)
def test_the_client_protocol_imports_only_the_core(name: str) -> None:
    for module in _imports(REPO / "realtime_nb" / "client" / name):
        if module.startswith("."):
            allowed = ("..core", ".protocol", "._policies", "._config", "._reconnect", "._calls")
            assert module.startswith(allowed), module
        else:
            assert module.split(".")[0] not in _IO_MODULES, module
            assert not module.startswith("realtime_nb"), module
