"""Every real recorded session in tests/fixtures/sessions imports and reduces correctly."""

from __future__ import annotations

import json

import pytest
import yaml

from realtime_nb.storage.recording import Recording
from tests.conftest import SESSIONS, cassettes


def _load(rel: str) -> Recording:
    return Recording.import_file(SESSIONS / rel)


def _texts(rec: Recording) -> list[tuple[str, str]]:
    return [(i.role or i.type, i.text) for i in rec.state.items]


@pytest.mark.parametrize("path", cassettes(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_cassette_imports_and_reproduces_every_event(path, tmp_path) -> None:  # type: ignore[no-untyped-def]  # pytest fixtures and parameters
    doc = yaml.safe_load(path.read_text())
    wire = [i["data"] for i in doc["interactions"] if "data" in i]
    rec = Recording.import_cassette(path, save_to=tmp_path / "r.arrow")
    back = Recording.open(tmp_path / "r.arrow")
    events = [e for e in back.events if e.source.value != "local"]
    assert [e.wire() for e in events] == wire  # exact, unknown fields and odd audio included
    assert [e.source.value for e in events] == [
        "client" if i["direction"] == "sent" else "server"
        for i in doc["interactions"]
        if "data" in i
    ]
    assert rec.state.event_count == len(rec)


def test_openai_tool_call_round() -> None:
    rec = _load("test_openai_ws/test_tool_call_round.yaml")
    st = rec.state
    call = next(i for i in st.items if i.type == "function_call")
    assert call.name == "get_weather"
    assert json.loads(call.arguments or "") == {"city": "London"}
    assert call.call_id == "call_uMNE0Myi2tDTPu0w"
    out = next(i for i in st.items if i.type == "function_call_output")
    assert out.output == "It is foggy and 12 degrees in London."
    assert _texts(rec)[0] == ("user", "What is the weather in London?")
    assert _texts(rec)[-1] == ("assistant", "It is foggy and 12 degrees in London.")
    assert [i.type for i in st.items] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert st.usage.total_tokens == 85 + 116
    assert len(st.responses) == 2
    assert all(r.status == "completed" for r in st.responses.values())
    assert st.session["tools"][0]["name"] == "get_weather"


def test_openai_audio_turn_with_server_vad() -> None:
    rec = _load("test_openai_ws/test_audio_in_server_vad_turn.yaml")
    st = rec.state
    assert _texts(rec) == [
        ("user", "Hello, my name is Marcelo."),
        ("assistant", "Hello, Marcelo! Great to meet you. How can I help you today?"),
    ]
    assert st.usage.total_tokens == 205
    assert len(st.turns) == 1
    assert st.turns[0].kind == "vad"
    assert st.turns[0].speech_stopped_t_ns is not None
    assert st.turns[0].response_id
    # The recorder of these files cut every audio payload to 33 bytes (not whole samples).
    appends = [e for e in rec.events if e.type == "input_audio_buffer.append"]
    assert len(appends) == 55
    assert {len(e.audio or b"") for e in appends} == {33}
    deltas = [e for e in rec.events if e.type == "response.output_audio.delta"]
    assert deltas
    assert {len(e.audio or b"") for e in deltas} == {33}
    assert len(st.input_audio) == 55 * 33
    assert st.item(st.items[1].id).audio_part().audio_bytes == 33 * len(deltas)  # type: ignore[union-attr]  # the item has an audio part: asserted by the value


def test_obfuscation_field_is_accepted_kept_and_counted() -> None:
    rec = _load("test_openai_ws_sideband/test_webrtc_sideband_audio_turn.yaml")
    deltas = [e for e in rec.events if e.type == "response.output_audio_transcript.delta"]
    assert deltas[0].data["obfuscation"] == "Ms39ljI9LTa"
    assert rec.state.unknown_fields["response.output_audio_transcript.delta.obfuscation"] == len(
        deltas
    )
    assert "obfuscation" in rec.table.column("payload")[deltas[0].seq].as_py()


def test_three_vad_turns_each_get_their_answer() -> None:
    rec = _load("test_openai_ws/test_input_audio_retention_segments_three_server_vad_turns.yaml")
    st = rec.state
    assert len(st.turns) == 3
    assert [t.item_id for t in st.turns] == [i.id for i in st.items if i.role == "user"]
    assert all(t.response_id in st.responses for t in st.turns)
    assert [i.text for i in st.items if i.role == "assistant"] == [
        "Hi Marcelo! Nice to meet you.",
        "Hi Marcelo! Great to meet you.",
        "Hey Marcelo, nice meeting you.",
    ]
    assert st.usage.total_tokens == 604


def test_message_history_seeding_keeps_conversation_order() -> None:
    for provider in ("test_openai_ws", "test_azure_ws"):
        rec = _load(f"{provider}/test_message_history_seeding.yaml")
        texts = _texts(rec)
        assert texts[0] == ("user", "My name is Alice and my favorite color is teal.")
        assert texts[1] == ("assistant", "Nice to meet you, Alice!")
        assert texts[2] == ("user", "What is my name and favorite color?")
        assert "Alice" in texts[3][1]
        assert "teal" in texts[3][1]


def test_azure_spoken_turn_drives_a_tool() -> None:
    rec = _load(
        "test_azure_ws/test_spoken_turn_transcribed_drives_a_tool_and_answers_in_audio.yaml"
    )
    st = rec.state
    call = next(i for i in st.items if i.type == "function_call")
    assert call.name == "remember_name"
    assert json.loads(call.arguments or "") == {"name": "Marcelo"}
    assert st.items[0].transcript == "Hello, my name is Marcelo."
    assert (
        st.items[-1].transcript
        == "Hello Marcelo, it's great to meet you! How can I help you today?"
    )
    assert st.usage.total_tokens == 338
    # Azure sends a `content` field on content-part events that the schema does not define.
    assert st.unknown_fields["response.content_part.added.content"] == 1


def test_azure_transcription_failure_is_an_error() -> None:
    rec = _load("test_azure_ws/test_audio_in_server_vad_transcription_requires_deployment.yaml")
    st = rec.state
    user = st.items[0]
    assert user.transcription_status == "failed"
    assert user.transcription_error
    assert user.transcription_error["code"] == "DeploymentNotFound"
    assert len(st.errors) == 1
    assert st.errors[0].code == "DeploymentNotFound"
    assert st.errors[0].item_id == user.id


def test_gateway_and_text_turns() -> None:
    assert _texts(_load("test_gateway_ws/test_gateway_openai_text_in_audio_out.yaml")) == [
        ("user", "Say a short greeting."),
        ("assistant", "Hi there! Great to talk with you."),
    ]
    rec = _load("test_openai_ws/test_text_in_audio_out_turn.yaml")
    assert _texts(rec)[1] == ("assistant", "Hi there!")
    assert rec.state.turns[0].kind == "text"
    assert rec.metrics().turns[0].latency_ms is not None


def test_webrtc_sdp_exchange_is_kept_as_a_local_event() -> None:
    rec = _load("test_openai_ws/test_webrtc_sideband_text_turn.yaml")
    (ev,) = rec.events
    assert ev.type == "local.http"
    assert ev.data["status"] == 201
    assert ev.data["uri"] == "https://api.openai.com/v1/realtime/calls"
