"""The offline demo: a spoken conversation with a tool call, against the local backend.

Two things live here:

- :class:`ToolWordsResponder` and :func:`local_backend`: the embedded local backend used by the
  ``%realtime`` magic and the notebooks when there is no API key. Its stand-in "model" calls a
  tool the session offers when the user's words name it (``get_weather`` <- "...weather..."),
  so tool flows can be tried offline; otherwise it echoes, like the default local responder.
- :func:`run_demo` (``realtime-nb demo``): says the bundled WAV to that backend, lets the
  ``get_weather`` tool answer, records the conversation and prints the inspection summary.

``python -m realtime_nb.frontdoor.demo --make-demo-recording recordings/demo.arrow`` regenerates the
recording the replay notebook uses.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from ..core.tools import tool
from ..local.responders import ToolWordsResponder

if TYPE_CHECKING:  # pragma: no cover - import-time only, for type checkers
    from ..client.session import Session
    from ..local.server import LocalServer

__all__ = [
    "DEMO_INSTRUCTIONS",
    "DEMO_WAV",
    "ToolWordsResponder",
    "get_weather",
    "local_backend",
    "main",
    "make_demo_recording",
    "run_demo",
    "say",
]

#: The bundled question (real speech, MIT-licensed; see ``data/README.md``).
DEMO_WAV: Final = Path(__file__).parent.parent / "data" / "whats_the_weather.wav"
DEMO_INSTRUCTIONS: Final = "You are a weather assistant. Use the get_weather tool for forecasts."
#: Silence after the speech so that server VAD sees the turn end (its default silence is 500 ms;
#: the extra covers the local VAD's frame granularity).
TRAILING_SILENCE_S: Final = 1.0
#: How long one demo turn may take: PocketSphinx and eSpeak on a slow CI core take ~3 s for the
#: whole turn in fast mode; real-time pacing adds the 4 s of speech and ~7 s of answer audio.
TURN_TIMEOUT_S: Final = 60.0

# --- the embedded local backend ------------------------------------------------------------------

_backend_lock = threading.Lock()
_backends: dict[bool, LocalServer] = {}


def local_backend(fast: bool = False) -> LocalServer:
    """This process's local server with a :class:`ToolWordsResponder` (started on first use; its
    daemon thread ends with the process, after the sessions' own exit handlers have closed them).
    ``fast`` sends answer audio as fast as it is synthesised.

    Raises:
        MissingExtraError: the ``[local]`` extra is not installed.
        OSError: no local port could be bound.
    """
    from ..local.server import LocalServer

    with _backend_lock:
        server = _backends.get(fast)
        if server is None:
            server = LocalServer(ToolWordsResponder(), fast=fast).start()
            _backends[fast] = server
        return server


# --- the demo ------------------------------------------------------------------------------------


@tool
def get_weather(city: str = "San Francisco") -> dict[str, Any]:
    """Today's weather for a city (a canned forecast: the demo is offline).

    Args:
        city: the city, as the user said it.
    """
    return {"city": city.strip().title() or "San Francisco", "forecast": "sunny", "celsius": 21}


class DemoError(RuntimeError):
    """The demo conversation did not go as it should (the message says what happened)."""


def say(
    session: Session,
    wav: str | Path = DEMO_WAV,
    realtime: bool = False,
    timeout: float = TURN_TIMEOUT_S,
) -> float:
    """Say ``wav`` to ``session`` (server VAD) and wait for the whole answer, tool calls and
    their follow-up response included. Returns the seconds of speech sent.

    It first waits until a widget has finished playing the previous answer
    (:meth:`Session.wait_until_heard`), so the speech does not interrupt it. A second of
    silence follows the speech so that the server's VAD ends the turn.

    Raises:
        TimeoutError: no spoken or written answer within ``timeout`` seconds.
        SessionClosedError: the session closed meanwhile.
    """
    import numpy as np

    session.wait_until_heard(timeout=timeout)
    sent_ms = session.send_audio(wav, realtime=realtime)
    silence = np.zeros(int(24_000 * TRAILING_SILENCE_S), np.float32)
    session.send_audio(silence, sample_rate=24_000, realtime=realtime)
    session.wait_for(
        "response.done",
        timeout=timeout,
        where=lambda ev: any(
            o.get("type") == "message" for o in (ev.data.get("response") or {}).get("output") or []
        ),
    )
    session.wait_until_idle(timeout=timeout)
    return sent_ms / 1000


def _converse(session: Session, wav: Path, realtime: bool, out: TextIO) -> None:
    seconds = say(session, wav, realtime=realtime)
    print(f"said {seconds:.1f} s of speech from {wav.name}", file=out)
    items = session.snapshot().items
    for item in items:
        if item.type == "message":
            print(f"  {item.role:>9}: {item.text}", file=out)
        elif item.type == "function_call":
            print(f"  tool call: {item.text}", file=out)
        elif item.type == "function_call_output":
            print(f"  tool said: {item.text}", file=out)
    if not any(i.type == "function_call" and i.text.startswith("get_weather") for i in items):
        raise DemoError("the local backend did not call get_weather (see the transcript above)")
    if not any(i.type == "function_call_output" for i in items):
        raise DemoError("get_weather was called but its output never reached the model")


def _session(record: str | Path, realtime: bool) -> Session:
    from ..client.session import Session

    server = local_backend(fast=not realtime)
    return Session(
        url=server.url,
        api_key=None,
        instructions=DEMO_INSTRUCTIONS,
        tools=[get_weather],
        turn_detection="server_vad",
        transcription=True,
        record=record,
    )


def _print_summary(path: Path | None, out: TextIO) -> None:
    from ..storage.recording import Recording

    if path is None:  # pragma: no cover - the demo always records
        return
    print(file=out)
    print(Recording.open(path).describe(), file=out)
    print(file=out)
    print(f"recorded to {path}; listen: realtime-nb export {path} demo.wav", file=out)


def run_demo(
    wav: str | Path | None = None,
    record_dir: str | Path = "recordings",
    realtime: bool = False,
    *,
    out: TextIO | None = None,
) -> int:
    """``realtime-nb demo``: say ``wav`` (default: the bundled weather question) to the local
    backend, let ``get_weather`` answer, record it under ``record_dir`` and print the summary.

    ``realtime`` sends the audio at the pace of speech and receives the answer at the pace of
    playback, as in a live call; otherwise both go as fast as they can. Returns the exit code:
    0, or 1 after one line on stderr saying what went wrong.
    """
    out = sys.stdout if out is None else out
    path = Path(wav) if wav is not None else DEMO_WAV
    try:
        if not path.is_file():
            raise FileNotFoundError(f"no such WAV file: {path}")
        print("realtime-nb demo: local backend (offline, no API key needed)", file=out)
        with _session(record_dir, realtime) as session:
            rec_path = session.recording_path
            _converse(session, path, realtime, out)
        _print_summary(rec_path, out)
    except (DemoError, OSError, ValueError, ImportError, RuntimeError) as exc:
        print(f"realtime-nb demo: error: {exc}", file=sys.stderr)
        return 1
    return 0


def make_demo_recording(path: str | Path, force: bool = False) -> Path:
    """Record the demo conversation to ``path`` (the file ``recordings/demo.arrow`` is made so),
    at real-time pace so that its timeline (and the replay's stereo track) is a real call's.

    Raises:
        FileExistsError: ``path`` exists and ``force`` is false.
        DemoError: the conversation went wrong.
    """
    p = Path(path)
    if p.exists() and force:
        p.unlink()
    with _session(p, realtime=True) as session:
        _converse(session, DEMO_WAV, realtime=True, out=sys.stdout)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m realtime_nb.frontdoor.demo``: the demo, or ``--make-demo-recording PATH``."""
    p = argparse.ArgumentParser(
        prog="python -m realtime_nb.frontdoor.demo", description=__doc__.split("\n")[0]
    )
    p.add_argument("--make-demo-recording", metavar="PATH", help="write the demo recording here")
    p.add_argument("--force", action="store_true", help="replace an existing PATH")
    p.add_argument("--wav", help="what the user says (default: the bundled weather question)")
    p.add_argument("--record-dir", default="recordings", help="where the recording goes")
    p.add_argument("--realtime", action="store_true", help="send and receive at real-time pace")
    args = p.parse_args(argv)
    if args.make_demo_recording:
        try:
            made = make_demo_recording(args.make_demo_recording, force=args.force)
        except (DemoError, OSError) as exc:
            print(f"{p.prog}: error: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {made} ({made.stat().st_size / 1e6:.2f} MB)")
        return 0
    return run_demo(wav=args.wav, record_dir=args.record_dir, realtime=args.realtime)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
