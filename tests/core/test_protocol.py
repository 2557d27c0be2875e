"""Client-event builders and validation, checked against the openai package's pydantic models."""

from __future__ import annotations

import pytest
from openai.types.realtime import RealtimeClientEvent
from pydantic import TypeAdapter

from realtime_nb.core.protocol import (
    CLIENT_EVENT_TYPES,
    SERVER_EVENT_TYPES,
    ProtocolError,
    Source,
    client,
    new_event_id,
    validate_client_event,
)

CLIENT = TypeAdapter(RealtimeClientEvent)


def _types(adapter_union: object) -> set[str]:
    import typing

    union = (
        typing.get_args(adapter_union)[0]
        if typing.get_origin(adapter_union) is typing.Annotated
        else adapter_union
    )
    return {typing.get_args(m.model_fields["type"].annotation)[0] for m in typing.get_args(union)}


def test_catalogue_matches_the_openai_package() -> None:
    from openai.types.realtime import RealtimeServerEvent

    assert _types(RealtimeClientEvent) == CLIENT_EVENT_TYPES and len(CLIENT_EVENT_TYPES) == 11
    assert _types(RealtimeServerEvent) == SERVER_EVENT_TYPES and len(SERVER_EVENT_TYPES) == 46


BUILT = [
    client.session_update({"instructions": "Be brief.", "audio": {"output": {"voice": "marin"}}}),
    client.input_audio_buffer_append("AAAA"),
    client.input_audio_buffer_commit(),
    client.input_audio_buffer_clear(),
    client.output_audio_buffer_clear(),
    client.conversation_item_create(client.user_text_item("hi")),
    client.conversation_item_create(client.user_audio_item("AAAA"), previous_item_id="item_1"),
    client.conversation_item_create(client.user_image_item("data:image/png;base64,AAAA", "what?")),
    client.conversation_item_create(client.text_message_item("assistant", "earlier answer")),
    client.conversation_item_create(client.function_call_output_item("call_1", '{"ok": true}')),
    client.conversation_item_retrieve("item_1"),
    client.conversation_item_delete("item_1"),
    client.conversation_item_truncate("item_1", 1240),
    client.response_create(
        {"instructions": "Answer in French.", "conversation": "none", "output_modalities": ["text"]}
    ),
    client.response_create(),
    client.response_cancel(),
]


@pytest.mark.parametrize("event", BUILT, ids=lambda e: e["type"])
def test_every_builder_validates_against_the_published_models(event: dict) -> None:  # type: ignore[type-arg]  # any JSON event
    CLIENT.validate_python(event)
    validate_client_event(event)
    assert len(event["event_id"]) <= 32


def test_validation_errors_name_the_problem() -> None:
    with pytest.raises(
        ProtocolError,
        match=r"unknown client event type 'response\.audio\.delta'; accepted: conversation",
    ):
        validate_client_event({"type": "response.audio.delta"})
    with pytest.raises(ProtocolError, match="missing required field 'item'"):
        validate_client_event({"type": "conversation.item.create"})
    with pytest.raises(ProtocolError, match=r"'audio_end_ms' must be int, got 12.5"):
        validate_client_event(
            {
                "type": "conversation.item.truncate",
                "item_id": "i",
                "content_index": 0,
                "audio_end_ms": 12.5,
            }
        )
    with pytest.raises(ProtocolError, match="at most 32 characters"):
        validate_client_event({"type": "response.cancel", "event_id": "x" * 40})
    with pytest.raises(ProtocolError, match="non-negative integer"):
        client.conversation_item_truncate("i", 12.5)  # type: ignore[arg-type]  # a float on purpose: the error is the test
    with pytest.raises(ProtocolError, match="role must be"):
        client.text_message_item("tool", "x")


def test_event_ids_are_unique_and_sources_parse() -> None:
    assert len({new_event_id() for _ in range(10000)}) == 10000
    assert Source.parse("sent") is Source.CLIENT and Source.parse("received") is Source.SERVER
