"""Vapi and Retell call exports become recordings. The inputs are built with the platforms'
official SDK types (``vapi_server_sdk``'s ``Call``, ``retell-sdk``'s ``WebCallResponse``), which
validate them as the published models do."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import vapi.types as vt
from retell.types import WebCallResponse

from realtime_nb.core.metrics import compute
from realtime_nb.corpus import Corpus, TurnRecord, import_retell, import_vapi, tool_called
from realtime_nb.debugging.redrive import plan_turns, redrive

T0_MS = 1_764_496_800_000  # 2025-11-30T10:00:00Z in epoch milliseconds
#: (role, text, start s, end s) of the call both platforms' fixtures describe.
SCRIPT = [
    ("user", "What's the weather in Paris?", 0.5, 2.0),
    ("agent", "Let me check.", 2.6, 3.4),
    ("agent", "It is sunny in Paris, 21 degrees.", 4.0, 6.0),
    ("user", "Thanks, bye.", 7.0, 8.0),
    ("agent", "Goodbye!", 8.5, 9.2),
]
TOOL = ("call_1", "get_weather", '{"city": "Paris"}', "sunny, 21C", 3.5)


def vapi_call() -> vt.Call:
    messages: list[object] = [
        vt.SystemMessage(
            role="system", message="You are a weather agent.", time=T0_MS, seconds_from_start=0
        )
    ]
    for role, text, a, b in SCRIPT:
        cls = vt.UserMessage if role == "user" else vt.BotMessage
        messages.append(
            cls(
                role="user" if role == "user" else "bot",
                message=text,
                time=T0_MS + a * 1000,
                end_time=T0_MS + b * 1000,
                seconds_from_start=a,
                duration=b - a,
            )
        )
    cid, name, args, result, t = TOOL
    messages.append(
        vt.ToolCallMessage(
            role="tool_calls",
            message="",
            time=T0_MS + t * 1000,
            seconds_from_start=t,
            tool_calls=[
                {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            ],
        )
    )
    messages.append(
        vt.ToolCallResultMessage(
            role="tool_call_result",
            tool_call_id=cid,
            name=name,
            result=result,
            time=T0_MS + t * 1000 + 300,
            seconds_from_start=t + 0.3,
        )
    )
    messages.sort(key=lambda m: m.seconds_from_start)  # type: ignore[attr-defined]  # every message type has it
    when = dt.datetime(2025, 11, 30, 10, 0, tzinfo=dt.timezone.utc)
    return vt.Call(
        id="vapi-call-1",
        org_id="org",
        created_at=when,
        updated_at=when,
        started_at=when,
        cost=0.0312,
        artifact=vt.Artifact(messages=messages),
    )


def retell_call() -> WebCallResponse:
    entries: list[dict[str, object]] = []
    for role, text, a, b in SCRIPT:
        words = text.split()
        step = (b - a) / len(words)
        entries.append(
            {
                "role": role,
                "content": text,
                "words": [
                    {"word": w, "start": a + k * step, "end": a + (k + 1) * step}
                    for k, w in enumerate(words)
                ],
            }
        )
        if text == "Let me check.":
            cid, name, args, result, _t = TOOL
            entries.append(
                {
                    "role": "tool_call_invocation",
                    "tool_call_id": cid,
                    "name": name,
                    "arguments": args,
                }
            )
            entries.append(
                {
                    "role": "tool_call_result",
                    "tool_call_id": cid,
                    "content": result,
                    "successful": True,
                }
            )
    entries.append({"role": "dtmf", "digit": "1"})
    return WebCallResponse.model_validate(
        {
            "access_token": "tok",
            "agent_id": "agent_1",
            "agent_version": 1,
            "call_id": "retell-call-1",
            "call_status": "ended",
            "call_type": "web_call",
            "start_timestamp": T0_MS,
            "end_timestamp": T0_MS + 10_000,
            "transcript_with_tool_calls": entries,
            "call_cost": {
                "combined_cost": 4.2,
                "product_costs": [],
                "total_duration_seconds": 10,
                "total_duration_unit_price": 0.1,
            },
        }
    )


def stereo_wav(path: Path, rate: int = 16_000) -> Path:
    """A stereo call: a tone on the user channel while the user speaks, another on the agent's."""
    n = int(10 * rate)
    t = np.arange(n) / rate
    left, right = np.zeros(n, np.float32), np.zeros(n, np.float32)
    for role, _text, a, b in SCRIPT:
        span = slice(int(a * rate), int(b * rate))
        (left if role == "user" else right)[span] = 0.3 * np.sin(
            2 * np.pi * (220 if role == "user" else 440) * t[span]
        )
    sf.write(path, np.stack([left, right], axis=1), rate, subtype="PCM_16")
    return path


@pytest.mark.parametrize(
    ("importer", "make"), [(import_vapi, vapi_call), (import_retell, retell_call)]
)
def test_transcript_turns_and_tool_calls_are_kept(importer, make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # parametrized pair
    rec = importer(make(), save_to=tmp_path / "call.arrow")
    st = rec.state
    users = [i.text for i in st.items if i.role == "user"]
    agents = [i.text for i in st.items if i.role == "assistant"]
    assert users == ["What's the weather in Paris?", "Thanks, bye."]
    assert agents == ["Let me check.", "It is sunny in Paris, 21 degrees.", "Goodbye!"]
    [call] = [i for i in st.items if i.type == "function_call"]
    assert (call.name, json.loads(call.arguments or "")) == ("get_weather", {"city": "Paris"})
    [out] = [i for i in st.items if i.type == "function_call_output"]
    assert out.call_id == call.call_id and out.output == "sunny, 21C"
    assert rec.meta["started_at"].startswith("2025-11-30T10:00:0")
    assert rec.meta["imported"]["cost_usd"] == pytest.approx(
        0.0312 if importer is import_vapi else 0.042
    )
    m = compute(st, meta=rec.meta)
    assert len(m.turns) == 2
    # The latency from the transcript: the user's last word to the agent's first.
    assert m.turns[0].latency_ms == pytest.approx(600, abs=1)
    # Without a recording, the turns are text: a re-drive sends what the user said.
    assert [t.kind for t in plan_turns(st)] == ["text", "text"]
    c = Corpus([tmp_path / "call.arrow"], cache=False)
    [(_, result)] = tool_called("get_weather", city="Paris").run(
        [TurnRecord.from_row(r) for r in c.turns.to_pylist()]
    )
    assert result.status == "pass"


@pytest.mark.parametrize(
    ("importer", "make"), [(import_vapi, vapi_call), (import_retell, retell_call)]
)
def test_a_stereo_recording_gives_the_turns_their_audio(importer, make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # parametrized pair
    wav = stereo_wav(tmp_path / "call.wav")
    rec = importer(make(), recording=wav, save_to=tmp_path / "call.arrow")
    st = rec.state
    turns = plan_turns(st)
    assert [t.kind for t in turns] == ["audio", "audio"]
    user_pcm = np.frombuffer(turns[0].audio or b"", "<i2")
    assert abs(len(user_pcm) / 24_000 - 1.5) < 0.05  # 0.5 s -> 2.0 s of the user channel
    assert np.abs(user_pcm).max() > 5000
    answer = next(i for i in st.items if i.role == "assistant")
    assert abs(answer.output_audio_ms - 800) < 110  # 2.6 s -> 3.4 s of the agent channel
    assert rec.meta["imported"]["audio"] is True


def test_imports_are_redriven_like_any_recording(tmp_path: Path) -> None:
    rec = import_vapi(vapi_call(), save_to=tmp_path / "vapi.arrow")
    child = redrive(rec, record=tmp_path / "child.arrow", progress=False, instructions="Be brief.")
    assert child.meta["parent"]["path"] == str(tmp_path / "vapi.arrow")
    assert [i.text for i in child.state.items if i.role == "user"] == [
        "What's the weather in Paris?",
        "Thanks, bye.",
    ]


def test_what_cannot_be_imported_is_said() -> None:
    with pytest.raises(ValueError, match="no messages"):
        import_vapi({"id": "x", "artifact": {"messages": []}})
    with pytest.raises(ValueError, match="no word timings"):
        import_retell(
            {"call_id": "x", "transcript_object": [{"role": "user", "content": "hi", "words": []}]}
        )
    with pytest.raises(TypeError, match="takes the call as a dict"):
        import_retell(42)
    rec = import_retell(retell_call())
    assert rec.meta["imported"]["dropped_entries"] == ["dtmf"]
