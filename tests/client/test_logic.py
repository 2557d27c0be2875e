"""The sans-I/O parts of the client (``_config``, ``_policies``, ``_media``): configuration,
response queueing, truncation, seeding, endpoints and pricing, tested with plain lists of events."""

from __future__ import annotations

import glob
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from openai.types.realtime import RealtimeClientEvent, RealtimeSessionCreateRequest
from pydantic import TypeAdapter

from realtime_nb.client._calls import build_call_request, call_session, calls_url
from realtime_nb.client._config import build_response, build_session_config
from realtime_nb.client._media import image_data_url, prepare_audio
from realtime_nb.client._policies import PlaybackModel, ResponseGate, seed_items
from realtime_nb.client.session import UNSET
from realtime_nb.core._endpoints import EndpointError, resolve_endpoint
from realtime_nb.core.audio import AudioFormat
from realtime_nb.core.events import Event
from realtime_nb.core.pricing import PRICES, ModelPrice, cost_of_usage, price_for, session_cost
from realtime_nb.core.protocol import Source, client
from realtime_nb.core.reducer import Reducer
from realtime_nb.core.tools import UndescribedToolWarning, tool

from .session_constants import FIXTURES

VALIDATOR: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
SESSION_REQUEST: TypeAdapter[Any] = TypeAdapter(RealtimeSessionCreateRequest)


# --- replaying the recorded client side through our builders -----------------------------------


@tool
def get_weather(city: str) -> str:
    """Look up the weather for a city."""
    return f"It is foggy and 12 degrees in {city}."


def _rebuild(sent: dict[str, Any]) -> dict[str, Any]:
    """Build the same client event with realtime_nb's builders, from its meaning only."""
    t = sent["type"]
    if t == "session.update":
        s = sent["session"]
        a_in, a_out = s["audio"]["input"], s["audio"]["output"]
        kwargs: dict[str, Any] = {
            "instructions": s["instructions"],
            "output_modalities": s["output_modalities"][0],  # the str shortcut
            "input_format": AudioFormat.from_config(a_in["format"]),
            "output_format": AudioFormat.from_config(a_out["format"]),
            "turn_detection": a_in["turn_detection"],
            "transcription": a_in["transcription"]["model"],
        }
        if "tools" in s:
            names = [d["name"] for d in s["tools"]]
            assert names == ["get_weather"]
            kwargs["tools"] = [get_weather]  # a Python function: its schema must match theirs
        cfg, _ = build_session_config(**kwargs)
        return client.session_update(cfg)
    if t == "input_audio_buffer.append":
        return client.input_audio_buffer_append(sent["audio"])
    if t == "conversation.item.create":
        item = sent["item"]
        if item["type"] == "function_call_output":
            return client.conversation_item_create(
                client.function_call_output_item(item["call_id"], item["output"])
            )
        role, text = item["role"], item["content"][0]["text"]
        built = (
            client.user_text_item(text) if role == "user" else client.text_message_item(role, text)
        )
        return client.conversation_item_create(built)
    if t == "response.create":
        return client.response_create()
    raise AssertionError(f"no builder for {t}")


def _check_call_request(request: dict[str, Any]) -> None:
    """Our call request, built from the recorded request's meaning, is the recorded body byte for
    byte (boundary aside), and its session part is a valid ``RealtimeSessionCreateRequest``."""
    assert request["method"] == "POST"
    assert calls_url("wss://api.openai.com/v1/realtime?model=gpt-realtime") == request["uri"]
    (ctype,) = request["headers"]["content-type"]
    boundary = ctype.split("boundary=", 1)[1]
    body: str = request["body"]
    fields = {}
    for part in body.split(f"--{boundary}")[1:-1]:
        head, _, value = part.partition("\r\n\r\n")
        name = head.split('name="', 1)[1].split('"', 1)[0]
        fields[name] = value.removesuffix("\r\n")
    assert set(fields) == {"sdp", "session"}
    session = json.loads(fields["session"])
    config = _rebuild({"type": "session.update", "session": session})["session"]
    ours, our_type = build_call_request(
        fields["sdp"], call_session(session["model"], config), boundary=boundary
    )
    assert our_type == ctype
    assert ours.decode("utf-8") == body
    SESSION_REQUEST.validate_python(session)


def _shape(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in sorted(x.items())}
    if isinstance(x, list):
        return [_shape(v) for v in x]
    return type(x).__name__


CASSETTES = sorted(glob.glob(str(FIXTURES / "sessions" / "test_openai_ws*" / "*.yaml")))


def test_cassettes_found() -> None:
    assert len(CASSETTES) >= 6


@pytest.mark.parametrize("path", CASSETTES, ids=lambda p: "/".join(Path(p).parts[-2:]))
def test_builders_reproduce_recorded_client_events(path: str) -> None:
    interactions = yaml.safe_load(Path(path).read_text())["interactions"]
    sent = [i["data"] for i in interactions if i.get("direction") == "sent"]
    if not sent:  # a WebRTC call's setup: the calls endpoint's multipart request
        (call,) = interactions
        _check_call_request(call["request"])
        return
    for recorded in sent:
        ours = _rebuild(recorded)
        assert isinstance(ours.pop("event_id"), str)  # ours add an id; the cassettes' were cut
        assert ours["type"] == recorded["type"]
        assert _shape(ours) == _shape(recorded)
        assert ours == recorded  # same values too: nothing added, nothing lost
        VALIDATOR.validate_python(ours)


# --- configuration -----------------------------------------------------------------------------


def test_session_config_only_includes_given_fields() -> None:
    cfg, tools = build_session_config(
        instructions="hi",
        voice="marin",
        turn_detection=None,
        transcription=True,
        tools=[get_weather],
        speed=1.1,
    )
    assert cfg == {
        "type": "realtime",
        "instructions": "hi",
        "audio": {
            "input": {"turn_detection": None, "transcription": {"model": "gpt-4o-mini-transcribe"}},
            "output": {"voice": "marin", "speed": 1.1},
        },
        "tools": [get_weather.definition()],
    }
    assert tools == {"get_weather": get_weather}
    assert build_session_config(instructions=UNSET)[0] == {"type": "realtime"}
    VALIDATOR.validate_python(client.session_update(cfg))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"turn_detection": "vad"}, ValueError, "'server_vad', 'semantic_vad'"),
        ({"output_modalities": "video"}, ValueError, "'audio' or 'text'"),
        ({"input_format": "audio/mp3"}, ValueError, "'audio/pcm', 'audio/pcmu'"),
        ({"temperature": 0.3}, TypeError, r"unknown session field\(s\) \['temperature'\]"),
        ({"instructions": 3}, TypeError, "instructions must be a str"),
        ({"transcription": 3}, ValueError, "transcription=3 is not accepted"),
    ],
)
def test_bad_session_fields(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build_session_config(**kwargs)


def test_response_overrides() -> None:
    resp, tools = build_response(
        instructions="be brief",
        voice="cedar",
        tools=[get_weather],
        output_modalities="text",
        conversation="none",
    )
    assert resp["audio"] == {"output": {"voice": "cedar"}}
    assert resp["output_modalities"] == ["text"]
    assert tools == {"get_weather": get_weather}
    VALIDATOR.validate_python(client.response_create(resp))
    with pytest.raises(TypeError, match=r"unknown response field\(s\) \['temprature'\]"):
        build_response(temprature=1)


def test_a_tool_without_a_docstring_warns_once() -> None:
    def lookup(city: str) -> str:
        return city

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # count every warning: "once" is realtime_nb's doing
        cfg, tools = build_session_config(tools=[lookup])
        build_session_config(tools=[lookup])  # a plain function is made a tool again each time
        tool(lookup)
    assert [str(w.message) for w in caught] == [
        "tool 'lookup' (function test_a_tool_without_a_docstring_warns_once.<locals>.lookup) has "
        "no docstring: the model gets no description of what it does or when to call it; add a "
        "docstring or pass @tool(description=...)"
    ]
    assert isinstance(caught[0].message, UndescribedToolWarning)
    assert caught[0].filename == __file__  # it points at the caller's line, not realtime_nb
    assert "description" not in cfg["tools"][0]
    assert set(tools) == {"lookup"}


def test_a_described_tool_does_not_warn() -> None:
    def lookup(city: str) -> str:
        return city

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_session_config(tools=[get_weather, tool(description="Find a city.")(lookup)])
        build_session_config(tools=[{"type": "function", "name": "raw", "parameters": {}}])


# --- response gate -----------------------------------------------------------------------------


def _created(rid: str) -> dict[str, Any]:
    return {"type": "response.created", "response": {"id": rid}}


def _done(rid: str) -> dict[str, Any]:
    return {"type": "response.done", "response": {"id": rid}}


def test_gate_queues_while_active_and_releases_in_order() -> None:
    g = ResponseGate()
    r1, r2, r3 = (client.response_create() for _ in range(3))
    assert g.request(r1) == [r1]
    assert g.request(r2) == []
    assert g.request(r3) == []
    assert g.on_server_event(_created("a")) == []
    assert g.on_server_event(_done("a")) == [r2]
    assert g.on_server_event(_created("b")) == []
    assert g.on_server_event(_done("b")) == [r3]
    g.on_server_event(_created("c"))
    assert g.on_server_event(_done("c")) == []
    assert not g.busy


def test_gate_server_vad_response_blocks_ours() -> None:
    g = ResponseGate()
    g.on_server_event(_created("vad"))  # the server started one on its own
    r = client.response_create()
    assert g.request(r) == []
    assert g.on_server_event(_done("vad")) == [r]


def test_gate_requeues_a_request_refused_as_busy() -> None:
    g = ResponseGate()
    r = client.response_create()
    assert g.request(r) == [r]
    err = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": "conversation_already_has_active_response",
            "event_id": r["event_id"],
        },
    }
    assert g.on_server_event(err) == []  # still busy with the response we did not see start
    assert g.on_server_event(_done("other")) == [r]
    # Another error for an unknown event changes nothing.
    assert g.on_server_event({"type": "error", "error": {"event_id": "nope"}}) == []


def test_gate_other_error_drops_the_request() -> None:
    g = ResponseGate()
    r = client.response_create()
    g.request(r)
    g.on_server_event(
        {"type": "error", "error": {"code": "invalid_value", "event_id": r["event_id"]}}
    )
    assert not g.busy
    assert not g.queue


# --- playback and truncation -------------------------------------------------------------------


def _ev(
    seq: int,
    t_ms: float,
    source: Source,
    data: dict[str, Any],
    audio: bytes | None = None,
    item_id: str | None = None,
) -> Event:
    return Event(
        seq,
        int(t_ms * 1e6),
        source,
        data["type"],
        data=data,
        audio=audio,
        item_id=item_id or data.get("item_id"),
        response_id=data.get("response_id"),
    )


def _delta(seq: int, t_ms: float, ms: int, item: str = "it1") -> Event:
    return _ev(
        seq,
        t_ms,
        Source.SERVER,
        {"type": "response.output_audio.delta", "item_id": item, "response_id": "r1", "delta": ""},
        audio=b"\0" * (48 * ms),
    )


class _Fed:
    """A PlaybackModel fed like the session feeds it: each event applied to the reducer first."""

    def __init__(self) -> None:
        self.reducer = Reducer()
        self.pm = PlaybackModel()

    def __call__(self, ev: Event) -> tuple[str, int] | None:
        self.reducer.apply(ev)
        return self.pm.on_event(ev, self.reducer.state)

    def clamp(self, item_id: str, ms: float) -> int:
        return self.pm.clamp(self.reducer.state, item_id, ms)


def test_interruption_without_player_truncates_to_elapsed_time() -> None:
    feed = _Fed()
    for i in range(10):  # 10 x 200 ms = 2 s of audio arrive within 100 ms (faster than real time)
        assert feed(_delta(i, 1000 + 10 * i, 200)) is None
    speech = _ev(20, 1000 + 733.7, Source.SERVER, {"type": "input_audio_buffer.speech_started"})
    assert feed(speech) == ("it1", 733)  # floored
    assert feed(speech) is None  # only once per item


def test_interruption_after_everything_was_heard_sends_nothing() -> None:
    feed = _Fed()
    feed(_delta(0, 0, 500))
    assert feed(_ev(1, 900, Source.SERVER, {"type": "input_audio_buffer.speech_started"})) is None


def test_an_item_the_client_already_truncated_is_not_truncated_again() -> None:
    feed = _Fed()
    feed(_delta(0, 0, 1000))
    truncate = {"type": "conversation.item.truncate", "item_id": "it1", "content_index": 0,
                "audio_end_ms": 100}  # fmt: skip
    assert feed(_ev(1, 50, Source.CLIENT, truncate)) is None
    assert feed(_ev(2, 300, Source.SERVER, {"type": "input_audio_buffer.speech_started"})) is None


def test_player_reports_take_over_and_are_clamped() -> None:
    feed = _Fed()
    feed(_delta(0, 0, 1000))
    started = _ev(1, 5, Source.LOCAL, {"type": "local.playback.started", "item_id": "it1"})
    assert feed(started) is None
    # With a player, speech_started alone no longer decides.
    assert feed(_ev(2, 300, Source.SERVER, {"type": "input_audio_buffer.speech_started"})) is None
    played = {"type": "local.playback.played", "item_id": "it1", "played_ms": 412.9,
              "reason": "interrupted"}  # fmt: skip
    assert feed(_ev(3, 310, Source.LOCAL, played)) == ("it1", 412)
    finished = {"type": "local.playback.played", "item_id": "it1", "played_ms": 1000,
                "reason": "finished"}  # fmt: skip
    assert feed(_ev(4, 2000, Source.LOCAL, finished)) is None


def test_received_audio_follows_the_output_format() -> None:
    feed = _Fed()
    session = {
        "type": "session.updated",
        "session": {"audio": {"output": {"format": {"type": "audio/pcmu"}}}},
    }
    feed(_ev(0, 0, Source.SERVER, session))
    feed(_delta(1, 1, 250))  # 250 * 48 bytes = 1500 ms of 8 kHz G.711
    assert PlaybackModel.received_ms(feed.reducer.state, "it1") == 1500


def test_clamp_floors_and_bounds() -> None:
    feed = _Fed()
    feed(_delta(0, 0, 250))
    assert feed.clamp("it1", 99999.9) == 250
    assert feed.clamp("it1", 12.99) == 12
    assert feed.clamp("it1", -5) == 0
    with pytest.raises(
        ValueError, match="no audio was received for item 'x'; items with audio: it1"
    ):
        feed.clamp("x", 1)
    with pytest.raises(ValueError, match="finite"):
        feed.clamp("it1", float("nan"))


# --- seeding a new connection ------------------------------------------------------------------


def test_seed_items_from_a_recorded_tool_round() -> None:
    path = FIXTURES / "sessions" / "test_openai_ws" / "test_tool_call_round.yaml"
    red = Reducer()
    for i, inter in enumerate(yaml.safe_load(path.read_text())["interactions"]):
        src = Source.CLIENT if inter["direction"] == "sent" else Source.SERVER
        data = inter["data"]
        red.apply(Event(i, i, src, data["type"], data=data))
    seeds = seed_items(red.state.items)
    assert [s["type"] for s in seeds] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert seeds[0]["content"] == [{"type": "input_text", "text": "What is the weather in London?"}]
    assert seeds[1]["call_id"] == "call_uMNE0Myi2tDTPu0w"
    assert seeds[1]["name"] == "get_weather"
    assert seeds[3]["role"] == "assistant"
    assert seeds[3]["content"] == [
        {"type": "output_text", "text": "It is foggy and 12 degrees in London."}
    ]
    assert all(s["id"] == it.id for s, it in zip(seeds, red.state.items, strict=True))
    for s in seeds:
        VALIDATOR.validate_python(client.conversation_item_create(s))


# --- audio and images --------------------------------------------------------------------------


def test_prepare_audio_resamples_and_checks() -> None:
    import numpy as np

    fmt = AudioFormat()
    wav = FIXTURES / "audio" / "realtime_whats_the_weather_pcm16_24khz_mono.wav"
    pcm = prepare_audio(wav, fmt)
    assert 3.0 < fmt.duration_ms(len(pcm)) / 1000 < 3.6
    x16k = np.zeros(16000, dtype=np.float32)
    assert len(prepare_audio(x16k, fmt, 16000)) == 24000 * 2
    stereo = np.zeros((24000, 2), dtype=np.int16)
    assert len(prepare_audio(stereo, fmt)) == 48000
    assert len(prepare_audio(b"\0\0" * 8000, AudioFormat("audio/pcmu", 8000), 16000)) == 4000
    with pytest.raises(ValueError, match="even number of bytes"):
        prepare_audio(b"\0\0\0", fmt)
    with pytest.raises(TypeError, match="numpy array, PCM bytes"):
        prepare_audio([0.0, 1.0], fmt)  # type: ignore[arg-type]  # a plain list on purpose: the error it raises is the test
    with pytest.raises(FileNotFoundError):
        prepare_audio("nope.wav", fmt)


def test_image_data_url() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 8
    assert image_data_url(png).startswith("data:image/png;base64,")
    with pytest.raises(ValueError, match="PNG, JPEG, GIF or WebP"):
        image_data_url(b"hello")


# --- endpoints ---------------------------------------------------------------------------------

KEY = "sk-test-0123456789abcdefSECRET"


def test_openai_endpoint_from_env() -> None:
    ep = resolve_endpoint("gpt-realtime", env={"OPENAI_API_KEY": KEY})
    assert ep is not None
    assert ep.kind == "openai"
    assert ep.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert ep.headers == {"Authorization": f"Bearer {KEY}"}
    assert ep.label == "OpenAI gpt-realtime"
    assert KEY not in repr(ep)
    ep = resolve_endpoint("m", env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "http://gw:8080/v1/"})
    assert ep is not None
    assert ep.url == "ws://gw:8080/v1/realtime?model=m"


def test_azure_endpoint() -> None:
    env = {
        "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com/",
        "AZURE_OPENAI_API_KEY": KEY,
        "AZURE_OPENAI_DEPLOYMENT": "my-rt",
    }
    ep = resolve_endpoint("gpt-realtime", env=env)
    assert ep is not None
    assert ep.kind == "azure"
    assert ep.label == "Azure OpenAI my-rt"
    assert ep.url == "wss://res.openai.azure.com/openai/v1/realtime?model=my-rt"
    assert ep.headers == {"api-key": KEY}
    ep = resolve_endpoint(
        "gpt-realtime", env={**env, "AZURE_OPENAI_API_VERSION": "2025-04-01-preview"}
    )
    assert ep is not None
    assert ep.url == (
        "wss://res.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=my-rt"
    )
    with pytest.raises(EndpointError, match="AZURE_OPENAI_API_KEY") as exc:
        resolve_endpoint("m", azure_endpoint="https://res.openai.azure.com", env={})
    assert KEY not in str(exc.value)


def test_custom_url_and_local_default() -> None:
    ep = resolve_endpoint("m", url="ws://127.0.0.1:9/v1/realtime", api_key=KEY, env={})
    assert ep is not None
    assert ep.url == "ws://127.0.0.1:9/v1/realtime?model=m"
    assert ep.label == "local server at 127.0.0.1:9"
    ep = resolve_endpoint("m", url=f"wss://gw.example/rt?token={KEY}", env={})
    assert ep is not None
    assert KEY in ep.secrets
    assert KEY not in ep.display_url
    assert resolve_endpoint("m", env={}) is None
    with pytest.raises(EndpointError, match="ws://, wss://"):
        resolve_endpoint("m", url="ftp://x", env={})


# --- pricing -----------------------------------------------------------------------------------

RECORDED_USAGE = {
    "total_tokens": 116,
    "input_tokens": 103,
    "output_tokens": 13,
    "input_token_details": {
        "text_tokens": 103,
        "audio_tokens": 0,
        "image_tokens": 0,
        "cached_tokens": 64,
        "cached_tokens_details": {"text_tokens": 64, "audio_tokens": 0, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 13, "audio_tokens": 0},
}


def test_cost_from_recorded_usage() -> None:
    p = PRICES["gpt-realtime"]
    expected = (39 * p.text_in + 64 * p.text_in_cached + 13 * p.text_out) / 1e6
    assert cost_of_usage(RECORDED_USAGE, p) == pytest.approx(expected)
    assert price_for("gpt-realtime-mini-2025-10-06") is PRICES["gpt-realtime-mini"]
    assert price_for("gpt-realtime-2025-08-28") is PRICES["gpt-realtime"]
    assert price_for("other") is None
    c = session_cost("gpt-realtime", [("r1", RECORDED_USAGE), ("r2", RECORDED_USAGE)])
    assert c.total == pytest.approx(2 * expected)
    assert "2 responses" in str(c)
    mine = ModelPrice(1, 1, 1, 1, 1, 1)
    assert session_cost("x", [("r", RECORDED_USAGE)], mine).total == pytest.approx(116 / 1e6)
    assert session_cost("x", [("r", RECORDED_USAGE)]).total is None
    json.dumps(RECORDED_USAGE)
