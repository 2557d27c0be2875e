"""Input transcription with PocketSphinx (its wheel ships a US English acoustic model, dictionary
and language model, so nothing is downloaded).

PocketSphinx is small and fast (about 0.2x real time here) but far less accurate than the API's
transcription models: expect the gist, not the words. Decoders are pooled (one per worker thread,
at most :data:`POOL_SIZE`) and results are cached by audio content, so a test suite that feeds the
same fixture to many sessions decodes it once.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections import OrderedDict
from typing import Any, Final

from ._extras import require

__all__ = ["STT_RATE", "Transcriber", "shared_transcriber", "transcribe"]

#: The default en-us model is trained on 16 kHz speech.
STT_RATE: Final = 16_000
#: Decoders alive at once: each holds ~30 MB of model; more than the cores only adds contention.
POOL_SIZE: Final = max(1, min(4, os.cpu_count() or 1))
#: Cached transcripts (keyed by a hash of the audio): enough for a test suite's repeated fixtures.
CACHE_SIZE: Final = 256
#: Fillers and markers PocketSphinx emits that are not words.
_NON_WORDS: Final = frozenset(
    {"<s>", "</s>", "<sil>", "[NOISE]", "[BREATH]", "[COUGH]", "[UH]", "[UM]"}
)


class Transcriber:
    """Thread-safe PocketSphinx transcription of 16 kHz PCM16 mono audio.

    Raises:
        MissingExtraError: ``pocketsphinx`` is not installed (on first use).
    """

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._created = 0
        self._cache: OrderedDict[bytes, str] = OrderedDict()
        self._inflight: dict[bytes, threading.Event] = {}

    def _decoder(self) -> Any:
        with self._lock:
            try:
                return self._pool.get_nowait()
            except queue.Empty:
                pass
            create = self._created < self.pool_size
            if create:
                self._created += 1
        if create:
            ps = require("pocketsphinx", "pocketsphinx", "input audio transcription")
            return ps.Decoder(samprate=STT_RATE, loglevel="FATAL")
        return self._pool.get()

    def transcribe(self, pcm16: bytes) -> str:
        """The words heard in ``pcm16`` (16 kHz mono, little-endian), or ``""``."""
        if len(pcm16) < STT_RATE // 10:  # under 50 ms: nothing to hear, skip the decoder
            return ""
        key = hashlib.blake2b(pcm16, digest_size=16).digest()
        while True:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
                waiter = self._inflight.get(key)
                if waiter is None:
                    done = self._inflight[key] = threading.Event()
                    break
            waiter.wait()
        try:
            decoder = self._decoder()
            try:
                decoder.start_utt()
                decoder.process_raw(pcm16, full_utt=True)
                decoder.end_utt()
                words = [
                    seg.word.split("(")[0]  # "with(2)": an alternative pronunciation of "with"
                    for seg in decoder.seg()
                    if seg.word not in _NON_WORDS and not seg.word.startswith("[")
                ]
            finally:
                self._pool.put(decoder)
            text = " ".join(words)
            if text:
                text = text[0].upper() + text[1:] + "."
            with self._lock:
                self._cache[key] = text
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
            return text
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            done.set()


_SHARED: Transcriber | None = None
_SHARED_LOCK = threading.Lock()


def shared_transcriber() -> Transcriber:
    """The process-wide :class:`Transcriber` (decoders and cache shared by all servers)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Transcriber()
        return _SHARED


def transcribe(pcm16: bytes) -> str:
    """Transcribe with the process-wide :class:`Transcriber`."""
    return shared_transcriber().transcribe(pcm16)
