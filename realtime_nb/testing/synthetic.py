"""Synthetic sessions with a realistic event mix, for benchmarks and tests.

The mix follows what a live ``gpt-realtime`` session sends: the client appends 40 ms of microphone
audio continuously; every ~20 s the user speaks (VAD events, a commit, a transcription), and the
assistant answers with audio deltas (about 100 ms each, sent faster than real time), transcript
deltas (a word at a time), and the item/part/response envelope events with usage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from ..core.audio import b64encode_audio

__all__ = ["SyntheticFrame", "synthetic_session"]

#: Input chunk length: browsers and SDKs commonly send 20-100 ms; 40 ms is the issue's figure.
CHUNK_MS: Final = 40
#: Assistant audio delta length as observed from the API (deltas vary; ~100 ms is typical).
DELTA_MS: Final = 100
#: One user turn every this many seconds.
TURN_EVERY_S: Final = 20
BYTES_PER_MS: Final = 48  # PCM16 at 24 kHz

_WORDS: Final = [
    "sure",
    "here",
    "is",
    "what",
    "I",
    "found",
    "about",
    "the",
    "weather",
    "today",
    "it",
    "looks",
    "sunny",
    "with",
    "a",
    "light",
    "breeze",
    "and",
    "temperatures",
    "around",
    "eighteen",
    "degrees",
    "so",
    "a",
    "jacket",
    "might",
    "be",
    "a",
    "good",
    "idea",
    "this",
    "evening",
]


@dataclass(frozen=True)
class SyntheticFrame:
    """One event as a session holds it: direction, time, the frame text and its parsed form."""

    source: str
    t_ns: int
    raw: str
    data: dict[str, Any]


def _noise(rng: np.random.Generator, nbytes: int, level: float) -> bytes:
    return (rng.standard_normal(nbytes // 2) * level).astype("<i2").tobytes()


def synthetic_session(minutes: float = 60.0, seed: int = 0) -> Iterator[SyntheticFrame]:
    """Yield the frames of a synthetic session of ``minutes`` minutes, in time order."""
    rng = np.random.default_rng(seed)
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    # A small pool of distinct audio chunks keeps generation fast but payloads realistic
    # (random samples: base64 of noise, incompressible like real speech).
    in_pool = [b64encode_audio(_noise(rng, CHUNK_MS * BYTES_PER_MS, 800)) for _ in range(64)]
    out_pool = [b64encode_audio(_noise(rng, DELTA_MS * BYTES_PER_MS, 3000)) for _ in range(64)]
    total_ms = int(minutes * 60_000)
    n = 0

    def frame(source: str, t_ms: float, ev: dict[str, Any]) -> SyntheticFrame:
        nonlocal n
        n += 1
        ev.setdefault("event_id", f"event_{n:021d}")
        return SyntheticFrame(source, int(t_ms * 1e6), dumps(ev), ev)

    yield frame(
        "server",
        0,
        {
            "type": "session.created",
            "session": {
                "type": "realtime",
                "object": "realtime.session",
                "id": "sess_synthetic",
                "model": "gpt-realtime",
                "output_modalities": ["audio"],
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "turn_detection": {"type": "server_vad"},
                    },
                    "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"},
                },
            },
        },
    )
    pending: list[SyntheticFrame] = []
    turn = 0
    for t in range(0, total_ms, CHUNK_MS):
        while pending and pending[0].t_ns <= t * 1e6:
            yield pending.pop(0)
        yield frame(
            "client",
            t,
            {"type": "input_audio_buffer.append", "audio": in_pool[(t // CHUNK_MS) % 64]},
        )
        if t % (TURN_EVERY_S * 1000) == 5000:
            turn += 1
            pending.extend(_turn_frames(frame, t, turn, out_pool, rng))
            pending.sort(key=lambda f: f.t_ns)
    yield from pending


def _turn_frames(
    frame: Any, t0: float, turn: int, out_pool: list[str], rng: np.random.Generator
) -> list[SyntheticFrame]:
    uid, aid, rid = f"item_u{turn:020d}", f"item_a{turn:020d}", f"resp_{turn:020d}"
    prev = f"item_a{turn - 1:020d}" if turn > 1 else None
    speech_ms = 3000
    out: list[SyntheticFrame] = []
    t_stop = t0 + speech_ms
    out.append(
        frame(
            "server",
            t0 + 50,
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": int(t0),
                "item_id": uid,
            },
        )
    )
    out.append(
        frame(
            "server",
            t_stop + 500,
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": int(t_stop),
                "item_id": uid,
            },
        )
    )
    t = t_stop + 510
    out.append(
        frame(
            "server",
            t,
            {"type": "input_audio_buffer.committed", "previous_item_id": prev, "item_id": uid},
        )
    )
    user_item = {
        "id": uid,
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": None}],
    }
    out.append(
        frame(
            "server",
            t + 1,
            {"type": "conversation.item.added", "previous_item_id": prev, "item": user_item},
        )
    )
    out.append(
        frame(
            "server",
            t + 2,
            {"type": "conversation.item.done", "previous_item_id": prev, "item": user_item},
        )
    )
    out.append(
        frame(
            "server",
            t + 3,
            {
                "type": "response.created",
                "response": {
                    "object": "realtime.response",
                    "id": rid,
                    "status": "in_progress",
                    "output": [],
                    "conversation_id": "conv_1",
                    "output_modalities": ["audio"],
                },
            },
        )
    )
    for w, word in enumerate(["what", "is", "the", "weather", "like", "today"]):
        out.append(
            frame(
                "server",
                t + 200 + 40 * w,
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": uid,
                    "content_index": 0,
                    "delta": word + " ",
                },
            )
        )
    asst = {
        "id": aid,
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    out.append(
        frame(
            "server",
            t + 300,
            {
                "type": "response.output_item.added",
                "response_id": rid,
                "output_index": 0,
                "item": asst,
            },
        )
    )
    out.append(
        frame(
            "server",
            t + 301,
            {"type": "conversation.item.added", "previous_item_id": uid, "item": asst},
        )
    )
    out.append(
        frame(
            "server",
            t + 302,
            {
                "type": "response.content_part.added",
                "response_id": rid,
                "item_id": aid,
                "output_index": 0,
                "content_index": 0,
                "part": {"type": "output_audio", "transcript": ""},
            },
        )
    )
    answer_ms = int(rng.integers(6000, 9000))
    n_deltas = answer_ms // DELTA_MS
    words = _WORDS[: int(answer_ms / 400)]
    for d in range(n_deltas):
        # Deltas arrive ~2x faster than real time, as the API sends them.
        td = t + 320 + d * DELTA_MS / 2
        out.append(
            frame(
                "server",
                td,
                {
                    "type": "response.output_audio.delta",
                    "response_id": rid,
                    "item_id": aid,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": out_pool[d % 64],
                },
            )
        )
        if d % 4 == 0 and d // 4 < len(words):
            out.append(
                frame(
                    "server",
                    td + 1,
                    {
                        "type": "response.output_audio_transcript.delta",
                        "response_id": rid,
                        "item_id": aid,
                        "output_index": 0,
                        "content_index": 0,
                        "delta": words[d // 4] + " ",
                    },
                )
            )
    t_end = t + 320 + n_deltas * DELTA_MS / 2 + 10
    text = " ".join(words[: (n_deltas + 3) // 4])
    out.append(
        frame(
            "server",
            t_end,
            {
                "type": "response.output_audio.done",
                "response_id": rid,
                "item_id": aid,
                "output_index": 0,
                "content_index": 0,
            },
        )
    )
    out.append(
        frame(
            "server",
            t_end + 1,
            {
                "type": "response.output_audio_transcript.done",
                "response_id": rid,
                "item_id": aid,
                "output_index": 0,
                "content_index": 0,
                "transcript": text,
            },
        )
    )
    done_item = {
        **asst,
        "status": "completed",
        "content": [{"type": "output_audio", "transcript": text}],
    }
    out.append(
        frame(
            "server",
            t_end + 2,
            {"type": "conversation.item.done", "previous_item_id": uid, "item": done_item},
        )
    )
    out.append(
        frame(
            "server",
            t_end + 3,
            {
                "type": "response.done",
                "response": {
                    "object": "realtime.response",
                    "id": rid,
                    "status": "completed",
                    "output": [done_item],
                    "conversation_id": "conv_1",
                    "usage": {
                        "total_tokens": 420,
                        "input_tokens": 250,
                        "output_tokens": 170,
                        "input_token_details": {
                            "text_tokens": 50,
                            "audio_tokens": 200,
                            "cached_tokens": 0,
                        },
                        "output_token_details": {"text_tokens": 30, "audio_tokens": 140},
                    },
                },
            },
        )
    )
    return out
