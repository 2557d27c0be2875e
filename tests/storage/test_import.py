"""Importers: every real cassette (every interaction kind), bare and directed JSON lines, our own
export, and errors that name the file, the line or interaction, and what is accepted."""

from __future__ import annotations

import datetime
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from realtime_nb.core.protocol import Source, source_of_type
from realtime_nb.storage.recording import Recording, RecordingFormatError
from tests.conftest import SESSIONS, cassettes

DROP = SESSIONS / "test_xai_ws" / "test_session_resumption_after_drop.yaml"
TOOL_CALL = SESSIONS / "test_openai_ws" / "test_tool_call_round.yaml"
MESSAGE_CASSETTES = [
    p
    for p in cassettes()
    if any(i.get("kind") == "message" for i in yaml.safe_load(p.read_text())["interactions"])
]


def _doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def _messages(path: Path) -> list[dict[str, Any]]:
    return [i for i in _doc(path)["interactions"] if i.get("kind") == "message"]


def _items(rec: Recording) -> list[tuple[Any, ...]]:
    """What a reader of the conversation sees: each item, its text and its parts' transcripts."""
    return [
        (
            i.id,
            i.type,
            i.role,
            i.status,
            i.text,
            i.name,
            i.arguments,
            i.output,
            *((p.type, p.text, p.transcript) for p in i.content),
        )
        for i in rec.state.items
    ]


def _write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


# --- cassettes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", cassettes(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_cassette_imports_every_interaction_kind(path: Path, tmp_path: Path) -> None:
    interactions = _doc(path)["interactions"]
    rec = Recording.import_file(path, save_to=tmp_path / "r.arrow")
    back = Recording.open(tmp_path / "r.arrow")
    assert [e.wire() for e in back.events] == [e.wire() for e in rec.events]
    # One event per interaction, plus one local.connection.opened per connection after a close.
    reopened = sum(
        1
        for a, b in itertools.pairwise(interactions)
        if a.get("kind") == "close" and b.get("kind") == "message"
    )
    assert len(rec) == len(interactions) + reopened
    expected_kinds = []
    for inter in interactions:
        kind = inter.get("kind") or ("http" if "request" in inter else "message")
        expected_kinds.append(
            {
                "message": None,
                "close": "local.connection.closed",
                "http": "local.http",
            }[kind]
        )
    got = [
        None if e.source is not Source.LOCAL else e.type
        for e in rec.events
        if e.type != "local.connection.opened"
    ]
    assert got == expected_kinds
    messages = [i for i in interactions if i.get("kind") == "message"]
    wire = [e for e in rec.events if e.source is not Source.LOCAL]
    assert [e.wire() for e in wire] == [i["data"] for i in messages]
    assert [e.source.value for e in wire] == [
        "client" if i["direction"] == "sent" else "server" for i in messages
    ]
    assert rec.state.event_count == len(rec)


def test_a_dropped_connection_becomes_a_local_close_then_a_new_connection() -> None:
    rec = Recording.import_file(DROP)
    types = [e.type for e in rec.events]
    closed = types.index("local.connection.closed")
    close = rec.events[closed]
    assert close.source is Source.LOCAL
    assert close.data == {
        "type": "local.connection.closed",
        "code": 1011,
        "reason": "test reconnect",
        "ok": False,
    }
    # The live session records a drop the same way, and the reducer keeps it.
    assert rec.state.connection_closed is not None
    assert rec.state.connection_closed["code"] == 1011
    # The second connection is marked, with the fields the live session logs on connecting.
    opened = rec.events[closed + 1]
    assert opened.type == "local.connection.opened"
    assert opened.data == {"type": "local.connection.opened", "url": None, "backend": None}
    assert types[closed + 2] == "session.created"
    assert types.count("session.created") == 2
    assert types.count("local.connection.opened") == 1  # the first connection is not marked
    # Both connections' events are there: the code word of the first, the answer of the second.
    texts = [i.text for i in rec.state.items]
    assert texts[0].startswith("Remember exactly: the code word is cobalt")
    assert texts[-1] == "Cobalt. The code word you asked me to remember is cobalt."
    assert rec.meta["model"] == "grok-voice-latest"


def test_unknown_interaction_kinds_are_kept_as_local_events(tmp_path: Path) -> None:
    doc = _doc(SESSIONS / "test_openai_ws" / "test_text_in_audio_out_turn.yaml")
    inter = doc["interactions"]
    inter.insert(1, {"kind": "ping", "interval_s": 5, "type": "keepalive", "note": None})
    inter.insert(3, {"kind": "weird kind!", "payload": {"a": [1, 2]}})
    inter.insert(5, {"something": "without a kind"})
    inter.insert(7, {"kind": "http", "request": {"method": "GET", "uri": "https://x/y?api-key=1"}})
    inter.append({"kind": "close", "code": 1000, "reason": "", "ok": True})
    path = tmp_path / "kinds.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    rec = Recording.import_file(path)
    local = [(e.type, e.data) for e in rec.events if e.source is Source.LOCAL]
    assert local == [
        (
            "local.cassette.ping",
            {
                "type": "local.cassette.ping",
                "interval_s": 5,
                "interaction_type": "keepalive",
                "note": None,
            },
        ),
        (
            "local.cassette.weird_kind",
            {"type": "local.cassette.weird_kind", "payload": {"a": [1, 2]}},
        ),
        (
            "local.cassette.unknown",
            {"type": "local.cassette.unknown", "something": "without a kind"},
        ),
        (
            "local.http",
            {
                "type": "local.http",
                "method": "GET",
                "uri": "https://x/y?api-key=[REDACTED]",
                "status": None,
                "request_body": None,
                "response_body": None,
            },
        ),
        # A close at the very end: no connection follows, so nothing is marked opened.
        (
            "local.connection.closed",
            {"type": "local.connection.closed", "code": 1000, "reason": "", "ok": True},
        ),
    ]
    assert len(rec) == len(inter)
    assert [e.wire() for e in rec.events if e.source is not Source.LOCAL] == [
        i["data"] for i in inter if i.get("kind") == "message"
    ]


def test_cassette_dates_stay_text_and_a_message_without_direction_is_inferred(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "version: 1\ninteractions:\n"
        "- kind: note\n  when: 2025-01-02\n"
        "- kind: message\n  data: {type: response.create}\n"
        "- kind: message\n  data: {type: response.created, response: {id: r1}}\n",
        encoding="utf-8",
    )
    rec = Recording.import_cassette(path)
    assert rec.events[0].data == {"type": "local.cassette.note", "when": "2025-01-02"}
    assert [e.source for e in rec.events[1:]] == [Source.CLIENT, Source.SERVER]


# --- bare and directed JSON lines ------------------------------------------------------------


def test_source_of_type_knows_both_sides_and_beta_names() -> None:
    assert source_of_type("response.create") is Source.CLIENT
    assert source_of_type("input_audio_buffer.append") is Source.CLIENT
    assert source_of_type("response.done") is Source.SERVER
    assert source_of_type("response.audio.delta") is Source.SERVER  # beta name
    assert source_of_type("conversation.item.created") is Source.SERVER  # beta name
    assert source_of_type("local.playback.played") is Source.LOCAL
    assert source_of_type("ping") is None  # xAI's; a vendor extension
    assert source_of_type("transcription_session.update") is None


@pytest.mark.parametrize("path", MESSAGE_CASSETTES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_bare_server_events_reduce_to_what_the_cassette_does(path: Path, tmp_path: Path) -> None:
    """A log of the received events only, one per line, no direction (a browser console's)."""
    received = [i["data"] for i in _messages(path) if i["direction"] == "received"]
    log = _write_jsonl(tmp_path / "server.jsonl", received)
    rec = Recording.import_file(log)
    assert {e.source for e in rec.events} == {Source.SERVER}
    assert [e.wire() for e in rec.events] == received  # unknown types (xAI's ping) kept too
    cassette = Recording.import_file(path)
    assert _items(rec) == _items(cassette)
    assert rec.state.usage.total_tokens == cassette.state.usage.total_tokens
    assert rec.meta["model"] == cassette.meta["model"]


@pytest.mark.parametrize("path", MESSAGE_CASSETTES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_bare_events_of_both_sides_get_the_recorded_directions(path: Path, tmp_path: Path) -> None:
    messages = _messages(path)
    log = _write_jsonl(tmp_path / "both.jsonl", [i["data"] for i in messages])
    rec = Recording.import_jsonl(log)
    assert [e.source.value for e in rec.events] == [
        "client" if i["direction"] == "sent" else "server" for i in messages
    ]


def test_unknown_bare_types_default_to_server_and_are_kept(tmp_path: Path) -> None:
    log = _write_jsonl(
        tmp_path / "x.jsonl",
        [
            {"type": "ping", "timestamp": 1785214094571},  # its own field, not a log time
            {"type": "response.audio.delta", "item_id": "i1", "delta": "AAAA"},
            {"type": "local.note", "text": "hello"},
            {"type": "session.update", "session": {"instructions": "x"}},
        ],
    )
    rec = Recording.import_file(log)
    assert [(e.source, e.type) for e in rec.events] == [
        (Source.SERVER, "ping"),
        (Source.SERVER, "response.audio.delta"),
        (Source.LOCAL, "local.note"),
        (Source.CLIENT, "session.update"),
    ]
    assert rec.events[0].data == {"type": "ping", "timestamp": 1785214094571}
    assert rec.events[1].audio == b"\0\0\0"
    assert {e.t_ns for e in rec.events} == {0}
    assert rec.state.unknown_types["ping"] == 1


def test_jsonl_with_a_direction_in_every_common_shape(tmp_path: Path) -> None:
    t0 = 1_785_214_000.25  # seconds since the epoch: made relative to the first
    lines: list[Any] = [
        {"direction": "sent", "timestamp": t0, "event": {"type": "response.create"}},
        {
            "source": "server",
            "t": t0 + 0.5,
            "data": {"type": "response.created", "response": {"id": "r1"}},
        },
        {
            "dir": "in",
            "ts": (t0 + 0.75) * 1000,
            "message": json.dumps({"type": "vendor.x", "a": 1}),
        },
        {"direction": "received", "type": "response.done", "response": {"id": "r1"}},
        ["sent", {"type": "response.cancel"}],
        {
            "direction": "local",
            "time": "2026-07-28T12:00:00Z",
            "event": {"type": "local.note", "text": "n"},
        },
        [{"type": "conversation.item.create", "item": {"type": "message"}}, {"type": "error"}],
    ]
    rec = Recording.import_file(_write_jsonl(tmp_path / "d.jsonl", lines))
    assert [(e.source, e.type) for e in rec.events] == [
        (Source.CLIENT, "response.create"),
        (Source.SERVER, "response.created"),
        (Source.SERVER, "vendor.x"),
        (Source.SERVER, "response.done"),
        (Source.CLIENT, "response.cancel"),
        (Source.LOCAL, "local.note"),
        (Source.CLIENT, "conversation.item.create"),
        (Source.SERVER, "error"),
    ]
    assert rec.events[2].data == {"type": "vendor.x", "a": 1}
    assert rec.events[3].data == {"type": "response.done", "response": {"id": "r1"}}
    times = [e.t_ns for e in rec.events[:4]]
    assert times == pytest.approx([0, 500_000_000, 750_000_000, 750_000_000], abs=1e3)
    # ISO 8601 text is a time since the epoch too: relative to the first time as well.
    iso_s = datetime.datetime(2026, 7, 28, 12, tzinfo=datetime.timezone.utc).timestamp()
    assert abs(rec.events[5].t_ns - (iso_s - t0) * 1e9) < 1e3


def test_a_pretty_printed_json_array_is_read(tmp_path: Path) -> None:
    received = [i["data"] for i in _messages(TOOL_CALL) if i["direction"] == "received"]
    path = tmp_path / "console.json"
    path.write_text(json.dumps(received, indent=2), encoding="utf-8")
    rec = Recording.import_file(path)
    assert [e.wire() for e in rec.events] == received
    assert _items(rec) == _items(Recording.import_file(TOOL_CALL))


def test_our_export_round_trips(tmp_path: Path) -> None:
    rec = Recording.import_file(DROP, save_to=tmp_path / "drop.arrow")
    rec.export_jsonl(tmp_path / "drop.jsonl")
    back = Recording.import_file(tmp_path / "drop.jsonl", save_to=tmp_path / "back.arrow")
    assert [(e.source, e.t_ns, e.wire()) for e in back.events] == [
        (e.source, e.t_ns, e.wire()) for e in rec.events
    ]
    assert back.meta["model"] == "grok-voice-latest"
    assert back.meta["cassette_version"] == 1
    assert _items(back) == _items(rec)
    again = Recording.import_file(tmp_path / "back.arrow")  # a recording opens as it is
    assert [e.wire() for e in again.events] == [e.wire() for e in rec.events]


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", r"bad\.jsonl:3: not JSON \(.*\); accepted: one JSON object per line"),
        ("42", r"bad\.jsonl:3: the line has an unknown shape \(int\); accepted: one JSON object"),
        (
            '{"direction": "sideways", "event": {"type": "a"}}',
            r"bad\.jsonl:3: the line: unknown event source 'sideways'; accepted: 'client'",
        ),
        (
            '{"level": "info", "msg": "hi"}',
            r"bad\.jsonl:3: the line has neither a string 'type' nor an event under "
            r"'event'/'data'/'message' \(its keys: level, msg\); accepted: one JSON object",
        ),
        (
            '[{"type": "error"}, 7]',
            r"bad\.jsonl:3: element 1 of the line has an unknown shape \(int\)",
        ),
    ],
)
def test_bad_lines_name_the_file_the_line_and_what_is_accepted(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"type": "session.created"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        Recording.import_file(path, save_to=tmp_path / "out.arrow")
    assert not (tmp_path / "out.arrow").exists()  # no half import left behind


def test_bad_cassettes_name_the_interaction_and_what_is_accepted(tmp_path: Path) -> None:
    def cassette(*interactions: Any) -> Path:
        p = tmp_path / "c.yaml"
        p.write_text(yaml.safe_dump({"version": 1, "interactions": list(interactions)}))
        return p

    ok = {"kind": "message", "direction": "received", "data": {"type": "session.created"}}
    with pytest.raises(
        ValueError,
        match=r"c\.yaml: interaction 1 is a str, not a mapping; accepted: a mapping per interaction",
    ):
        Recording.import_file(cassette(ok, "oops"))
    with pytest.raises(
        ValueError,
        match=r"c\.yaml: interaction 1 \(kind message\): unknown event source 'up'; accepted: 'client'",
    ):
        Recording.import_file(cassette(ok, {**ok, "direction": "up"}))
    with pytest.raises(
        ValueError,
        match=r"c\.yaml: interaction 0 \(kind message\) has no event mapping under 'data' \(got a int\)",
    ):
        Recording.import_file(cassette({"kind": "message", "direction": "sent", "data": 3}))
    p = tmp_path / "notes.yaml"
    p.write_text("title: my notes\nitems: [1, 2]\n")
    with pytest.raises(
        RecordingFormatError,
        match=r"notes\.yaml: not a cassette \(expected a mapping with an 'interactions' list, got a mapping with keys title, items\); accepted: a realtime_nb recording",
    ):
        Recording.import_file(p)
    p.write_text("interactions: [unclosed\n")
    with pytest.raises(
        RecordingFormatError, match=r"notes\.yaml: not YAML \(.* at line 2\); accepted"
    ):
        Recording.import_file(p)


def test_files_of_no_known_format_are_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"  \n")
    with pytest.raises(
        RecordingFormatError,
        match=r"empty\.log is empty; accepted: a realtime_nb recording \(\.arrow",
    ):
        Recording.import_file(empty)
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(
        RecordingFormatError, match=r"blob\.bin is not text .*; accepted: a realtime_nb recording"
    ):
        Recording.import_file(binary)
    with pytest.raises(RecordingFormatError, match="is a folder; accepted"):
        Recording.import_file(tmp_path)
    with pytest.raises(FileNotFoundError, match="no recording, JSON-lines log or cassette at"):
        Recording.import_file(tmp_path / "missing.jsonl")


def test_from_events_infers_bare_events_and_names_bad_elements() -> None:
    rec = Recording.from_events([{"type": "response.create"}, {"type": "response.done"}])
    assert [e.source for e in rec.events] == [Source.CLIENT, Source.SERVER]
    rec = Recording.from_events([{"type": "response.done"}], source="local")
    assert rec.events[0].source is Source.LOCAL
    with pytest.raises(
        ValueError, match=r"event 1 has an unknown shape \(str\); accepted: an Event"
    ):
        Recording.from_events([{"type": "a"}, "b"])
