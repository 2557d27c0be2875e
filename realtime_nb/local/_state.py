"""The local Realtime server's protocol state machine, sans I/O.

:class:`RealtimeState` is fed client frames (:meth:`~RealtimeState.receive`), the passage of time
(:meth:`~RealtimeState.poll`) and the results of slow work it asked for
(:meth:`~RealtimeState.transcription_done`, :meth:`~RealtimeState.generation_done`,
:meth:`~RealtimeState.speech_done`). It never blocks, sleeps, awaits or touches a socket: server
events accumulate in an outbox drained by :meth:`~RealtimeState.events_to_send`, and slow work
(speech recognition, the responder and speech synthesis) is requested as job objects drained by
:meth:`~RealtimeState.jobs_to_run`.

Streaming (the default): a VAD turn is recognised while it is spoken. At ``speech_started`` the
state opens a recognition stream and hands it the turn's audio, padding included, as it is
appended (:class:`StreamJob`); at ``speech_stopped`` only the end of the stream is left to decode.
A spoken reply is synthesised segment by segment (sentences and clauses, one
:class:`SpeakJob` at a time, the next requested when the previous one is in), and its first audio
delta goes out as soon as the first segment is ready. ``streaming=False`` is the previous
pipeline, kept as the benchmark's baseline: recognition of the whole turn after
``speech_stopped`` (:class:`TranscribeJob`) and the whole reply synthesised before its first
delta. :meth:`~RealtimeState.next_deadline` says when ``poll`` has
something to do (the next paced audio delta, or the end of a capped session), and
:attr:`~RealtimeState.close_request` when the shell must close the connection. The asyncio shell in
:mod:`.server` is a loop around these calls; tests drive it directly with plain lists of events.

Time: ``now`` is any monotonic clock in seconds, used to pace output audio and to end a session
at ``max_session_s``. Voice activity and
``idle_timeout_ms`` run on the *input audio* timeline (milliseconds of audio appended), as the API
reports them.

WebRTC (``webrtc=True``, a call of the calls endpoint): output audio goes on the call's audio track,
never in ``response.output_audio.delta`` events. The state keeps the call's *output audio buffer*
(what is synthesised and not yet played), released as soon as it is synthesised (the track paces
it); the shell's track reads it in real time with :meth:`~RealtimeState.read_output_audio`, which
emits ``output_audio_buffer.started`` when a response's first audio is read and
``output_audio_buffer.stopped`` once it is all played and the response is over. A barge-in (server
VAD ``speech_started`` with ``interrupt_response``) truncates the playing item at the audio
actually read (``conversation.item.truncated``) and clears the buffer
(``output_audio_buffer.cleared``). The call's microphone comes in through
:meth:`~RealtimeState.append_input_audio`, as if appended with ``input_audio_buffer.append``.

Token usage in ``response.done`` is an estimate, not a tokenizer's count: text is counted at
:data:`CHARS_PER_TOKEN` characters a token, input audio at :data:`INPUT_AUDIO_TOKENS_PER_S` and
output audio at :data:`OUTPUT_AUDIO_TOKENS_PER_S` tokens a second (the rates observed in the
recorded sessions under ``fixtures/sessions``); cached tokens are always reported as 0.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from realtime_nb.core.audio import (
    AudioFormat,
    Resampler,
    b64decode_audio,
    b64encode_audio,
    decode_to_float,
    encode_from_float,
    float32_to_pcm16,
    pcm16_to_float32,
)
from realtime_nb.core.pricing import LOCAL_MODEL
from realtime_nb.core.protocol import CLIENT_EVENT_TYPES, new_item_id

from ._beta import BetaDialect
from ._config import (
    ClientError,
    _check_enum,
    apply_session_update,
    check_max_output_tokens,
    check_metadata,
    check_output_modalities,
    check_prompt,
    check_str,
    check_tool_choice,
    default_session,
    validate_tools,
)
from ._frames import find_non_finite, parse_frame, quote
from .responders import FunctionCall, Output, ResponseRequest, TextReply
from .tts import Speech, split_segments
from .vad import VadConfig, VoiceActivityDetector

__all__ = ["GenerateJob", "Job", "RealtimeState", "SpeakJob", "StreamJob", "TranscribeJob"]

JSON = dict[str, Any]

log = logging.getLogger("realtime_nb.local")

#: Output audio is sent in deltas of this many milliseconds: small enough that an interruption
#: stops the audio within a tenth of a second, large enough to keep events per second low.
AUDIO_DELTA_MS: Final = 100
#: The API refuses to commit less than 100 ms of audio (``input_audio_buffer_commit_empty``).
MIN_COMMIT_MS: Final = 100
#: Largest base64 ``audio`` string one ``input_audio_buffer.append`` may carry (15 MiB).
MAX_APPEND_B64_CHARS: Final = 15 * 1024 * 1024
#: Input audio kept before a speech onset (prefix padding) while no turn is open; older audio is
#: dropped so an always-on microphone does not grow memory. 2 s covers any sane prefix_padding_ms.
VAD_KEEP_MS: Final = 2000
#: Manual-commit buffers are capped at 15 minutes of audio, after which the oldest audio is dropped.
MAX_BUFFER_MS: Final = 15 * 60 * 1000
#: Token estimate rates (see the module docstring): ~4 characters a token for English text;
#: gpt-realtime bills ~10 tokens per second of input audio and ~20 per second of output audio.
CHARS_PER_TOKEN: Final = 4
INPUT_AUDIO_TOKENS_PER_S: Final = 10
OUTPUT_AUDIO_TOKENS_PER_S: Final = 20
#: Close code after ``session_expired``: 1001 (going away), with the error's message as the reason,
#: which is what the API was reported to send at its 60-minute cap ("received 1001 (going away)
#: Your session hit the maximum duration of 60 minutes.").
SESSION_EXPIRED_CLOSE_CODE: Final = 1001
#: Function call arguments stream in pieces of this many characters, like a model's tokens.
ARGUMENT_DELTA_CHARS: Final = 8
#: The call's audio track carries PCM16 mono at the API's rate (the shell encodes it to Opus).
TRACK_RATE: Final = 24000
#: What ``rate_limits.updated`` reports: the real tier's token budget and reset interval.
RATE_LIMIT_TOKENS: Final = 15_000_000
RATE_LIMIT_RESET_S: Final = 0.002

_ITEM_ID_MAX: Final = 32
_TRACK_FMT: Final = AudioFormat("audio/pcm", TRACK_RATE)


@dataclass(frozen=True)
class TranscribeJob:
    """Recognise ``audio`` (bytes in ``fmt``, all of it) for ``item_id``.

    Answer with :meth:`RealtimeState.transcription_done` (or ``transcription_failed``).
    """

    item_id: str
    audio: bytes
    fmt: AudioFormat


@dataclass(frozen=True)
class StreamJob:
    """The next ``audio`` (bytes in ``fmt``) of recognition stream ``stream_id``, in order.

    Run a stream's jobs one after the other, in the order they were requested. Without ``end``,
    nothing to answer. With ``end`` the turn is over after ``audio``: with an ``item_id``, answer
    with :meth:`RealtimeState.transcription_done` (or ``transcription_failed``) for it; without,
    the turn was dropped (a clear, a commit or a session update mid-speech): discard the stream.
    """

    stream_id: int
    audio: bytes
    fmt: AudioFormat
    end: bool = False
    item_id: str | None = None


@dataclass(frozen=True)
class GenerateJob:
    """Run the responder on ``request``; answer with :meth:`RealtimeState.generation_done`."""

    response_id: str
    request: ResponseRequest


@dataclass(frozen=True)
class SpeakJob:
    """Synthesise ``text`` (the next segment of a spoken reply) with ``voice`` at ``speed`` into
    ``fmt``; answer with :meth:`RealtimeState.speech_done` (or ``speech_failed``)."""

    response_id: str
    text: str
    voice: str
    speed: float
    fmt: AudioFormat


Job = TranscribeJob | StreamJob | GenerateJob | SpeakJob


@dataclass
class _Step:
    at: float  # seconds after the generation finished
    run: Callable[[], None]


@dataclass
class _Speaking:
    """A spoken reply being synthesised: its item and the segments still to come."""

    item: JSON
    text: str
    segments: deque[str]
    fmt: AudioFormat
    voice: str
    chars: int = 0  # characters of text in the segments scheduled so far
    ms: float = 0.0  # milliseconds of audio in the segments scheduled so far
    cuts: list[tuple[int, float]] = field(default_factory=list)  # (text end, ms), item-wide


@dataclass
class _Playout:
    """Audio of one output item waiting in a WebRTC call's output audio buffer (track format)."""

    response_id: str
    item_id: str  # its audio is content part 0, as every spoken reply's
    pcm: bytearray  # PCM16 mono at TRACK_RATE
    offset: int = 0  # bytes already read by the track


@dataclass
class _Response:
    id: str
    in_conversation: bool
    modalities: list[str]
    instructions: str
    tools: list[JSON]
    tool_choice: Any
    max_output_tokens: int | str
    voice: Any
    fmt_json: JSON
    speed: float
    metadata: JSON | None
    input_items: list[JSON] | None  # response.create "input" (else: the conversation)
    status: str = "in_progress"
    output: list[JSON] = field(default_factory=list)
    steps: deque[_Step] = field(default_factory=deque)
    t0: float = 0.0
    at: float = 0.0  # where the next output goes on the schedule (seconds after t0)
    plan: deque[Output] = field(default_factory=deque)  # generated outputs not yet scheduled
    speaking: _Speaking | None = None  # the spoken reply waiting for its next segment
    finish_scheduled: bool = False
    generating: bool = False
    waiting: bool = False  # for input transcripts before generation can start
    open_part: JSON | None = None  # {"item": ..., "kind": "audio"|"text", "sent": str}
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    output_text_chars: int = 0
    output_audio_ms: float = 0.0


def _duration_words(seconds: float) -> str:
    """``3600`` -> "60 minutes", ``1.5`` -> "1.5 seconds", as the API words its cap."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds:g} second" + ("s" if seconds != 1 else "")


class RealtimeState:
    """One Realtime session's protocol state. Not thread-safe: drive it from one thread.

    ``fast`` releases output audio as soon as it is synthesised instead of pacing it at real
    time. ``beta`` (a client that sent ``OpenAI-Beta: realtime=v1``) speaks the beta protocol:
    its events are translated at the edge by a :class:`~._beta.BetaDialect` (beta client events to
    GA in :meth:`receive`, GA server events to beta as they are emitted); everything in between,
    ``session`` and ``items`` included, is GA.

    ``model`` is the label the session reports (``session.model``), whatever a client names in
    ``session.update``. ``streaming`` (the default) recognises turns while they are spoken and speaks replies segment
    by segment; ``False`` is the previous batch pipeline (see the module docstring).

    ``webrtc`` makes it the state of a WebRTC call (see the module docstring): output audio goes
    to the output audio buffer read by :meth:`read_output_audio`, not into events.

    ``max_session_s`` caps the session's length as the API caps it at 60 minutes: once
    ``max_session_s`` seconds have passed since :meth:`start`, :meth:`poll` emits an ``error``
    event with code ``session_expired`` and sets :attr:`close_request`; the session then ignores
    everything. ``None`` (the default) means no cap.
    """

    def __init__(
        self,
        *,
        model: str = LOCAL_MODEL,
        fast: bool = False,
        beta: bool = False,
        created_at: float = 0.0,
        max_session_s: float | None = None,
        streaming: bool = True,
        webrtc: bool = False,
    ) -> None:
        if max_session_s is not None and not max_session_s > 0:
            raise ValueError(f"max_session_s must be a positive number, got {max_session_s!r}")
        if webrtc and beta:
            raise ValueError("a WebRTC call speaks the GA protocol only: webrtc=True, beta=False")
        self.fast = fast
        self.webrtc = webrtc
        self.beta = beta
        self.streaming = streaming
        self.model = model
        self.max_session_s = max_session_s
        #: ``(code, reason)`` once the session has ended: close the WebSocket with them after
        #: sending what :meth:`events_to_send` returns. ``None`` while the session goes on.
        self.close_request: tuple[int, str] | None = None
        self._expires_at: float | None = None  # on the ``now`` clock, set by start()
        self._dialect = BetaDialect() if beta else None
        self.session: JSON = default_session(model, new_item_id("sess_"), created_at)
        if max_session_s is not None:
            self.session["expires_at"] = math.ceil(created_at + max_session_s)
        self.conversation_id = new_item_id("conv_")
        self.items: list[JSON] = []  # conversation items in order (GA shape, as sent)
        self._heard: dict[str, str] = {}  # item id -> what the "model" heard in its audio
        self._pending_transcripts: set[str] = set()
        self._item_audio: dict[str, bytearray] = {}  # item id -> audio (session formats)
        self._item_words: dict[str, tuple[str, list[tuple[int, float]]]] = {}
        self._outbox: list[JSON] = []
        self._jobs: list[Job] = []
        self._responses: dict[str, _Response] = {}
        self._active: _Response | None = None  # the conversation's in-progress response
        self._last_response_id = ""  # the conversation's latest response, finished or not
        self._auto_response_pending = False
        self._tokens_used = 0
        self._audio_produced = False
        # Input audio timeline, kept in whole samples so that no clear, commit or trim rounds a
        # sample into or out of the buffer: sample ``n`` of the current input format sits at
        # ``_epoch_ms + n * 1000 / rate`` ms (the epoch moves when the format changes).
        self._in_fmt = AudioFormat.from_config(self._audio_in["format"])
        self._epoch_ms = 0.0
        self._buf = bytearray()  # always whole samples
        self._buf_start = 0  # sample index of self._buf[0]
        self._odd = b""  # a trailing half sample of PCM16, kept for the next append
        self._vad: VoiceActivityDetector | None = None
        self._speech_item: str | None = None
        self._speech_start_ms = 0.0
        self._idle_ref_ms: float | None = 0.0
        self._streams = 0  # recognition streams opened so far (the next stream's id)
        self._stream: int | None = None  # the open stream of the turn being spoken
        self._stream_fed = 0  # sample index up to which the open stream has its audio
        # WebRTC: the output audio buffer, the response whose audio the track is playing, and
        # the samples of each item's audio the track has read (what the user has heard).
        self._playout: deque[_Playout] = deque()
        self._playing: str | None = None
        self._playing_item: str | None = None
        self._played: dict[str, int] = {}
        self._track_odd = b""  # a trailing half sample of track input, kept for the next one
        self._track_in: Resampler | None = None  # track rate -> another input format's rate
        self._out_resamplers: dict[str, Resampler] = {}  # item id -> its format to the track's
        self._reset_vad()

    # --- the I/O-facing API --------------------------------------------------------------------

    def start(self, now: float = 0.0) -> None:
        """Queue ``session.created``; call once, first. ``now`` starts the session's clock."""
        if self.max_session_s is not None:
            self._expires_at = now + self.max_session_s
        self._emit("session.created", session=copy.deepcopy(self.session))

    def events_to_send(self) -> list[JSON]:
        """Server events produced so far, in order and in the connection's dialect (the outbox is
        emptied)."""
        out, self._outbox = self._outbox, []
        return out

    def jobs_to_run(self) -> list[Job]:
        """Slow work requested so far (the queue is emptied)."""
        out, self._jobs = self._jobs, []
        return out if self.close_request is None else []

    def next_deadline(self) -> float | None:
        """The earliest ``now`` at which :meth:`poll` will emit something, or ``None``."""
        if self.close_request is not None:
            return None
        times = [r.t0 + r.steps[0].at for r in self._responses.values() if r.steps]
        if self._expires_at is not None:
            times.append(self._expires_at)
        return min(times) if times else None

    def poll(self, now: float) -> None:
        """Emit every paced event due at ``now`` (and end the session if it has expired)."""
        if self._expires_at is not None and now >= self._expires_at:
            # Paced events due before the cap still go out first, in order.
            self._run_steps(self._expires_at)
            self._expire()
            return
        self._run_steps(now)

    def _run_steps(self, now: float) -> None:
        for response in list(self._responses.values()):
            while response.steps and response.t0 + response.steps[0].at <= now:
                response.steps.popleft().run()

    def _expire(self) -> None:
        if self.close_request is not None:
            return
        assert self.max_session_s is not None
        message = f"Your session hit the maximum duration of {_duration_words(self.max_session_s)}."
        self._emit(
            "error",
            error={
                "type": "invalid_request_error",
                "code": "session_expired",
                "message": message,
                "param": None,
                "event_id": None,
            },
        )
        self.close_request = (SESSION_EXPIRED_CLOSE_CODE, message)

    def receive(self, frame: str | bytes, now: float) -> None:
        """Handle one client WebSocket frame; problems become ``error`` events, never exceptions.

        A refused frame produces exactly one ``error`` event and changes nothing else. Frames
        that arrive after the session ended are dropped.
        """
        if self.close_request is not None:
            return
        event_id: str | None = None
        try:
            event, non_finite = parse_frame(frame)
            raw_id = event.get("event_id")
            if raw_id is not None:
                self._check_type(raw_id, str, "event_id")
                event_id = raw_id
            if non_finite:
                err = find_non_finite(event)
                if err is not None:
                    raise err
            if "type" not in event:
                raise ClientError("invalid_event", "The 'type' field is missing.")
            etype = event["type"]
            self._check_type(etype, str, "type")
            if etype not in CLIENT_EVENT_TYPES:
                listed = ", ".join(f"'{t}'" for t in sorted(CLIENT_EVENT_TYPES))
                raise ClientError(
                    "invalid_value",
                    f"Invalid value: '{quote(etype)}'. Supported values are: {listed}.",
                    "type",
                )
            if self._dialect is not None:
                event = self._dialect.client_event(event)
            handler = getattr(self, "_on_" + etype.replace(".", "_"))
            handler(event, now)
        except ClientError as err:
            if self._dialect is not None:
                self._dialect.rejected()
            self._error(err, event_id)
        except Exception as exc:  # a bug here must cost one event, not the connection
            log.exception("local server: unexpected error handling a client event")
            if self._dialect is not None:
                self._dialect.rejected()
            self._emit(
                "error",
                error={
                    "type": "server_error",
                    "code": "internal_error",
                    "message": f"The server had an error while processing the event "
                    f"({type(exc).__name__}: {exc}).",
                    "param": None,
                    "event_id": event_id,
                },
            )

    def append_input_audio(self, pcm: bytes, now: float) -> None:
        """Audio from a WebRTC call's microphone track: PCM16 mono at :data:`TRACK_RATE`, fed to
        the input audio buffer (VAD, recognition) as an ``input_audio_buffer.append`` of it would
        be, in the session's input format. Problems become one ``error`` event, never exceptions.
        """
        if self.close_request is not None:
            return
        data = self._track_odd + pcm
        cut = len(data) - len(data) % 2
        data, self._track_odd = data[:cut], data[cut:]
        if not data:
            return
        try:
            if self._in_fmt != _TRACK_FMT:
                # Streaming, so that 20 ms frames join without seams.
                if self._track_in is None or self._track_in.dst_rate != self._in_fmt.rate:
                    self._track_in = Resampler(TRACK_RATE, self._in_fmt.rate)
                samples = self._track_in.process(pcm16_to_float32(data))
                data = encode_from_float(samples, self._in_fmt)
            self._append(data, now)
        except Exception as exc:  # a bug here must cost one event, not the call
            log.exception("local server: unexpected error handling track audio")
            self._emit(
                "error",
                error={
                    "type": "server_error",
                    "code": "internal_error",
                    "message": f"The server had an error while processing input audio "
                    f"({type(exc).__name__}: {exc}).",
                    "param": None,
                    "event_id": None,
                },
            )

    def read_output_audio(self, n_samples: int, now: float) -> bytes:
        """The next ``n_samples`` of a WebRTC call's audio track (PCM16 mono at
        :data:`TRACK_RATE`): the output audio buffer's next audio, then silence.

        Call it as the track plays (every 20 ms, in real time): what it returns counts as played,
        for ``output_audio_buffer.started`` / ``stopped`` and for the truncation at a barge-in.
        """
        out = bytearray()
        want = 2 * n_samples
        while len(out) < want and self._playout:
            head = self._playout[0]
            if self._playing != head.response_id:
                if self._playing is not None:  # the previous response's audio ran out
                    self._emit("output_audio_buffer.stopped", response_id=self._playing)
                self._playing = head.response_id
                self._emit("output_audio_buffer.started", response_id=head.response_id)
            take = bytes(head.pcm[head.offset : head.offset + want - len(out)])
            self._playing_item = head.item_id
            head.offset += len(take)
            out += take
            self._played[head.item_id] = self._played.get(head.item_id, 0) + len(take) // 2
            if head.offset >= len(head.pcm):
                self._playout.popleft()
        if not self._playout and self._playing is not None:
            # Stopped only once no more audio is forthcoming: the response is over.
            playing = self._responses.get(self._playing)
            if playing is None or playing.status != "in_progress":
                self._emit("output_audio_buffer.stopped", response_id=self._playing)
                self._playing = self._playing_item = None
        out += bytes(want - len(out))
        return bytes(out)

    def transcription_done(self, item_id: str, text: str, now: float) -> None:
        """The recogniser heard ``text`` in ``item_id``'s audio."""
        self._pending_transcripts.discard(item_id)
        self._heard[item_id] = text
        item = self._find(item_id)
        if item is not None and self._audio_in.get("transcription") is not None:
            for i, part in enumerate(item.get("content") or []):
                if part.get("type") != "input_audio":
                    continue
                for piece in re.findall(r"\s*\S+", text):
                    self._emit(
                        "conversation.item.input_audio_transcription.delta",
                        item_id=item_id,
                        content_index=i,
                        delta=piece,
                    )
                part["transcript"] = text
                seconds = self._in_fmt.duration_ms(len(self._item_audio.get(item_id, b""))) / 1000
                self._emit(
                    "conversation.item.input_audio_transcription.completed",
                    item_id=item_id,
                    content_index=i,
                    transcript=text,
                    usage={"type": "duration", "seconds": max(1, round(seconds))},
                )
        for response in list(self._responses.values()):
            if response.waiting:
                self._maybe_generate(response)

    def transcription_failed(self, item_id: str, message: str, now: float) -> None:
        """The recogniser failed on ``item_id`` (the item stays without a transcript)."""
        self._pending_transcripts.discard(item_id)
        self._heard[item_id] = ""
        if self._audio_in.get("transcription") is not None:
            self._emit(
                "conversation.item.input_audio_transcription.failed",
                item_id=item_id,
                content_index=0,
                error={
                    "type": "server_error",
                    "code": "transcription_failed",
                    "message": message,
                    "param": None,
                },
            )
        for response in list(self._responses.values()):
            if response.waiting:
                self._maybe_generate(response)

    def generation_done(self, response_id: str, outputs: Sequence[Output], now: float) -> None:
        """The responder finished: schedule the response's outputs from ``now`` (a spoken reply
        asks for its first segment's speech with a :class:`SpeakJob`)."""
        response = self._responses.get(response_id)
        if response is None or response.status != "in_progress":
            return  # cancelled meanwhile
        response.generating = False
        response.t0 = now
        response.at = 0.0
        response.plan = deque(outputs)
        self._advance(response)
        self.poll(now)

    def speech_done(self, response_id: str, speech: Speech, now: float) -> None:
        """The segment a :class:`SpeakJob` asked for is synthesised: schedule its audio from
        ``now`` (or after the audio before it, paced) and ask for the next segment."""
        r = self._responses.get(response_id)
        if r is None or r.status != "in_progress" or r.speaking is None:
            return  # cancelled meanwhile
        self._schedule_segment(r, r.speaking, speech, now)
        self._next_segment(r)
        self._advance(r)
        self.poll(now)

    def speech_failed(self, response_id: str, message: str, now: float) -> None:
        """The synthesiser failed: the response ends with status ``failed``."""
        self.generation_failed(response_id, message, now)

    def generation_failed(self, response_id: str, message: str, now: float) -> None:
        """The responder failed: the response ends with status ``failed``."""
        response = self._responses.get(response_id)
        if response is None or response.status != "in_progress":
            return
        self._finish(
            response,
            "failed",
            {
                "type": "failed",
                "error": {"type": "server_error", "code": "responder_error", "message": message},
            },
        )

    # --- helpers -------------------------------------------------------------------------------

    @property
    def _audio_in(self) -> JSON:
        result: JSON = self.session["audio"]["input"]
        return result

    @property
    def _audio_out(self) -> JSON:
        result: JSON = self.session["audio"]["output"]
        return result

    def _emit(self, etype: str, **fields: Any) -> None:
        if self.close_request is not None:
            return  # the session has ended: nothing more goes out
        event: JSON = {"type": etype, "event_id": new_item_id("event_")}
        event.update(fields)
        if self._dialect is None:
            self._outbox.append(event)
            return
        # Translated now, not when drained, so that it reads the dialect's state as it is now.
        translated = self._dialect.server_event(event)
        if translated is not None:
            self._outbox.append(translated)

    def _error(self, err: ClientError, event_id: str | None) -> None:
        self._emit(
            "error",
            error={
                "type": "invalid_request_error",
                "code": err.code,
                "message": err.message,
                "param": err.param,
                "event_id": event_id,
            },
        )

    @staticmethod
    def _check_type(value: Any, expected: type | tuple[type, ...], param: str) -> None:
        types = expected if isinstance(expected, tuple) else (expected,)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = {
                str: "a string",
                int: "an integer",
                dict: "an object",
                list: "an array",
                bool: "a boolean",
            }
            want = " or ".join(names.get(t, t.__name__) for t in types)
            got = "null" if value is None else names.get(type(value), type(value).__name__)
            raise ClientError(
                "invalid_type",
                f"Invalid type for '{param}': expected {want}, but got {got} instead.",
                param,
            )

    @staticmethod
    def _require(event: JSON, key: str, param: str | None = None) -> Any:
        if key not in event:
            p = param or key
            raise ClientError(
                "missing_required_parameter", f"Missing required parameter: '{p}'.", p
            )
        return event[key]

    def _find(self, item_id: str) -> JSON | None:
        for item in self.items:
            if item["id"] == item_id:
                return item
        return None

    def _index(self, item_id: str) -> int:
        for i, item in enumerate(self.items):
            if item["id"] == item_id:
                return i
        return -1

    def _previous_id(self, item_id: str) -> str | None:
        i = self._index(item_id)
        return self.items[i - 1]["id"] if i > 0 else None

    def _add_item(
        self, item: JSON, previous_item_id: str | None = None, *, at_end: bool = True
    ) -> str | None:
        """Insert ``item``; returns its previous item's id. ``previous_item_id="root"`` = first."""
        if at_end or previous_item_id is None:
            self.items.append(item)
        elif previous_item_id == "root":
            self.items.insert(0, item)
        else:
            self.items.insert(self._index(previous_item_id) + 1, item)
        return self._previous_id(item["id"])

    # --- session.update ------------------------------------------------------------------------

    def configure(self, update: JSON) -> None:
        """Apply a session config as ``session.update`` would, without an event: a call's
        ``session`` form field, before :meth:`start` (so ``session.created`` shows it).

        Raises:
            ClientError: the config is invalid; nothing is applied.
        """
        self._apply_session(update)

    def _on_session_update(self, event: JSON, now: float) -> None:
        self._apply_session(self._require(event, "session"))
        self._emit("session.updated", session=copy.deepcopy(self.session))

    def _apply_session(self, update: Any) -> None:
        self.session = apply_session_update(
            self.session, update, audio_was_produced=self._audio_produced
        )
        # A client may name a model (checked above, as the API checks it); the session goes on
        # reporting the one that answers, so nothing recorded here is priced as that model.
        self.session["model"] = self.model
        new_fmt = AudioFormat.from_config(self._audio_in["format"])
        if new_fmt != self._in_fmt:
            # Buffered audio cannot be read in the new format: it is dropped, but the time it
            # took stays on the timeline (audio_start_ms counts all audio written).
            self._epoch_ms = self._position_ms
            self._in_fmt = new_fmt
            self._buf.clear()
            self._buf_start = 0
            self._odd = b""
        self._reset_vad()

    def _reset_vad(self) -> None:
        """A fresh detector from the current position: nothing fed before it (samples waiting
        for a full frame, the resampler's tail) can reach a later turn. A turn being spoken is
        dropped, and its recognition stream with it."""
        td = self._audio_in.get("turn_detection")
        self._speech_item = None
        if self._stream is not None:
            self._jobs.append(StreamJob(self._stream, b"", self._in_fmt, end=True))
            self._stream = None
        if td is None:
            self._vad = None
            return
        self._vad = VoiceActivityDetector(
            VadConfig.from_turn_detection(td), self._in_fmt.rate, origin_ms=self._position_ms
        )

    # --- input audio buffer --------------------------------------------------------------------

    def _ms_at(self, sample: int) -> float:
        return self._epoch_ms + sample * 1000 / self._in_fmt.rate

    def _sample_at(self, ms: float) -> int:
        # round, not floor: ms computed from a sample index must map back to that index.
        return round((ms - self._epoch_ms) * self._in_fmt.rate / 1000)

    @property
    def _position(self) -> int:
        """Samples written in the current format (the next sample's index)."""
        return self._buf_start + len(self._buf) // self._in_fmt.bytes_per_sample

    @property
    def _position_ms(self) -> float:
        return self._ms_at(self._position)

    def _on_input_audio_buffer_append(self, event: JSON, now: float) -> None:
        audio = self._require(event, "audio")
        self._check_type(audio, str, "audio")
        if len(audio) > MAX_APPEND_B64_CHARS:
            raise ClientError(
                "invalid_value",
                f"Invalid 'audio': {len(audio)} characters of base64, more than the "
                f"{MAX_APPEND_B64_CHARS} one input_audio_buffer.append may carry. Split the audio "
                f"into smaller appends.",
                "audio",
            )
        try:
            data = b64decode_audio(audio)
        except ValueError:
            raise ClientError(
                "invalid_value",
                f"Invalid 'audio': expected base64-encoded audio bytes, got {quote(audio)!r}.",
                "audio",
            ) from None
        if self._in_fmt.bytes_per_sample == 2:
            data = self._odd + data
            cut = len(data) - len(data) % 2
            data, self._odd = data[:cut], data[cut:]
        self._append(data, now)

    def _append(self, data: bytes, now: float) -> None:
        """Whole samples of input audio (session input format) into the buffer and the VAD."""
        if not data:
            return
        self._buf.extend(data)
        if self._vad is not None:
            samples = decode_to_float(data, self._in_fmt)
            for ev in self._vad.feed(samples):
                if ev.kind == "start":
                    self._speech_started(ev.ms, now)
                else:
                    self._speech_stopped(ev.ms, now)
            if self._stream is not None:
                self._feed_stream(self._position)
            if self._speech_item is None:
                self._check_idle(now)
                self._trim(self._position_ms - VAD_KEEP_MS)
        else:
            self._trim(self._position_ms - MAX_BUFFER_MS)

    def _trim(self, before_ms: float) -> None:
        """Drop buffered audio before ``before_ms`` on the input timeline."""
        self._drop_samples(self._sample_at(before_ms) - self._buf_start)

    def _drop_samples(self, n: int) -> None:
        n = min(max(n, 0), len(self._buf) // self._in_fmt.bytes_per_sample)
        del self._buf[: n * self._in_fmt.bytes_per_sample]
        self._buf_start += n

    def _slice(self, start_ms: float, end_ms: float) -> bytes:
        width = self._in_fmt.bytes_per_sample
        a = max(self._sample_at(start_ms) - self._buf_start, 0) * width
        b = max(self._sample_at(end_ms) - self._buf_start, 0) * width
        return bytes(self._buf[a:b])

    def _speech_started(self, start_ms: float, now: float) -> None:
        td = self._audio_in["turn_detection"] or {}
        item_id = new_item_id("item_")
        self._speech_item, self._speech_start_ms = item_id, start_ms
        self._emit(
            "input_audio_buffer.speech_started",
            audio_start_ms=math.floor(start_ms),
            item_id=item_id,
        )
        if td.get("interrupt_response", True) and self._active is not None:
            self._cancel(self._active, "turn_detected")
        if td.get("interrupt_response", True) and self.webrtc:
            self._interrupt_playout()
        if self.streaming:
            if self._stream is not None:  # cannot happen (a stop closes it): never leak one
                self._jobs.append(StreamJob(self._stream, b"", self._in_fmt, end=True))
            # Recognition starts now, padding included, and follows the appends (see _feed_stream).
            self._stream, self._streams = self._streams, self._streams + 1
            self._stream_fed = max(self._sample_at(start_ms), self._buf_start)

    def _feed_stream(self, upto: int, *, end_item: str | None = None) -> None:
        """Hand the open stream the audio it lacks up to sample ``upto``; with ``end_item``,
        close it: that item's transcript is what it heard."""
        assert self._stream is not None
        width = self._in_fmt.bytes_per_sample
        a = max(self._stream_fed - self._buf_start, 0) * width
        b = max(upto - self._buf_start, 0) * width
        data = bytes(self._buf[a:b]) if b > a else b""
        self._stream_fed = max(upto, self._stream_fed)
        if end_item is not None:
            self._jobs.append(StreamJob(self._stream, data, self._in_fmt, True, end_item))
            self._stream = None
        elif data:
            self._jobs.append(StreamJob(self._stream, data, self._in_fmt))

    def _speech_stopped(self, end_ms: float, now: float) -> None:
        item_id = self._speech_item or new_item_id("item_")
        self._speech_item = None
        end_ms = min(end_ms, self._position_ms)
        self._emit(
            "input_audio_buffer.speech_stopped", audio_end_ms=math.floor(end_ms), item_id=item_id
        )
        audio = self._slice(self._speech_start_ms, end_ms)
        streamed = self._stream is not None
        if streamed:
            self._feed_stream(self._sample_at(end_ms), end_item=item_id)
        self._trim(end_ms)
        self._commit_audio(item_id, audio, now, streamed=streamed)
        self._idle_ref_ms = end_ms
        td = self._audio_in["turn_detection"] or {}
        if td.get("create_response", True):
            self._auto_response(now)

    def _check_idle(self, now: float) -> None:
        td = self._audio_in.get("turn_detection") or {}
        timeout = td.get("idle_timeout_ms")
        if not timeout or self._idle_ref_ms is None or self._active is not None:
            return
        position = self._position_ms
        if position - self._idle_ref_ms < timeout:
            return
        item_id = new_item_id("item_")
        start = int(self._idle_ref_ms)
        self._emit(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=start,
            audio_end_ms=int(position),
            item_id=item_id,
        )
        audio = self._slice(start, position)
        self._trim(position)
        self._commit_audio(item_id, audio, now)
        self._idle_ref_ms = None  # re-armed when the next response finishes
        if td.get("create_response", True):
            self._auto_response(now)

    def _commit_audio(
        self, item_id: str, audio: bytes, now: float, *, streamed: bool = False
    ) -> None:
        """Commit ``audio`` as a user item; its transcript is requested unless a recognition
        stream (``streamed``) already has it."""
        previous = self.items[-1]["id"] if self.items else None
        self._emit("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        item = {
            "id": item_id,
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._add_item(item)
        self._item_audio[item_id] = bytearray(audio)
        self._emit("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item))
        self._emit("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item))
        if streamed:
            self._pending_transcripts.add(item_id)
        else:
            self._request_transcription(item_id, audio, self._in_fmt)

    def _request_transcription(self, item_id: str, audio: bytes, fmt: AudioFormat) -> None:
        self._pending_transcripts.add(item_id)
        self._jobs.append(TranscribeJob(item_id, audio, fmt))

    def _on_input_audio_buffer_commit(self, event: JSON, now: float) -> None:
        duration = self._position_ms - self._ms_at(self._buf_start)
        if duration < MIN_COMMIT_MS:
            raise ClientError(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {duration:.2f}ms of audio.",
            )
        audio = bytes(self._buf)
        self._empty_buffer()  # a manual commit during VAD speech also closes that turn
        self._commit_audio(new_item_id("item_"), audio, now)

    def _on_input_audio_buffer_clear(self, event: JSON, now: float) -> None:
        self._empty_buffer()
        self._emit("input_audio_buffer.cleared")

    def _empty_buffer(self) -> None:
        """Drop every buffered byte, the half sample included, and restart the detector here, so
        the next turn is made of later audio only; the timeline keeps counting."""
        self._drop_samples(len(self._buf))
        self._odd = b""
        self._reset_vad()

    def _on_output_audio_buffer_clear(self, event: JSON, now: float) -> None:
        if self.webrtc:
            # The client asked to stop the audio (after its own response.cancel, as the API
            # asks): the buffer empties; truncating is the client's call, as on a WebSocket.
            response_id = self._playing or (
                self._playout[0].response_id if self._playout else self._last_response_id
            )
            self._clear_playout()
            self._emit("output_audio_buffer.cleared", response_id=response_id)
            return
        # WebRTC-only in the real API; on a WebSocket there is no server-side playback buffer,
        # so acknowledging is the harmless, honest answer. response_id is required (a string):
        # the latest response's audio is what a client would be clearing ("" before any).
        self._emit("output_audio_buffer.cleared", response_id=self._last_response_id)

    def _clear_playout(self) -> None:
        self._playout.clear()
        self._playing = None
        self._playing_item = None

    def _interrupt_playout(self) -> None:
        """A barge-in on a call: truncate each item whose audio was playing or waiting to play
        at the audio the track actually read, then clear the output audio buffer."""
        if self._playing is None and not self._playout:
            return
        response_id = self._playing or self._playout[0].response_id
        cut = [self._playing_item] if self._playing_item is not None else []
        cut += [p.item_id for p in self._playout if p.item_id not in cut]
        for item_id in cut:
            if self._find(item_id) is None:  # out of band, or deleted: nothing to truncate
                continue
            fmt = AudioFormat.from_config(self._audio_out["format"])
            stored = len(self._item_audio.get(item_id, b"")) // fmt.bytes_per_sample
            have_ms = stored * 1000 // fmt.rate
            heard_ms = self._played.get(item_id, 0) * 1000 // TRACK_RATE
            with contextlib.suppress(ClientError):  # e.g. already truncated shorter by a client
                self._truncate(item_id, 0, min(heard_ms, have_ms))
        self._clear_playout()
        self._emit("output_audio_buffer.cleared", response_id=response_id)

    # --- conversation items --------------------------------------------------------------------

    def _validate_item(self, item: Any, param: str) -> JSON:
        self._check_type(item, dict, param)
        kind = self._require(item, "type", f"{param}.type")
        _check_enum(kind, ("message", "function_call", "function_call_output"), f"{param}.type")
        item_id = item.get("id")
        if item_id is not None:
            self._check_type(item_id, str, f"{param}.id")
            if len(item_id) > _ITEM_ID_MAX:
                raise ClientError(
                    "string_above_max_length",
                    f"Invalid '{param}.id': string too long. Expected a string with maximum length "
                    f"{_ITEM_ID_MAX}, but got a string with length {len(item_id)} instead.",
                    f"{param}.id",
                )
            if self._find(item_id) is not None:
                raise ClientError(
                    "item_already_exists",
                    f"Error adding item: the item with id '{item_id}' already exists.",
                    f"{param}.id",
                )
        # Read-only fields a client may echo back from the server's items: checked, then ignored.
        if item.get("object") is not None:
            _check_enum(item["object"], ("realtime.item",), f"{param}.object")
        if item.get("status") is not None:
            _check_enum(
                item["status"], ("completed", "incomplete", "in_progress"), f"{param}.status"
            )
        new_id = item_id or new_item_id("item_")
        if kind == "message":
            role = self._require(item, "role", f"{param}.role")
            _check_enum(role, ("user", "assistant", "system"), f"{param}.role")
            content = self._require(item, "content", f"{param}.content")
            self._check_type(content, list, f"{param}.content")
            allowed = {
                "user": ("input_text", "input_audio", "input_image"),
                "system": ("input_text",),
                "assistant": ("output_text", "output_audio"),
            }[role]
            parts = [self._validate_part(part, role, allowed, f"{param}.content[{i}]")
                     for i, part in enumerate(content)]  # fmt: skip
            return {
                "id": new_id,
                "type": "message",
                "status": "completed",
                "role": role,
                "content": parts,
            }
        if kind == "function_call":
            name = check_str(self._require(item, "name", f"{param}.name"), f"{param}.name")
            arguments = check_str(
                self._require(item, "arguments", f"{param}.arguments"), f"{param}.arguments"
            )
            call_id = check_str(item.get("call_id"), f"{param}.call_id", nullable=True)
            return {
                "id": new_id,
                "type": "function_call",
                "status": "completed",
                "name": name,
                "call_id": call_id or new_item_id("call_")[:21],
                "arguments": arguments,
            }
        call_id = check_str(self._require(item, "call_id", f"{param}.call_id"), f"{param}.call_id")
        output = check_str(self._require(item, "output", f"{param}.output"), f"{param}.output")
        return {"id": new_id, "type": "function_call_output", "call_id": call_id, "output": output}

    def _validate_part(self, part: Any, role: str, allowed: tuple[str, ...], p: str) -> JSON:
        self._check_type(part, dict, p)
        ptype = self._require(part, "type", f"{p}.type")
        if not any(ptype == a and isinstance(ptype, str) for a in allowed):
            listed = ", ".join(f"'{a}'" for a in allowed)
            raise ClientError(
                "invalid_value",
                f"Invalid value: '{quote(str(ptype))}'. Supported values for a {role} message "
                f"are: {listed}.",
                f"{p}.type",
            )
        # Every string field a part may carry is checked, whichever the part's type.
        for key in ("text", "transcript", "audio", "image_url"):
            check_str(part.get(key), f"{p}.{key}", nullable=True)
        if part.get("detail") is not None:
            _check_enum(part["detail"], ("auto", "low", "high"), f"{p}.detail")
        if ptype in ("input_text", "output_text"):
            text = check_str(self._require(part, "text", f"{p}.text"), f"{p}.text")
            return {"type": ptype, "text": text}
        if ptype == "input_audio":
            return {"type": "input_audio", "transcript": part.get("transcript"),
                    "_audio": part.get("audio")}  # fmt: skip
        if ptype == "output_audio":
            return {"type": "output_audio", "transcript": part.get("transcript")}
        return {
            "type": "input_image",
            "image_url": part.get("image_url"),
            "detail": part.get("detail") or "auto",
        }

    def _on_conversation_item_create(self, event: JSON, now: float) -> None:
        item = self._validate_item(self._require(event, "item"), "item")
        previous = event.get("previous_item_id")
        if previous is not None:
            self._check_type(previous, str, "previous_item_id")
            if previous != "root" and self._find(previous) is None:
                raise ClientError(
                    "item_not_found",
                    f"Error adding item: the previous item with id '{quote(previous)}' does not exist.",
                    "previous_item_id",
                )
        audio_parts: list[bytes] = []
        for part in item.get("content") or []:
            if "_audio" in part:
                b64 = part.pop("_audio")
                if b64:
                    try:
                        audio_parts.append(b64decode_audio(b64))
                    except ValueError:
                        raise ClientError(
                            "invalid_value",
                            "Invalid 'item.content.audio': expected base64-encoded audio bytes.",
                            "item.content.audio",
                        ) from None
        prev_id = self._add_item(item, previous, at_end=previous is None)
        if audio_parts:
            audio = b"".join(audio_parts)
            self._item_audio[item["id"]] = bytearray(audio)
            transcripts = [
                p.get("transcript") for p in item["content"] if p["type"] == "input_audio"
            ]
            if any(transcripts):
                self._heard[item["id"]] = " ".join(t for t in transcripts if t)
            else:
                self._request_transcription(item["id"], audio, self._in_fmt)
        self._emit("conversation.item.added", previous_item_id=prev_id, item=copy.deepcopy(item))
        self._emit("conversation.item.done", previous_item_id=prev_id, item=copy.deepcopy(item))

    def _on_conversation_item_retrieve(self, event: JSON, now: float) -> None:
        item_id = self._require(event, "item_id")
        self._check_type(item_id, str, "item_id")
        item = self._find(item_id)
        if item is None:
            raise ClientError(
                "item_not_found",
                f"Error retrieving item: the item with id '{quote(item_id)}' does not exist.",
                "item_id",
            )
        out = copy.deepcopy(item)
        audio = self._item_audio.get(item_id)
        if audio is not None:
            for part in out.get("content") or []:
                if part.get("type") in ("input_audio", "output_audio"):
                    part["audio"] = b64encode_audio(audio)
        self._emit("conversation.item.retrieved", item=out)

    def _on_conversation_item_delete(self, event: JSON, now: float) -> None:
        item_id = self._require(event, "item_id")
        self._check_type(item_id, str, "item_id")
        i = self._index(item_id)
        if i < 0:
            raise ClientError(
                "item_not_found",
                f"Error deleting item: the item with id '{quote(item_id)}' does not exist.",
                "item_id",
            )
        del self.items[i]
        self._item_audio.pop(item_id, None)
        self._emit("conversation.item.deleted", item_id=item_id)

    def _on_conversation_item_truncate(self, event: JSON, now: float) -> None:
        item_id = self._require(event, "item_id")
        self._check_type(item_id, str, "item_id")
        content_index = self._require(event, "content_index")
        self._check_type(content_index, int, "content_index")
        audio_end_ms = self._require(event, "audio_end_ms")
        self._check_type(audio_end_ms, int, "audio_end_ms")
        if audio_end_ms < 0:
            raise ClientError(
                "integer_below_min_value",
                f"Invalid 'audio_end_ms': integer below minimum value. Expected a value >= 0, "
                f"but got {audio_end_ms} instead.",
                "audio_end_ms",
            )
        self._truncate(item_id, content_index, audio_end_ms)

    def _truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> None:
        """Cut an assistant audio item at ``audio_end_ms`` and forget its unheard transcript.

        Raises:
            ClientError: no such item, not an output audio part, or not that much audio.
        """
        item = self._find(item_id)
        if item is None:
            raise ClientError(
                "item_not_found",
                f"Error truncating item: the item with id '{quote(item_id)}' does not exist.",
                "item_id",
            )
        content = item.get("content") or []
        if (
            item.get("type") != "message"
            or item.get("role") != "assistant"
            or not 0 <= content_index < len(content)
            or content[content_index].get("type") != "output_audio"
        ):
            raise ClientError(
                "unsupported_content_type",
                "Only model output audio messages can be truncated",
                "item_id",
            )
        fmt = AudioFormat.from_config(self._audio_out["format"])
        audio = self._item_audio.get(item_id, bytearray())
        # Whole milliseconds of audio, as the API counts them: asking for more is an error.
        duration = len(audio) // fmt.bytes_per_sample * 1000 // fmt.rate
        if audio_end_ms > duration:
            raise ClientError(
                "invalid_value",
                f"Audio content of {duration}ms is already shorter than {audio_end_ms}ms",
                "audio_end_ms",
            )
        del audio[fmt.bytes_for_ms(audio_end_ms) :]
        # The spec: truncating "will delete the server-side text transcript to ensure there is
        # not text in the context that hasn't been heard by the user". The item's transcript is
        # deleted; the model keeps the audio before audio_end_ms, which a text responder can only
        # see as the words spoken in it (kept apart, in _heard, and given to the responder).
        text, words = self._item_words.get(item_id, ("", []))
        heard_end = 0
        for end, ms in words:
            if ms < audio_end_ms:
                heard_end = end
        content[content_index]["transcript"] = ""
        self._heard[item_id] = text[:heard_end].strip()
        self._emit(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=content_index,
            audio_end_ms=audio_end_ms,
        )

    # --- responses -----------------------------------------------------------------------------

    def _on_response_create(self, event: JSON, now: float) -> None:
        params = event.get("response")
        if params is None:
            params = {}
        self._check_type(params, dict, "response")
        allowed = (
            "conversation", "metadata", "prompt", "input", "instructions", "tools",
            "tool_choice", "output_modalities", "max_output_tokens", "audio",
        )  # fmt: skip
        for key in params:
            if key not in allowed:
                p = f"response.{quote(key)}"
                raise ClientError("unknown_parameter", f"Unknown parameter: '{p}'.", p)
        conversation = params.get("conversation", "auto")
        self._check_type(conversation, str, "response.conversation")
        _check_enum(conversation, ("auto", "none"), "response.conversation")
        in_conversation = conversation == "auto"
        if in_conversation and self._active is not None:
            raise ClientError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self._active.id}. "
                f"Wait until the response is finished before creating a new one.",
            )
        s = self.session
        instructions = check_str(
            params.get("instructions", s["instructions"]), "response.instructions"
        )
        assert instructions is not None  # not nullable
        tools = (
            validate_tools(params["tools"], "response.tools") if "tools" in params else s["tools"]
        )
        tool_choice = (
            check_tool_choice(params["tool_choice"], "response.tool_choice")
            if "tool_choice" in params
            else s["tool_choice"]
        )
        modalities = (
            check_output_modalities(params["output_modalities"], "response.output_modalities")
            if "output_modalities" in params
            else list(s["output_modalities"])
        )
        max_tokens = (
            check_max_output_tokens(params["max_output_tokens"], "response.max_output_tokens")
            if "max_output_tokens" in params
            else s["max_output_tokens"]
        )
        metadata = check_metadata(params.get("metadata"), "response.metadata")
        check_prompt(params.get("prompt"), "response.prompt")
        voice, fmt_json, speed = (
            self._audio_out["voice"],
            self._audio_out["format"],
            self._audio_out["speed"],
        )
        audio = params.get("audio")
        if audio is not None:
            self._check_type(audio, dict, "response.audio")
            for key in audio:
                if key != "output":
                    p = f"response.audio.{quote(key)}"
                    raise ClientError("unknown_parameter", f"Unknown parameter: '{p}'.", p)
            out = audio.get("output")
            if out is None:
                out = {}
            self._check_type(out, dict, "response.audio.output")
            probe = apply_session_update(
                self.session,
                {"type": "realtime", "audio": {"output": {k: v for k, v in out.items()}}},
                audio_was_produced=self._audio_produced,
            )
            voice, fmt_json = probe["audio"]["output"]["voice"], probe["audio"]["output"]["format"]
        input_items: list[JSON] | None = None
        if "input" in params:
            raw = params["input"]
            self._check_type(raw, list, "response.input")
            input_items = []
            for i, entry in enumerate(raw):
                self._check_type(entry, dict, f"response.input[{i}]")
                if entry.get("type") == "item_reference":
                    ref = self._require(entry, "id", f"response.input[{i}].id")
                    self._check_type(ref, str, f"response.input[{i}].id")
                    found = self._find(ref)
                    if found is None:
                        raise ClientError(
                            "item_not_found",
                            f"Item with id '{quote(ref)}' not found in the conversation.",
                            f"response.input[{i}].id",
                        )
                    input_items.append(found)
                else:
                    validated = self._validate_item(entry, f"response.input[{i}]")
                    for part in validated.get("content") or []:
                        part.pop("_audio", None)
                    input_items.append(validated)
        response = _Response(
            id=new_item_id("resp_"),
            in_conversation=in_conversation,
            modalities=modalities,
            instructions=instructions,
            tools=tools,
            tool_choice=tool_choice,
            max_output_tokens=max_tokens,
            voice=voice,
            fmt_json=dict(fmt_json),
            speed=float(speed),
            metadata=metadata,
            input_items=input_items,
        )
        self._start_response(response, now)

    def _auto_response(self, now: float) -> None:
        if self._active is not None:
            self._auto_response_pending = True
            return
        s = self.session
        response = _Response(
            id=new_item_id("resp_"),
            in_conversation=True,
            modalities=list(s["output_modalities"]),
            instructions=s["instructions"],
            tools=s["tools"],
            tool_choice=s["tool_choice"],
            max_output_tokens=s["max_output_tokens"],
            voice=self._audio_out["voice"],
            fmt_json=dict(self._audio_out["format"]),
            speed=float(self._audio_out["speed"]),
            metadata=None,
            input_items=None,
        )
        self._start_response(response, now)

    def _response_json(self, r: _Response, usage: JSON | None = None) -> JSON:
        return {
            "object": "realtime.response",
            "id": r.id,
            "status": r.status,
            "status_details": None,
            "output": copy.deepcopy(r.output),
            "conversation_id": self.conversation_id if r.in_conversation else None,
            "output_modalities": list(r.modalities),
            "max_output_tokens": r.max_output_tokens,
            # A response reports a custom voice ({"id": ...}) by its id: the schema of response
            # objects has only strings there.
            "audio": {
                "output": {
                    "format": dict(r.fmt_json),
                    "voice": r.voice if isinstance(r.voice, str) else r.voice.get("id"),
                }
            },
            "usage": usage,
            "metadata": r.metadata,
        }

    def _start_response(self, response: _Response, now: float) -> None:
        self._responses[response.id] = response
        if response.in_conversation:
            self._active = response
            self._last_response_id = response.id
        self._emit("response.created", response=self._response_json(response))
        self._maybe_generate(response)

    def _context(self, response: _Response) -> list[JSON]:
        items = response.input_items if response.input_items is not None else self.items
        out = []
        for item in items:
            copied = copy.deepcopy(item)
            heard = self._heard.get(item["id"])
            for part in copied.get("content") or []:
                audio_part = part.get("type") in ("input_audio", "output_audio")
                if audio_part and not part.get("transcript") and heard:
                    part["transcript"] = heard
            out.append(copied)
        return out

    def _maybe_generate(self, response: _Response) -> None:
        if response.generating or response.status != "in_progress" or response.steps:
            return
        items = response.input_items if response.input_items is not None else self.items
        if any(item["id"] in self._pending_transcripts for item in items):
            response.waiting = True
            return
        response.waiting = False
        response.generating = True
        context = self._context(response)
        response.input_text_tokens, response.input_audio_tokens = self._estimate_input(
            response, context
        )
        request = ResponseRequest(
            instructions=response.instructions,
            items=tuple(context),
            tools=tuple(response.tools),
            tool_choice=response.tool_choice,
            output_modalities=tuple(response.modalities),
            metadata=response.metadata,
        )
        self._jobs.append(GenerateJob(response.id, request))

    def _estimate_input(self, response: _Response, context: list[JSON]) -> tuple[int, int]:
        chars = (
            len(response.instructions) + len(json.dumps(response.tools))
            if response.tools
            else len(response.instructions)
        )
        audio_ms = 0.0
        for item in context:
            if item["type"] == "message":
                for part in item.get("content") or []:
                    chars += len(part.get("text") or "")
                    if part.get("type") == "input_audio":
                        audio_ms += self._in_fmt.duration_ms(
                            len(self._item_audio.get(item["id"], b""))
                        )
                    elif part.get("type") == "output_audio":
                        audio_ms += AudioFormat.from_config(self._audio_out["format"]).duration_ms(
                            len(self._item_audio.get(item["id"], b""))
                        )
            else:
                chars += len(item.get("arguments") or "") + len(item.get("output") or "")
        return math.ceil(chars / CHARS_PER_TOKEN), math.ceil(
            audio_ms / 1000 * INPUT_AUDIO_TOKENS_PER_S
        )

    # -- scheduling the response's events --

    def _advance(self, r: _Response) -> None:
        """Schedule the generated outputs in order, up to a spoken reply still being synthesised;
        once all are scheduled, the response's end."""
        while r.speaking is None and r.plan:
            out = r.plan.popleft()
            if isinstance(out, FunctionCall):
                self._schedule_call(r, out, r.at)
            elif isinstance(out, TextReply):
                if "audio" in r.modalities:
                    self._start_speaking(r, out.text)
                else:
                    self._schedule_text(r, out.text, r.at)
        if r.speaking is None and not r.plan and not r.finish_scheduled:
            r.finish_scheduled = True
            r.steps.append(_Step(r.at, lambda: self._finish(r, "completed", None)))

    def _open_item(self, r: _Response, item: JSON) -> int:
        index = len(r.output)
        r.output.append(item)
        self._emit(
            "response.output_item.added",
            response_id=r.id,
            output_index=index,
            item=copy.deepcopy(item),
        )
        if r.in_conversation:
            prev = self._add_item(item)
            self._emit("conversation.item.added", previous_item_id=prev, item=copy.deepcopy(item))
        return index

    def _close_item(self, r: _Response, item: JSON, index: int, status: str = "completed") -> None:
        item["status"] = status
        if r.in_conversation:
            prev = self._previous_id(item["id"]) if self._find(item["id"]) else None
            self._emit("conversation.item.done", previous_item_id=prev, item=copy.deepcopy(item))
        self._emit(
            "response.output_item.done",
            response_id=r.id,
            output_index=index,
            item=copy.deepcopy(item),
        )

    def _schedule_call(self, r: _Response, call: FunctionCall, at: float) -> None:
        item: JSON = {
            "id": new_item_id("item_"),
            "type": "function_call",
            "status": "in_progress",
            "name": call.name,
            "call_id": call.call_id or new_item_id("call_")[:21],
            "arguments": "",
        }
        state: dict[str, int] = {}

        def run() -> None:
            state["index"] = index = self._open_item(r, item)
            args = call.arguments
            for i in range(0, len(args), ARGUMENT_DELTA_CHARS):
                self._emit(
                    "response.function_call_arguments.delta",
                    response_id=r.id,
                    item_id=item["id"],
                    output_index=index,
                    call_id=item["call_id"],
                    delta=args[i : i + ARGUMENT_DELTA_CHARS],
                )
            item["arguments"] = args
            r.output_text_chars += len(args)
            self._emit(
                "response.function_call_arguments.done",
                response_id=r.id,
                item_id=item["id"],
                output_index=index,
                call_id=item["call_id"],
                name=call.name,
                arguments=args,
            )
            self._close_item(r, item, index)

        r.steps.append(_Step(at, run))

    def _schedule_text(self, r: _Response, text: str, at: float) -> None:
        item: JSON = {
            "id": new_item_id("item_"),
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }

        def run() -> None:
            index = self._open_item(r, item)
            ids = {
                "response_id": r.id,
                "item_id": item["id"],
                "output_index": index,
                "content_index": 0,
            }
            self._emit("response.content_part.added", **ids, part={"type": "text", "text": ""})
            for piece in re.findall(r"\s*\S+\s*$|\s*\S+", text):
                self._emit("response.output_text.delta", **ids, delta=piece)
            r.output_text_chars += len(text)
            self._emit("response.output_text.done", **ids, text=text)
            self._emit("response.content_part.done", **ids, part={"type": "text", "text": text})
            item["content"] = [{"type": "output_text", "text": text}]
            self._close_item(r, item, index)

        r.steps.append(_Step(at, run))

    def _start_speaking(self, r: _Response, text: str) -> None:
        """Open a spoken reply's item now (on the schedule) and ask for its first segment."""
        item: JSON = {
            "id": new_item_id("item_"),
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        segments = split_segments(text) if self.streaming else [text] if text.strip() else []
        sp = _Speaking(
            item,
            text,
            deque(segments),
            AudioFormat.from_config(r.fmt_json),
            r.voice if isinstance(r.voice, str) else "alloy",
        )
        r.speaking = sp

        def open_() -> None:
            index = self._open_item(r, item)
            # The part exists from here on (the added events above showed no content yet), so a
            # client that barges in mid-reply can truncate it before cancelling the response.
            item["content"] = [{"type": "output_audio", "transcript": ""}]
            ids = {
                "response_id": r.id,
                "item_id": item["id"],
                "output_index": index,
                "content_index": 0,
            }
            self._emit(
                "response.content_part.added", **ids, part={"type": "audio", "transcript": ""}
            )
            r.open_part = {"item": item, "kind": "audio", "sent": "", "ids": ids, "index": index}
            self._item_audio[item["id"]] = bytearray()
            # The cuts grow as segments are scheduled; a truncation reads them as they are.
            self._item_words[item["id"]] = (text, sp.cuts)
            self._audio_produced = True

        r.steps.append(_Step(r.at, open_))
        self._next_segment(r)

    def _next_segment(self, r: _Response) -> None:
        """Ask for the speaking reply's next segment, or close the reply when none is left."""
        sp = r.speaking
        assert sp is not None
        if sp.segments:
            self._jobs.append(SpeakJob(r.id, sp.segments[0], sp.voice, r.speed, sp.fmt))
            return
        r.speaking = None
        r.steps.append(_Step(r.at, lambda: self._close_audio_part(r)))

    def _schedule_segment(self, r: _Response, sp: _Speaking, speech: Speech, now: float) -> None:
        """Schedule one synthesised segment: its audio in :data:`AUDIO_DELTA_MS` deltas, each
        preceded by the transcript of the words it starts speaking."""
        segment = sp.segments.popleft()
        c0, ms0 = sp.chars, sp.ms
        fmt = sp.fmt
        audio = speech.audio if speech.fmt == fmt else b""  # never another format's bytes
        words = list(speech.words) if audio else []
        # Every segment is a whole number of milliseconds, padded with (under 1 ms of) silence:
        # clients add up the deltas' durations and truncate at what they played, and a sum of
        # fractional milliseconds rounded their way would be refused by the floor we count with.
        per_ms = fmt.rate // math.gcd(fmt.rate, 1000)  # samples in the shortest whole-ms span
        short = -(len(audio) // fmt.bytes_per_sample) % per_ms
        if audio and short:
            audio += encode_from_float(np.zeros(short, np.float32), fmt)
        # Item-wide character offset where each transcript delta ends, and the ms it is spoken.
        cuts: list[tuple[int, float]] = []
        last = sp.cuts[-1][0] if sp.cuts else 0
        for k, w in enumerate(words):
            end = c0 + (words[k + 1].start if k + 1 < len(words) else len(segment))
            if end > (cuts[-1][0] if cuts else last):
                cuts.append((min(end, c0 + len(segment)), ms0 + w.ms))
        if not cuts or cuts[-1][0] < c0 + len(segment):
            cuts.append((c0 + len(segment), cuts[-1][1] if cuts else ms0))
        sp.cuts.extend(cuts)
        sp.chars += len(segment)
        duration_ms = fmt.duration_ms(len(audio))
        sp.ms += duration_ms
        # Not before it exists (now), nor before the audio ahead of it has played (paced).
        start = max(r.at, now - r.t0)
        chunk = fmt.bytes_for_ms(AUDIO_DELTA_MS) or 1
        n_chunks = max(1, math.ceil(len(audio) / chunk))
        st = {"cut": 0}
        text = sp.text

        def send_chunk(k: int) -> None:
            part = r.open_part
            assert part is not None
            lo, hi = k * chunk, min((k + 1) * chunk, len(audio))
            chunk_end_ms = ms0 + fmt.duration_ms(hi)
            while st["cut"] < len(cuts) and (
                cuts[st["cut"]][1] < chunk_end_ms or k == n_chunks - 1
            ):
                end = cuts[st["cut"]][0]
                delta = text[len(part["sent"]) : end]
                part["sent"] = text[:end]
                st["cut"] += 1
                if delta:
                    self._emit("response.output_audio_transcript.delta", **part["ids"], delta=delta)
            if hi > lo:
                data = audio[lo:hi]
                self._item_audio[part["item"]["id"]].extend(data)
                r.output_audio_ms += fmt.duration_ms(len(data))
                if self.webrtc:  # on the track, never in an event
                    self._enqueue_playout(r.id, part["item"]["id"], data, fmt)
                else:
                    self._emit(
                        "response.output_audio.delta", **part["ids"], delta=b64encode_audio(data)
                    )

        # Over WebRTC the track paces the audio: it is released as soon as it is synthesised,
        # as the API generates faster than real time and plays from its output audio buffer.
        eager = self.fast or self.webrtc
        for k in range(n_chunks):
            due = start if eager else start + k * AUDIO_DELTA_MS / 1000
            r.steps.append(_Step(due, lambda k=k: send_chunk(k)))  # type: ignore[misc]  # bind k now
        r.at = start if eager else start + duration_ms / 1000

    def _enqueue_playout(
        self, response_id: str, item_id: str, data: bytes, fmt: AudioFormat, *, last: bool = False
    ) -> None:
        """Put an output item's audio (in ``fmt``) in the call's output audio buffer; ``last``:
        the item's audio is complete (the resampler's tail goes in too)."""
        if fmt != _TRACK_FMT:
            # Streamed per item, so the chunks join without seams; the tail comes with ``last``.
            if item_id not in self._out_resamplers:
                self._out_resamplers[item_id] = Resampler(fmt.rate, TRACK_RATE)
            resampler = self._out_resamplers[item_id]
            samples = resampler.process(decode_to_float(data, fmt), final=last)
            if last:
                del self._out_resamplers[item_id]
            data = float32_to_pcm16(samples)
        if data:
            self._enqueue_pcm(response_id, item_id, data)

    def _enqueue_pcm(self, response_id: str, item_id: str, data: bytes) -> None:
        last = self._playout[-1] if self._playout else None
        if last is not None and last.item_id == item_id:
            last.pcm += data
        else:
            self._playout.append(_Playout(response_id, item_id, bytearray(data)))

    def _close_audio_part(self, r: _Response, status: str = "completed") -> None:
        part = r.open_part
        if part is None:
            return
        r.open_part = None
        item, ids, transcript = part["item"], part["ids"], part["sent"]
        if item["id"] in self._out_resamplers:  # a call's converted audio: the resampler's tail
            fmt = AudioFormat.from_config(r.fmt_json)
            self._enqueue_playout(r.id, item["id"], b"", fmt, last=True)
        self._emit("response.output_audio.done", **ids)
        self._emit("response.output_audio_transcript.done", **ids, transcript=transcript)
        self._emit(
            "response.content_part.done", **ids, part={"type": "audio", "transcript": transcript}
        )
        r.output_text_chars += len(transcript)
        # An output item is in _heard only once truncated: its transcript stays deleted.
        kept = "" if item["id"] in self._heard else transcript
        item["content"] = [{"type": "output_audio", "transcript": kept}]
        self._close_item(r, item, part["index"], status)

    def _usage(self, r: _Response) -> JSON:
        text_out = math.ceil(r.output_text_chars / CHARS_PER_TOKEN)
        audio_out = math.ceil(r.output_audio_ms / 1000 * OUTPUT_AUDIO_TOKENS_PER_S)
        text_in, audio_in = r.input_text_tokens, r.input_audio_tokens
        return {
            "total_tokens": text_in + audio_in + text_out + audio_out,
            "input_tokens": text_in + audio_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    def _finish(self, r: _Response, status: str, details: JSON | None) -> None:
        if r.status != "in_progress":
            return
        r.steps.clear()
        r.plan.clear()
        r.speaking = None  # a segment still being synthesised is dropped when it arrives
        if r.open_part is not None:
            self._close_audio_part(r, "incomplete")
        for index, item in enumerate(r.output):
            if item.get("status") == "in_progress":
                self._close_item(r, item, index, "incomplete")
        r.status = status
        usage = self._usage(r)
        body = self._response_json(r, usage)
        body["status_details"] = details
        self._emit("response.done", response=body)
        self._tokens_used += usage["total_tokens"]
        self._emit(
            "rate_limits.updated",
            rate_limits=[
                {
                    "name": "tokens",
                    "limit": RATE_LIMIT_TOKENS,
                    "remaining": max(RATE_LIMIT_TOKENS - self._tokens_used, 0),
                    "reset_seconds": RATE_LIMIT_RESET_S,
                }
            ],
        )
        self._responses.pop(r.id, None)
        if self._active is r:
            self._active = None
            self._idle_ref_ms = self._position_ms
            if self._auto_response_pending:
                self._auto_response_pending = False
                self._auto_response(0.0)

    def _cancel(self, r: _Response, reason: str) -> None:
        self._finish(r, "cancelled", {"type": "cancelled", "reason": reason})

    def _on_response_cancel(self, event: JSON, now: float) -> None:
        response_id = event.get("response_id")
        if response_id is not None:
            self._check_type(response_id, str, "response_id")
            target = self._responses.get(response_id)
        else:
            target = self._active or next(iter(self._responses.values()), None)
        if target is None:
            raise ClientError(
                "response_cancel_not_active", "Cancellation failed: no active response found"
            )
        self._cancel(target, "client_cancelled")
