"""Input transcription with PocketSphinx (its wheel ships a US English acoustic model, dictionary
and language model, so nothing is downloaded).

PocketSphinx is small and fast but far less accurate than the API's transcription models: expect
the gist, not the words. Recognition is incremental: a :class:`TranscriptionStream` is fed audio
as it arrives (``start_utt`` / ``process_raw`` / ``end_utt``), so the server decodes while the
user speaks and only the last fraction of a second is left to decode when the turn ends. A batch
:meth:`Transcriber.transcribe` is the same stream fed everything at once.

Results depend only on the audio, never on how it was chunked or on what the decoder heard
before: the stream hands PocketSphinx fixed :data:`DECODE_BLOCK_MS` blocks whatever the append
sizes, and every utterance starts from the decoder's initial cepstral mean (PocketSphinx's live
normalisation otherwise carries over from the previous utterance). Nothing is cached: the same
audio twice is decoded twice.

Decoders are pooled and capped (:data:`POOL_SIZE`): a stream holds one for the length of an
utterance; when more users speak at once than there are decoders, the others' audio waits in
their streams and is decoded when a decoder is released.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from realtime_nb.core.audio import AudioFormat, Resampler, decode_to_float, float32_to_pcm16

from ._extras import require

__all__ = [
    "DECODER_CONFIG",
    "STT_RATE",
    "DecoderBusy",
    "Transcriber",
    "TranscriptionStream",
    "shared_transcriber",
    "transcribe",
]

#: The default en-us model is trained on 16 kHz speech.
STT_RATE: Final = 16_000
#: Decoders alive at once: each holds ~30 MB of model and takes 0.5-4 s to load here, and
#: PocketSphinx holds the GIL, so more than the cores only adds waiting (see :class:`Transcriber`).
POOL_SIZE: Final = max(1, min(4, os.cpu_count() or 1))
#: Audio handed to PocketSphinx per ``process_raw``: a fixed size, so the live cepstral mean
#: updates at the same frames whatever the client's append sizes (the result depends on it), and
#: small enough that the decoder trails the incoming audio by at most this much.
DECODE_BLOCK_MS: Final = 100
_BLOCK_BYTES: Final = STT_RATE * DECODE_BLOCK_MS // 1000 * 2
#: Decoder settings for speed, measured on this project's 2-core machine with the shared fixtures:
#: no second passes (``fwdflat``, ``bestpath``): they re-search the whole utterance at
#: ``end_utt``, 0.8-2 s on a 3 s question, which is exactly the wait after the user stops; a
#: phone-loop lookahead (``pl_window``) and an HMM cap (``maxhmmpf``) bring the first pass from
#: ~0.45x to ~0.33x real time. Both fixtures' transcripts keep their key words ("weather").
DECODER_CONFIG: Final[dict[str, Any]] = {
    "fwdflat": False,
    "bestpath": False,
    "pl_window": 10,
    "maxhmmpf": 3000,
}
#: Under 50 ms of audio there is nothing to hear: the decoder is not run.
_MIN_BYTES: Final = STT_RATE // 20 * 2
#: Fillers and markers PocketSphinx emits that are not words.
_NON_WORDS: Final = frozenset(
    {"<s>", "</s>", "<sil>", "[NOISE]", "[BREATH]", "[COUGH]", "[UH]", "[UM]"}
)


class DecoderBusy(RuntimeError):
    """Every decoder is decoding someone's turn: finish the stream again once one is free
    (:meth:`Transcriber.when_free`), or with ``force=True``."""


class TranscriptionStream:
    """One utterance decoded as its audio arrives: :meth:`feed` audio in ``fmt``, then
    :meth:`finish` for the words (or :meth:`abort`).

    The stream takes a decoder at its first block if one is free; while none is, it keeps the
    audio and catches up when it gets one (at a later block or at :meth:`finish`).

    Feed and finish a stream from one thread at a time (any thread); :meth:`abort` may come from
    another thread (it waits for a block being decoded).
    """

    def __init__(self, transcriber: Transcriber, fmt: AudioFormat) -> None:
        self._transcriber = transcriber
        self.fmt = fmt
        self._resampler = Resampler(fmt.rate, STT_RATE) if fmt.rate != STT_RATE else None
        self._odd = b""  # a trailing half sample of PCM16, kept for the next feed
        self._pending = bytearray()  # 16 kHz PCM16 not yet handed to the decoder
        self._flushed = False  # the resampler's tail is in _pending
        self._decoder: Any = None
        self._decoded = 0  # 16 kHz PCM16 bytes handed to the decoder
        self._closed = False
        self._lock = threading.Lock()  # abort() may come from another thread mid-feed

    def feed(self, audio: bytes) -> None:
        """Decode whole blocks of ``audio`` (bytes in :attr:`fmt`); keep the rest for later.

        Raises:
            RuntimeError: the stream is finished, or PocketSphinx failed.
            MissingExtraError: ``pocketsphinx`` is not installed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("this transcription stream is finished; start a new one")
            if self._flushed:
                raise RuntimeError("this transcription stream is ending: only finish() is left")
            self._pending.extend(self._to_16k(audio, final=False))
            self._decode(force=False, final=False)

    def finish(self, *, force: bool = False) -> str:
        """End the utterance and return the words heard (or ``""``).

        Raises:
            DecoderBusy: the stream has no decoder yet and none is free (the stream stays open:
                call again later, or with ``force=True`` to make a decoder beyond the pool's cap).
            RuntimeError: the stream is finished already, or PocketSphinx failed.
            MissingExtraError: ``pocketsphinx`` is not installed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("this transcription stream is finished; start a new one")
            if not self._flushed:
                self._pending.extend(self._to_16k(b"", final=True))
                self._flushed = True
            if self._decoded + len(self._pending) < _MIN_BYTES:
                self._release(ended=False)
                return ""
            self._decode(force=force, final=True)
            if self._decoder is None:
                raise DecoderBusy("every PocketSphinx decoder is in use")
            decoder = self._decoder
            try:
                decoder.end_utt()
                words = [
                    seg.word.split("(")[0]  # "with(2)": an alternative pronunciation of "with"
                    for seg in decoder.seg() or ()  # None when nothing was recognised
                    if seg.word not in _NON_WORDS and not seg.word.startswith("[")
                ]
            finally:
                self._release(ended=True)
        text = " ".join(words)
        return text[0].upper() + text[1:] + "." if text else ""

    def abort(self) -> None:
        """Drop the utterance and give the decoder back (safe to call twice)."""
        with self._lock:
            self._release(ended=False)

    def _to_16k(self, audio: bytes, *, final: bool) -> bytes:
        if self.fmt.bytes_per_sample == 2:
            audio = self._odd + audio
            cut = len(audio) - len(audio) % 2
            audio, self._odd = audio[:cut], audio[cut:]
        if self._resampler is None:
            if self.fmt.type == "audio/pcm":
                return audio
            return float32_to_pcm16(decode_to_float(audio, self.fmt))
        samples = decode_to_float(audio, self.fmt) if audio else np.zeros(0, np.float32)
        return float32_to_pcm16(self._resampler.process(samples, final=final))

    def _decode(self, *, force: bool, final: bool) -> None:
        """Hand the decoder the pending whole blocks (everything when ``final``), taking one
        first if the stream has none and one can be had."""
        n = len(self._pending) if final else len(self._pending) - len(self._pending) % _BLOCK_BYTES
        if not n:
            return
        if self._decoder is None:
            self._decoder = self._transcriber._acquire(force=force)
            if self._decoder is None:
                return  # kept in _pending until a decoder is free
            self._decoder.start_utt()
        # Always the same block boundaries, whatever was pending: the result depends on them.
        for i in range(0, n, _BLOCK_BYTES):
            block = bytes(self._pending[i : min(i + _BLOCK_BYTES, n)])
            self._decoder.process_raw(block)
            self._decoded += len(block)
        del self._pending[:n]

    def _release(self, *, ended: bool) -> None:
        self._closed = True
        decoder, self._decoder = self._decoder, None
        if decoder is None:
            return
        if not ended:
            try:
                decoder.end_utt()
            except RuntimeError:
                self._transcriber._release(decoder, broken=True)
                return
        self._transcriber._release(decoder)


class Transcriber:
    """Thread-safe PocketSphinx transcription: :meth:`stream` for incremental decoding,
    :meth:`transcribe` for audio that is all there.

    At most ``max_decoders`` decoders exist at once (more only when forced): PocketSphinx holds
    the GIL while it loads a model or decodes, so more decoders than cores decode no faster, and
    loading a model blocks every thread of the process for a second or more.
    """

    def __init__(self, max_decoders: int = POOL_SIZE) -> None:
        self.max_decoders = max_decoders
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._alive = 0
        self._cmn: dict[int, str] = {}  # id(decoder) -> its initial cepstral mean
        self._waiters: list[Callable[[], None]] = []

    def stream(self, fmt: AudioFormat | None = None) -> TranscriptionStream:
        """A new utterance of audio in ``fmt`` (default: 16 kHz PCM16 mono)."""
        return TranscriptionStream(self, fmt or AudioFormat(rate=STT_RATE))

    def transcribe(self, audio: bytes, fmt: AudioFormat | None = None) -> str:
        """The words heard in ``audio`` (default: 16 kHz PCM16 mono), or ``""``; the same words
        a :meth:`stream` fed the same audio in any chunks returns. Never waits for a decoder (it
        makes one beyond the cap if all are busy).

        Raises:
            MissingExtraError: ``pocketsphinx`` is not installed.
            RuntimeError: PocketSphinx failed.
        """
        stream = self.stream(fmt)
        stream.feed(audio)
        return stream.finish(force=True)

    def when_free(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once, from whichever thread frees it) when a decoder may be had:
        now if one can, else when one is released."""
        with self._lock:
            if not (self._idle or self._alive < self.max_decoders):
                self._waiters.append(callback)
                return
        callback()

    def _acquire(self, *, force: bool) -> Any:
        with self._lock:
            if self._idle:
                decoder = self._idle.pop()
                decoder.set_cmn(self._cmn[id(decoder)])
                return decoder
            if self._alive >= self.max_decoders and not force:
                return None
            self._alive += 1
        try:
            ps = require("pocketsphinx", "pocketsphinx", "input audio transcription")
            decoder = ps.Decoder(samprate=STT_RATE, loglevel="FATAL", **DECODER_CONFIG)
            cmn = decoder.get_cmn()
        except BaseException:
            self._release(None, broken=True)
            raise
        with self._lock:
            self._cmn[id(decoder)] = cmn
        return decoder

    def _release(self, decoder: Any, *, broken: bool = False) -> None:
        with self._lock:
            if broken or self._alive > self.max_decoders:
                self._alive -= 1  # a broken or forced decoder is not kept
                if decoder is not None:
                    self._cmn.pop(id(decoder), None)
            else:
                self._idle.append(decoder)
            waiters, self._waiters = self._waiters, []
        for callback in waiters:
            callback()


_SHARED: Transcriber | None = None
_SHARED_LOCK = threading.Lock()


def shared_transcriber() -> Transcriber:
    """The process-wide :class:`Transcriber` (decoders shared by all servers)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Transcriber()
        return _SHARED


def transcribe(pcm16: bytes) -> str:
    """Transcribe 16 kHz PCM16 mono with the process-wide :class:`Transcriber`."""
    return shared_transcriber().transcribe(pcm16)
