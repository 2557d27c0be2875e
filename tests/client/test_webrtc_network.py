"""A real WebRTC call with OpenAI: the kernel posts an aiortc peer's offer to
``https://api.openai.com/v1/realtime/calls``, attaches the sideband, runs a tool over it, and
records the call. Needs ``OPENAI_API_KEY`` and the internet; skipped otherwise."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from openai.types.realtime import RealtimeClientEvent
from pydantic import TypeAdapter

from realtime_nb.client.session import Session
from realtime_nb.core.protocol import Source
from realtime_nb.core.tools import tool
from realtime_nb.storage.recording import Recording

aiortc = pytest.importorskip("aiortc")  # the [webrtc] extra; CI installs it (the [test] extra)
from aiortc import RTCSessionDescription  # noqa: E402  # after the skip: the extra may be missing

from .webrtc_peer import STEP_S, Page, silence  # noqa: E402  # after the skip: it imports aiortc

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="needs OPENAI_API_KEY"),
]
VALIDATOR: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)


@tool
def get_weather(city: str) -> str:
    """Look up the weather for a city."""
    return f"It is foggy and 12 degrees in {city}."


async def _call(path: Path) -> tuple[Page, str]:
    session = Session(
        "gpt-realtime",
        transport="webrtc",
        instructions="Answer in one short sentence. Use your tools.",
        tools=[get_weather],
        record=path,
        reconnect=False,
    )
    page = Page(session)
    try:
        await page.pc.setLocalDescription(await page.pc.createOffer())
        answer = await session.aaccept_offer(page.pc.localDescription.sdp, timeout=30)
        await page.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        page.mic.say(silence(500))
        await page.until(lambda e: e["type"] == "session.created")
        session.send_text("What is the weather in Paris?")
        i = await page.until(lambda e: e["type"] == "response.function_call_arguments.done")
        await page.until(lambda e: e["type"] == "output_audio_buffer.stopped", i)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(session.wait_until_idle, STEP_S)
        call_id = str(session.call_id)
        await session.ahangup()
    finally:
        await page.close()
        await session.aclose()
    return page, call_id


def test_a_call_with_openai(tmp_path: Path) -> None:
    page, call_id = asyncio.run(asyncio.wait_for(_call(tmp_path / "call.arrow"), 180))
    assert call_id.startswith("rtc_")
    rec = Recording.open(tmp_path / "call.arrow")
    assert rec.meta["transport"] == "webrtc" and rec.meta["call_id"] == call_id
    raw = (tmp_path / "call.arrow").read_bytes()
    assert os.environ["OPENAI_API_KEY"].encode() not in raw
    http = [e for e in rec.events if e.type == "local.http"]
    assert http[0].data["status"] == 201
    server_ids = [e.event_id for e in rec.events if e.source is Source.SERVER]
    assert len(server_ids) == len(set(server_ids))
    assert {e["event_id"] for e in page.events} <= set(server_ids)
    for e in rec.events:
        if e.source is Source.CLIENT:
            VALIDATOR.validate_python(e.wire())
    finished = [e for e in rec.events if e.type == "local.tool.finished"]
    assert finished and finished[0].data["name"] == "get_weather"
    reply = [i for i in rec.state.items if i.role == "assistant" and i.audio_part() is not None]
    assert reply and rec.state.item_audio(reply[-1].id)  # the audio the page played for it
    assert rec.metrics().turns[0].latency_ms is not None
