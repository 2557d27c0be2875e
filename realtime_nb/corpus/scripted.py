"""A scripted caller: user lines spoken by the local TTS into a recording, before any real call.

``scripted_call(["What's the weather in Paris?", Line("Thanks!", pause_ms=800)], record=...)``
synthesises each line with :mod:`realtime_nb.local.tts` (eSpeak NG, offline) and says it to a
Realtime server (the offline local backend unless ``url``/``api_key`` say otherwise) with the
server's VAD cutting the turns, exactly as a caller's microphone would. The result is an
ordinary recording, re-drivable like any other: its user turns hold the synthesised audio.

A line's ``pause_ms`` is silence before it; ``barge_in_ms`` makes it start that long after the
previous answer began instead of after it ended, so the caller talks over the assistant (the
local backend then answers at the pace of speech so that there is something to interrupt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from ..storage.recording import DEFAULT_DIR, Recording, default_path

__all__ = ["Line", "scripted_call"]

#: Silence after each line so that the server's VAD ends the turn: longer than server VAD's
#: default ``silence_duration_ms`` (500 ms), as the re-drive uses.
TRAILING_SILENCE_MS: Final = 1200
#: Seconds to wait for each answer (tool calls and follow-ups included).
TURN_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True)
class Line:
    """One thing the caller says: ``text``, after ``pause_ms`` of silence; with ``barge_in_ms``,
    that many ms after the previous answer started (talking over it)."""

    text: str
    pause_ms: int = 0
    barge_in_ms: int | None = None
    voice: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError(f"a scripted line needs some text to say, got {self.text!r}")
        if not isinstance(self.pause_ms, int) or self.pause_ms < 0:
            raise ValueError(f"pause_ms must be a non-negative integer, got {self.pause_ms!r}")
        if self.barge_in_ms is not None and (
            not isinstance(self.barge_in_ms, int) or self.barge_in_ms < 0
        ):
            raise ValueError(
                f"barge_in_ms must be a non-negative integer or None, got {self.barge_in_ms!r}"
            )


def _lines(lines: Sequence[str | Line]) -> list[Line]:
    out = []
    for i, line in enumerate(lines):
        if isinstance(line, str):
            out.append(Line(line))
        elif isinstance(line, Line):
            out.append(line)
        else:
            raise TypeError(
                f"line {i} is a {type(line).__name__}; a script is a list of str or Line"
            )
    if not out:
        raise ValueError("a scripted call needs at least one line")
    return out


def scripted_call(
    lines: Sequence[str | Line],
    *,
    record: str | Path | None = None,
    instructions: str | None = None,
    tools: Any = None,
    voice: str = "alloy",
    caller_voice: str = "alloy",
    url: str | None = None,
    api_key: str | None = None,
    model: str = "gpt-realtime",
    turn_timeout: float = TURN_TIMEOUT_S,
) -> Recording:
    """Say ``lines`` to a Realtime server and return the recording (see the module docstring).

    Args:
        record: the new ``.arrow`` file or a folder (default ``recordings/``).
        instructions, tools, voice: the assistant's settings.
        caller_voice: the local TTS voice of the caller (a line's ``voice`` overrides it).
        url, api_key, model: a server to call instead of the offline local backend.

    Raises:
        ValueError, TypeError: an empty script or a bad line (which and why).
        MissingExtraError: the ``[local]`` extra (eSpeak NG) is not installed.
        TimeoutError: an answer did not come within ``turn_timeout``.
        FileExistsError: ``record`` names an existing file.
    """
    import numpy as np

    from ..client.session import Session
    from ..local.tts import synthesize

    script = _lines(lines)
    target = Path(record) if record is not None else DEFAULT_DIR
    if target.is_dir() or not target.suffix:
        target = default_path(f"{model}-scripted", target)
    if target.exists():
        raise FileExistsError(f"{target} already exists; recordings are never overwritten")
    target.parent.mkdir(parents=True, exist_ok=True)
    server: Any = None
    if url is None and api_key is None:
        from ..local import LocalServer

        # Barge-ins need an answer still playing when the caller starts again: then the local
        # backend answers at the pace of speech; otherwise as fast as it can.
        barging = any(line.barge_in_ms is not None for line in script)
        server = LocalServer("tools", fast=not barging).start()
        url = server.url
    fields: dict[str, Any] = {}
    if instructions is not None:
        fields["instructions"] = instructions
    if tools is not None:
        fields["tools"] = tools
    meta = {"scripted": {"lines": [asdict(line) for line in script], "caller_voice": caller_voice}}
    try:
        session = Session(
            model,
            url=url,
            api_key=api_key,
            voice=voice,
            turn_detection="server_vad",
            transcription=True,
            record=target,
            meta=meta,
            **fields,
        )
        try:
            fmt = session.input_format
            trailing = np.zeros(fmt.bytes_for_ms(TRAILING_SILENCE_MS), np.uint8).tobytes()
            for i, line in enumerate(script):
                speech = synthesize(line.text, voice=line.voice or caller_voice, fmt=fmt)
                if line.barge_in_ms is not None and i > 0:
                    session.wait_for("response.created", turn_timeout)
                    session.wait_for("response.output_audio.delta", turn_timeout)
                    session.send_audio(
                        np.zeros(fmt.bytes_for_ms(line.barge_in_ms), np.uint8).tobytes(),
                        realtime=True,
                    )
                    session.send_audio(speech.audio, realtime=True)
                else:
                    if line.pause_ms:
                        silence = np.zeros(fmt.bytes_for_ms(line.pause_ms), np.uint8).tobytes()
                        session.send_audio(silence)
                    session.send_audio(speech.audio)
                session.send_audio(trailing)
                nxt = script[i + 1] if i + 1 < len(script) else None
                if nxt is None or nxt.barge_in_ms is None:
                    session.wait_for("response.done", turn_timeout)
                    session.wait_until_idle(turn_timeout)
        finally:
            session.close()
    finally:
        if server is not None:
            server.stop()
    return Recording.open(target)
