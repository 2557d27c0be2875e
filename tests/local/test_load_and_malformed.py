"""20 concurrent sessions; malformed frames get an error and leave the session usable."""

from __future__ import annotations

import asyncio
import base64
import json

from realtime_nb.local import LocalServer

from .local_helpers import Client, connect, silence, validate_server_event

SESSIONS = 20
#: The audio turn: the first second of the weather question, 24 kHz PCM16. Every session's turn
#: is decoded (nothing is cached), one or two at a time, and PocketSphinx holds the GIL while it
#: decodes: the whole question twenty times over is ~25 s of decoding on this 2-core machine.
TURN_BYTES = 24_000 * 2
#: Guards against a hang, not performance targets (those are in benchmarks/bench_local.py): the
#: 2-core machine runs other suites at the same time.
TURN_TIMEOUT_S = 120
TEST_TIMEOUT_S = 240


def test_twenty_concurrent_sessions(fast_server: LocalServer, weather_pcm: bytes) -> None:
    async def one(n: int) -> Client:
        ws = await connect(fast_server.url)
        c = Client(ws)
        await c.recv()
        # a text turn, then an audio turn with server VAD
        await c.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": f"session {n}"}],
                },
            }
        )
        await c.send({"type": "response.create"})
        await c.until("response.done", timeout=TURN_TIMEOUT_S)
        await c.append(weather_pcm[:TURN_BYTES] + silence(700), chunk_ms=200)
        await c.until("response.done", timeout=TURN_TIMEOUT_S)
        await ws.close()
        return c

    async def main() -> list[Client]:
        return await asyncio.gather(*(one(n) for n in range(SESSIONS)))

    clients = asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT_S))
    for n, c in enumerate(clients):
        assert "error" not in c.types()
        dones = c.of("response.done")
        assert [d["response"]["status"] for d in dones] == ["completed", "completed"]
        first = c.of("response.output_audio_transcript.done")[0]["transcript"]
        assert first == f"You said: session {n}"
        for e in c.events:
            validate_server_event(e)
    session_ids = {c.events[0]["session"]["id"] for c in clients}
    assert len(session_ids) == SESSIONS


def test_malformed_frames_get_errors_and_session_stays_usable(fast_server: LocalServer) -> None:
    huge = base64.b64encode(bytes(20 * 1024 * 1024)).decode()  # 20 MB of audio, ~27 MB as text
    frames: list[tuple[str | bytes, str]] = [
        ("this is not json", "invalid_json"),
        (b"\xff\xfe\x00binary", "invalid_json"),
        ("[1, 2, 3]", "invalid_event"),
        (json.dumps({"type": "made.up.event"}), "invalid_value"),
        (json.dumps({"type": 42}), "invalid_type"),
        (
            json.dumps(
                {
                    "type": "conversation.item.truncate",
                    "item_id": 7,
                    "content_index": 0,
                    "audio_end_ms": 1,
                }
            ),
            "invalid_type",
        ),
        (
            json.dumps(
                {
                    "type": "conversation.item.truncate",
                    "item_id": "x",
                    "content_index": 0,
                    "audio_end_ms": "soon",
                }
            ),
            "invalid_type",
        ),
        (json.dumps({"type": "input_audio_buffer.append", "audio": huge}), "event_too_large"),
        (
            json.dumps(
                {"type": "input_audio_buffer.append", "audio": huge[: 15 * 1024 * 1024 + 4]}
            ),
            "invalid_value",
        ),
    ]

    async def main() -> Client:
        ws = await connect(fast_server.url)
        c = Client(ws)
        await c.recv()
        for frame, _ in frames:
            await c.send(frame)
            await c.until("error")
        await c.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "still alive"}],
                },
            }
        )
        await c.send({"type": "response.create"})
        await c.until("response.done")
        await ws.close()
        return c

    c = asyncio.run(asyncio.wait_for(main(), 60))
    codes = [e["error"]["code"] for e in c.of("error")]
    assert codes == [code for _, code in frames]
    for e in c.events:
        validate_server_event(e)
    assert c.of("response.output_audio_transcript.done")[0]["transcript"] == "You said: still alive"
