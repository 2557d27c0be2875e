"""The official ``openai`` realtime client holds a spoken conversation with the local server."""

from __future__ import annotations

import asyncio
import base64

from openai import AsyncOpenAI

from realtime_nb.core.pricing import LOCAL_MODEL
from realtime_nb.local import LocalServer

from .local_helpers import DESCRIPTION_WAV, read_wav, silence, validate_server_event


def test_openai_client_full_conversation(fast_server: LocalServer) -> None:
    speech = read_wav(DESCRIPTION_WAV)[: 24000 * 2 * 5]  # the first sentence and a half

    models: list[str | None] = []

    async def main() -> tuple[list[str], str, bytes, str]:
        client = AsyncOpenAI(api_key="test", websocket_base_url=fast_server.base_url)
        types: list[str] = []
        heard, transcript, audio = "", "", bytearray()
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.session.update(
                session={
                    "type": "realtime",
                    "instructions": 'Start every answer with "Sure."',
                    "audio": {
                        "input": {"transcription": {"model": "whisper-1"}},
                        "output": {"voice": "marin"},
                    },
                }
            )
            pcm = speech + silence(800)
            for i in range(0, len(pcm), 9600):
                await conn.input_audio_buffer.append(
                    audio=base64.b64encode(pcm[i : i + 9600]).decode()
                )
            async for event in conn:
                validate_server_event(event.model_dump(mode="json", exclude_unset=True))
                types.append(event.type)
                if event.type in ("session.created", "session.updated"):
                    models.append(event.session.model)  # type: ignore[union-attr]  # both sessions have one
                if event.type == "conversation.item.input_audio_transcription.completed":
                    heard = event.transcript
                elif event.type == "response.output_audio.delta":
                    audio.extend(base64.b64decode(event.delta))
                elif event.type == "response.output_audio_transcript.done":
                    transcript = event.transcript
                elif event.type == "response.done":
                    break
        return types, heard, bytes(audio), transcript

    types, heard, audio, transcript = asyncio.run(asyncio.wait_for(main(), 60))
    assert types[0] == "session.created"
    # The SDK's models accept the local backend's own label; it is what the session reports.
    assert models == [LOCAL_MODEL, LOCAL_MODEL]
    assert "input_audio_buffer.speech_started" in types
    assert heard, "pocketsphinx heard nothing"
    assert transcript == f"Sure. You said: {heard}"
    assert len(audio) > 24000 * 2  # over a second of spoken reply
