"""ReplayWidget: a recording in the notebook, with a timeline, both tracks and the state at the playhead.

``Recording.play()`` returns one. The kernel half below is a thin shell around
:class:`realtime_nb.debugging.replay.ReplayData` (overview peaks, audio windows, ``state_at``): the browser
gets an overview of the whole session once, then asks for what it shows at the playhead (the
conversation state, a window of the event list, a few seconds of audio of both tracks), so a
recording of hundreds of megabytes is never sent whole. The conversation shown at time ``t`` is
``ReplayData.state_at(t)``: the same reducer the live session ran, from its nearest checkpoint.

The front end is ``replay.js`` (plain ESM, rendered by ``loader.js``, which imports it and the
modules it shares with the live widget from the ``_modules`` trait: see ``_sources.py``) with
``widget.css`` and ``replay.css``. Messages are
``{"type": ...}`` objects, binary payloads only in ``buffers``; every browser request carries a
``view`` and a ``req`` number that its reply echoes (a view drops replies older than what it shows).

Message catalogue
=================

Browser -> kernel
-----------------
``ready`` ``{view, bins}``
    A view has rendered and its timeline is ``bins`` pixels wide. Answered with ``overview`` once
    the recording is read (requests that arrive earlier wait for it, in order).
``get_state`` ``{view, req, t, events, full}``
    The conversation at ``t`` seconds. ``events``: also send the event-list window around ``t``;
    ``full``: send every item, not only those changed since this view's last ``state``. A newer
    ``get_state`` of the same view supersedes a queued one (dragging the playhead skips stale
    seeks).
``get_audio`` ``{view, req, start_s, duration_s}``
    Both tracks from ``start_s`` for ``duration_s`` (at most :data:`MAX_REQUEST_S`).
``get_event`` ``{view, req, seq}``
    One event's JSON (audio left out), for the event list's detail view.
``log`` ``{level, message}``
    A front-end problem worth keeping (kept in :attr:`ReplayWidget.frontend_log`).

Kernel -> browser
-----------------
``overview`` ``{view, duration_s, bins, vad, truncations, items, markers, meta}`` +
``[user_min, user_max, assistant_min, assistant_max]``
    Float32 LE peaks per bin of each track (``bins`` values each, in [-1, 1]); ``vad``:
    ``[[start_s, end_s | null]]``; ``truncations``: ``[[t_s | null, item_id, audio_end_ms]]``;
    ``items``: ``[[start_s, item_id]]`` where each assistant item starts playing; ``markers``:
    ``[[t_s, kind, label, item_id | null]]``, the timeline's labelled marks (:func:`markers`);
    ``meta``: model, start time and the number of events.
``state`` ``{view, req, t, order, items, full, turns, usage, speaking, events?}``
    Items (the live widget's item JSON) changed since the view's last ``state`` (all of them when
    ``full``) and the order of ids at ``t``; ``speaking``: the user is speaking at ``t`` (a VAD
    segment holds it) and the item for it is not in the conversation yet. ``events`` (when
    asked): ``{from_s, to_s, rows}``, rows ``[seq, t_s, source, type, item_id]`` of the
    non-audio events around ``t``.
``audio`` ``{view, req, start_s, duration_s, rate}`` + ``[user_pcm, assistant_pcm]``
    PCM16 LE mono at ``rate`` Hz, timeline-aligned (silence where nothing plays); the assistant
    track as it was heard (cut where it was truncated).
``event`` ``{view, req, seq, data}``
    The event's JSON, redacted.
``error`` ``{view, req, text}``
    A request failed (or the recording could not be read: ``req`` is ``null``), in plain words.
"""

from __future__ import annotations

import gc
import json
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anywidget
import numpy as np
import traitlets

from ..core._redact import redact_obj
from ._sources import ENTRY, module_sources, ship, text
from ._viewmodel import item_view, transcribing

if TYPE_CHECKING:
    from ..debugging.replay import ReplayData
    from ..storage.recording import Recording

__all__ = ["ReplayWidget"]

logger = logging.getLogger(__name__)

_HERE: Final = Path(__file__).parent
#: widget.css styles the transcript and event rows both views share; replay.css the rest.
_CSS_FILES: Final = ("widget.css", "replay.css")
_CSS: Final = text(*_CSS_FILES)()

#: Seconds of audio per window the browser asks for. 4 s of both tracks is 384 kB: one window
#: arrives in a few ms on loopback and a few hundred ms on a slow remote link, while the playhead
#: crosses it in 2 s at 2x: with the next window prefetched there is always time.
WINDOW_S: Final = 4.0
#: Longest window a request may ask for (a misbehaving front end cannot make the kernel copy the
#: whole session): 30 s of both tracks is 2.9 MB.
MAX_REQUEST_S: Final = 30.0
#: Event-list window around the playhead: this many seconds either side...
EVENT_WINDOW_S: Final = 20.0
#: ...and at most this many rows either side (a busy session has ~10 non-audio events/s).
EVENT_WINDOW_ROWS: Final = 200
#: Widest overview the browser may ask for (a 4K screen at 2x is 7680 px; peaks per pixel).
MAX_OVERVIEW_BINS: Final = 8000
#: Requests waiting for the recording to be read; more means the front end is misbehaving.
MAX_QUEUED_REQUESTS: Final = 1000
#: Playback speeds the view offers: slower to follow a fast talker or check a cut, faster to skim.
#: The front end time-stretches the audio, so every speed keeps the voices' pitch.
SPEEDS: Final = (0.5, 1.0, 1.5, 2.0)
#: Marker kinds on the timeline, in the order the legend lists them.
MARKER_KINDS: Final = ("user", "assistant", "tool", "response", "truncation")


class ReplayWidget(anywidget.AnyWidget):
    """Replay a recording: a timeline of both audio tracks with labelled markers (items, tool
    calls, responses, truncations) and VAD segments, the transcript and event log at the playhead,
    click to seek, play/pause at 0.5x, 1x, 1.5x or 2x (pitch kept).

    ``ReplayWidget(recording)`` takes a :class:`~realtime_nb.storage.recording.Recording`, a path to one,
    or a :class:`~realtime_nb.debugging.replay.ReplayData`. The recording is read on a worker thread, so the
    widget shows at once and draws the timeline when it is ready. :meth:`close` stops the thread.
    """

    _esm = _HERE / ENTRY
    _css = _CSS

    # The front end's modules (loader.js imports them) and the one that renders.
    _main = traitlets.Unicode("replay.js").tag(sync=True)
    _modules = traitlets.Dict().tag(sync=True)

    #: "loading" | "ready" | "error"
    status = traitlets.Unicode("loading").tag(sync=True)
    status_text = traitlets.Unicode("Reading the recording…").tag(sync=True)
    duration_s = traitlets.Float(0.0).tag(sync=True)
    rate = traitlets.Int(24_000).tag(sync=True)
    window_s = traitlets.Float(WINDOW_S).tag(sync=True)
    #: The playhead (seconds), written by the front end when it seeks or pauses, so a re-render
    #: (or a second view) starts where the user left off.
    position_s = traitlets.Float(0.0).tag(sync=True)
    #: One of :data:`SPEEDS`, written by the front end.
    speed = traitlets.Float(1.0).tag(sync=True)

    @traitlets.validate("speed")
    def _check_speed(self, proposal: Mapping[str, Any]) -> float:
        value = float(proposal["value"])
        if value not in SPEEDS:
            accepted = ", ".join(f"{s:g}" for s in SPEEDS)
            raise traitlets.TraitError(f"speed must be one of {accepted}, got {value:g}")
        return value

    def __init__(self, recording: Recording | ReplayData | str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        ship(self, _modules=module_sources, _esm=text(ENTRY), _css=text(*_CSS_FILES))
        self._source = recording
        self._data: ReplayData | None = None
        self._rows_t = np.zeros(0, np.float64)
        self._rows: list[list[Any]] = []
        self._seq_rows = np.zeros(0, np.int64)
        self._vad: list[tuple[float, float, str | None]] = []  # start_s, end_s, item_id
        self._sent: dict[str, dict[str, dict[str, Any]]] = {}  # view -> item id -> item JSON
        self._requests: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._latest_state_req: dict[str, int] = {}
        self._lock = threading.Lock()
        self._handling = threading.Lock()
        #: problems the front end reported (``log`` messages, unknown message types)
        self.frontend_log: list[dict[str, Any]] = []
        #: what the kernel sent, for tests and benchmarks: message counts and audio bytes
        self.sent_stats: dict[str, int] = {"audio_bytes": 0, "audio": 0, "state": 0}
        #: seconds the recording took to read (ReplayData plus the event index)
        self.load_s: float | None = None
        self.on_msg(self._on_msg)
        self._worker = threading.Thread(target=self._work, name="realtime-replay", daemon=True)
        self._worker.start()

    @property
    def data(self) -> ReplayData:
        """The :class:`~realtime_nb.debugging.replay.ReplayData` behind this view (waits until read).

        Raises:
            RuntimeError: the recording could not be read (the widget says why).
        """
        while self._data is None:
            if self.status == "error":
                raise RuntimeError(self.status_text)
            time.sleep(0.01)
        return self._data

    def close(self) -> None:
        """Stop the worker thread and close the comm."""
        self._requests.put(None)
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=2)
        super().close()

    # --- comm thread ----------------------------------------------------------------------------

    def _on_msg(self, _widget: Any, content: Any, buffers: Sequence[Any] | None) -> None:
        if not isinstance(content, Mapping):
            self._log_frontend("warning", f"message that is not an object: {content!r:.100}")
            return
        mtype = content.get("type")
        if mtype == "log":
            self._log_frontend(str(content.get("level", "info")), str(content.get("message")))
            return
        if mtype not in ("ready", "get_state", "get_audio", "get_event"):
            self._log_frontend("warning", f"unknown message type from the front end: {mtype!r}")
            return
        msg = dict(content)
        view = str(msg.get("view") or "")
        if mtype == "get_state":
            with self._lock:
                self._latest_state_req[view] = _int(msg.get("req"))
        if self._data is not None and self._requests.empty():
            # Read: answer here, on the kernel's own thread (a hop to the worker thread costs a
            # GIL hand-over, up to a switch interval, on every request).
            self._handle_safely(str(mtype), msg)
            return
        if self._requests.qsize() >= MAX_QUEUED_REQUESTS:
            self._log_frontend("warning", "too many requests queued; dropping one")
            return
        self._requests.put((str(mtype), msg))

    def _log_frontend(self, level: str, message: str) -> None:
        self.frontend_log.append({"level": level, "message": message, "t": time.time()})

    # --- worker thread --------------------------------------------------------------------------

    def _work(self) -> None:
        if not self._load():
            return
        while True:
            job = self._requests.get()
            if job is None:
                return
            self._handle_safely(*job)

    def _handle_safely(self, mtype: str, msg: dict[str, Any]) -> None:
        try:
            with self._handling:  # the worker's last queued request may still be running
                self._handle(mtype, msg)
        except Exception as exc:  # one bad request must not end the view
            logger.exception("realtime_nb replay: %s failed", mtype)
            self._reply(
                {
                    "type": "error",
                    "view": msg.get("view"),
                    "req": msg.get("req"),
                    "text": f"{mtype} failed: {exc}",
                }
            )

    def _load(self) -> bool:
        from ..debugging.replay import ReplayData
        from ..storage.recording import Recording

        t0 = time.perf_counter()
        try:
            src = self._source
            if isinstance(src, ReplayData):
                data = src
            else:
                rec = src if isinstance(src, Recording) else Recording.open(src)
                data = rec.replay_data()
            rows = data.event_rows()
            self._rows = [[r.seq, round(r.t_s, 4), r.source, r.type, r.item_id] for r in rows]
            self._rows_t = np.array([r.t_s for r in rows], np.float64)
            seqs = data.recording.table.column("seq")
            self._seq_rows = np.concatenate(
                [c.to_numpy() for c in seqs.chunks] or [np.zeros(0, np.int64)]
            ).astype(np.int64)
            self._vad = [
                (s.start_s, float(data.duration_s) if s.end_s is None else s.end_s, s.item_id)
                for s in data.vad_segments()
            ]
        except Exception as exc:
            logger.warning("realtime_nb replay: reading the recording failed: %s", exc)
            self.status_text = f"The recording could not be read: {exc}"
            self.status = "error"
            self._reply({"type": "error", "view": None, "req": None, "text": self.status_text})
            return False
        self.load_s = time.perf_counter() - t0
        self.duration_s = float(data.duration_s)
        self.status_text = ""
        self.status = "ready"
        self._data = data
        return True

    def _handle(self, mtype: str, msg: dict[str, Any]) -> None:
        view = str(msg.get("view") or "")
        if mtype == "ready":
            with self._lock:
                self._sent.pop(view, None)
            self._send_overview(view, msg.get("bins"))
        elif mtype == "get_state":
            req = _int(msg.get("req"))
            with self._lock:
                if req < self._latest_state_req.get(view, req):
                    return  # superseded by a newer seek of the same view
            self._send_state(view, req, msg)
        elif mtype == "get_audio":
            self._send_audio(view, msg)
        elif mtype == "get_event":
            self._send_event(view, msg)

    def _reply(self, msg: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        try:
            self.send(msg, buffers=buffers)
        except Exception as exc:  # the comm may be closing
            self._log_frontend("error", f"sending to the browser failed: {exc!r}")

    def _send_overview(self, view: str, bins: Any) -> None:
        data = self.data
        n = _int(bins) or 1000
        n = max(50, min(n, MAX_OVERVIEW_BINS))
        ov = data.overview(n)
        meta = getattr(data.recording, "meta", None)
        msg = {
            "type": "overview",
            "view": view,
            "duration_s": float(data.duration_s),
            "bins": ov.bins,
            "vad": [
                [_r(s.start_s), None if s.end_s is None else _r(s.end_s)]
                for s in data.vad_segments()
            ],
            "truncations": [
                [None if m.t_s is None else _r(m.t_s), m.item_id, m.audio_end_ms]
                for m in data.truncations()
            ],
            # Where each assistant item starts on the timeline.
            "items": sorted([_r(s), i] for i, s in data.item_starts_s().items()),
            "markers": markers(data),
            "meta": redact_obj(_meta_summary(meta, len(data.recording.table))),
        }
        buffers = [
            np.ascontiguousarray(a, dtype="<f4").tobytes()
            for a in (ov.user_min, ov.user_max, ov.assistant_min, ov.assistant_max)
        ]
        self._reply(msg, buffers)

    def _send_state(self, view: str, req: int, msg: Mapping[str, Any]) -> None:
        data = self.data
        t = _float(msg.get("t"))
        t = min(max(t, 0.0), float(data.duration_s))
        # A seek allocates ~10^4 objects next to the ~10^6 a long recording keeps alive: a
        # cyclic collection landing in it would triple its time (p95 13 -> 8 ms, max 33 -> 8 ms
        # on a 60-minute recording). The objects die by reference counting; collect later.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            st = data.state_at(t)
            order: list[str] = []
            items: dict[str, dict[str, Any]] = {}
            asr = transcribing(st)
            for it in st.items:
                d = item_view(it, asr)
                order.append(d["id"])
                items[d["id"]] = d
        finally:
            if gc_was_enabled:
                gc.enable()
        with self._lock:
            sent = self._sent.get(view)
            full = bool(msg.get("full")) or sent is None
            if full or sent is None:
                changed = list(items.values())
            else:
                changed = [d for i, d in items.items() if sent.get(i) != d]
            self._sent[view] = items
        usage = st.usage
        out: dict[str, Any] = {
            "type": "state",
            "view": view,
            "req": req,
            "t": t,
            "order": order,
            "items": changed,
            "full": full,
            "turns": len(st.turns),
            "speaking": any(
                a <= t < b and (item is None or item not in items) for a, b, item in self._vad
            ),
            "usage": {
                k: int(getattr(usage, k, 0) or 0)
                for k in ("input_tokens", "output_tokens", "total_tokens")
            },
        }
        if msg.get("events"):
            out["events"] = self._event_window(t)
        self._reply(out)
        self.sent_stats["state"] += 1

    def _event_window(self, t: float) -> dict[str, Any]:
        ts = self._rows_t
        lo = int(np.searchsorted(ts, t - EVENT_WINDOW_S, side="left"))
        mid = int(np.searchsorted(ts, t, side="right"))
        hi = int(np.searchsorted(ts, t + EVENT_WINDOW_S, side="right"))
        lo = max(lo, mid - EVENT_WINDOW_ROWS)
        hi = min(hi, mid + EVENT_WINDOW_ROWS)
        # The window the rows cover: cut where the row limits cut it, so the browser knows when
        # the playhead leaves it.
        from_s = t - EVENT_WINDOW_S if lo == 0 or ts[lo - 1] < t - EVENT_WINDOW_S else ts[lo]
        to_s = t + EVENT_WINDOW_S if hi == len(ts) or ts[hi] > t + EVENT_WINDOW_S else ts[hi - 1]
        return {"from_s": float(from_s), "to_s": float(to_s), "rows": self._rows[lo:hi]}

    def _send_audio(self, view: str, msg: Mapping[str, Any]) -> None:
        data = self.data
        start = _float(msg.get("start_s"))
        dur = min(max(_float(msg.get("duration_s")), 0.0), MAX_REQUEST_S)
        user = data.audio_window("user", start, dur)
        assistant = data.audio_window("assistant", start, dur)
        reply = {"type": "audio", "view": view, "req": msg.get("req"), "start_s": start,
                 "duration_s": dur, "rate": int(self.rate)}  # fmt: skip
        self._reply(reply, [user, assistant])
        self.sent_stats["audio"] += 1
        self.sent_stats["audio_bytes"] += len(user) + len(assistant)

    def _send_event(self, view: str, msg: Mapping[str, Any]) -> None:
        data = self.data
        seq = _int(msg.get("seq"))
        seqs = self._seq_rows
        i = int(np.searchsorted(seqs, seq))
        if i >= len(seqs) or seqs[i] != seq:
            hits = np.flatnonzero(seqs == seq)  # a recording whose seqs are not sorted
            if not len(hits):
                raise ValueError(f"no event with seq {seq}")
            i = int(hits[0])
        payload = data.recording.table.column("payload")[i].as_py()
        try:
            body = json.loads(payload)
        except (TypeError, ValueError):
            body = payload
        self._reply(
            {
                "type": "event",
                "view": view,
                "req": msg.get("req"),
                "seq": seq,
                "data": redact_obj(body),
            }
        )


def markers(data: ReplayData) -> list[list[Any]]:
    """The timeline's labelled marks, in time order: ``[t_s, kind, label, item_id | None]``.

    ``kind`` is one of :data:`MARKER_KINDS`: each user and assistant message (where the speech
    starts: the VAD segment of a user item, the first audio of an assistant one, else when the
    item was added), each tool call (``name()``), each response (when created), each
    truncation (where the listener stopped hearing, with how much was heard).
    """
    st = data.state
    starts = data.item_starts_s()
    speech = {s.item_id: s.start_s for s in data.vad_segments() if s.item_id}
    out: list[list[Any]] = []
    counts = {"user": 0, "assistant": 0}
    for it in st.items:
        added = None if it.added_t_ns is None else it.added_t_ns / 1e9
        if it.type == "function_call":
            if added is not None:
                out.append([_r(added), "tool", f"{it.name or '?'}()", it.id])
            continue
        if it.type != "message" or it.role not in counts:
            continue
        t = speech.get(it.id) if it.role == "user" else starts.get(it.id)
        t = added if t is None else t
        if t is None:
            continue
        counts[it.role] += 1
        out.append([_r(t), it.role, f"{it.role} {counts[it.role]}", it.id])
    created = sorted(r.created_t_ns for r in st.responses.values() if r.created_t_ns is not None)
    out += [[_r(t / 1e9), "response", f"response {n}", None] for n, t in enumerate(created, 1)]
    for m in data.truncations():
        t = m.event_s if m.t_s is None else m.t_s
        out.append([_r(t), "truncation", f"✂ {m.audio_end_ms / 1000:.2f} s", m.item_id])
    out.sort(key=lambda m: (m[0], MARKER_KINDS.index(m[1])))
    return out


def _meta_summary(meta: Any, n_events: int) -> dict[str, Any]:
    out: dict[str, Any] = {"events": n_events}
    if isinstance(meta, Mapping):
        for key in ("model", "started_at", "start_time", "backend", "url"):
            v = meta.get(key)
            if isinstance(v, (str, int, float)):
                out[key] = v
    return out


def _int(v: Any) -> int:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else 0


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        return 0.0
    return float(v)


def _r(x: float) -> float:
    return round(float(x), 4)
