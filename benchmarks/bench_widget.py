"""Widget latency while reply audio plays, in a real browser: ``python benchmarks/bench_widget.py``.

Two parts, one run (``--part`` picks one): the relay's two send paths (below), then the two
transports side by side (``transports``: the relay and WebRTC, see :func:`transports`).

A real JupyterLab on loopback and Debian's chromium, the microphone on (muted: it streams 50 ms
chunks of silence, so the server's VAD never cuts the reply) while the kernel streams a long
spoken reply to the page. The local server runs in its own process, as a remote API would (its
speech synthesis does not compete with the kernel for the GIL), and by default sends the reply
audio as fast as it is synthesised, as the OpenAI API does (``--server-pace realtime`` paces it).

Each round plays one reply per relay path, alternating in one session: **comm, unpaced** (the
relay as it was: mic chunks over the Jupyter comm, all reply audio that arrived in a 50 ms batch
window in one comm message, ``w.pace_audio = False``), **comm, paced** (``_pacing.py``: messages
of at most 100 ms, at most 1 s ahead of real time) and **lane, paced** (mic chunks off the comm,
on the widget's mic lane: ``_miclane.py``, ``lane.js``; the page picks the lane or the comm when
its mic opens, from the ``mic_lane`` trait, and the benchmark checks how many chunks took it).
Reports, per path, median / p95 / max of:

- mic chunk -> kernel: the sender's (page main thread or lane Worker) send time of a chunk to its
  arrival in the kernel's handler;
- mic chunk relay: the AudioWorklet posting the chunk to its sender sending it (a busy main
  thread; not part of the figure above);
- mic chunk worklet -> kernel: the two above together, the whole way from the audio thread;
- mic chunk -> server: the sender's send time to the session's last byte on the WebSocket;
- server delta -> playback: the session receiving an item's first audio delta to its first
  sample leaving the AudioWorklet (output latency included);

and the largest audio message the kernel sent. Clocks: the page's ``performance.timeOrigin +
now()``, the worklet's ``Date.now()`` and the kernel's ``time.time()``, one machine, all following
the system clock (no offset to correct).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.widget import lab as L  # noqa: E402

#: What the user types: the echo responder says it back, about 20 s of speech.
REPLY_TEXT = (
    "Please read this back to me slowly. The quick brown fox jumps over the lazy dog while the "
    "orchestra tunes up in the hall next door, and the rain keeps falling on the old tin roof of "
    "the station where the last train of the evening waits for passengers who are running late "
    "because the bridge over the river was closed for repairs all afternoon."
)
#: How long one reply may take to play out before the benchmark gives up on it.
REPLY_TIMEOUT_S = 120

SERVER = """\
import sys, time
from realtime_nb.local.server import LocalServer
srv = LocalServer(port=int(sys.argv[1]), responder="echo", fast=sys.argv[2] == "burst").start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""

NOTEBOOK = """\
from realtime_nb import Session
session = Session(url={url!r}, record=False, turn_detection={{"type": "server_vad"}})
w = session.widget()
w
"""

RESET = (
    "w.pace_audio = {paced}\n"
    "w.mic_lane = w._lane.url if {lane} else ''  # the page reads it when its mic opens\n"
    "_lane_chunks = w._lane.counts['chunks']\n"
    "for _k in ('mic_to_kernel', 'mic_relay', 'mic_from_worklet', 'mic_to_server', 'delta_to_playback'):\n"
    "    getattr(w.timings, _k).clear()\n"
    "w._pacer.max_message_bytes = 0\n"
    "w._latency._first_delta_ms.clear()  # an earlier reply's first delta is not this one's\n"
)
COLLECT = (
    "import json, dataclasses\n"
    "print(json.dumps({**dataclasses.asdict(w.timings), 'max_msg': w.max_audio_message_bytes,"
    " 'sent': w.messages_sent, 'mic': dataclasses.asdict(w.mic_stats),"
    " 'lane_chunks': w._lane.counts['chunks'] - _lane_chunks}))\n"
)
SPANS = [
    ("mic_to_kernel", "mic chunk -> kernel"),
    ("mic_relay", "mic chunk relay (worklet -> sender)"),
    ("mic_from_worklet", "mic chunk worklet -> kernel"),
    ("mic_to_server", "mic chunk -> server (sent)"),
    ("delta_to_playback", "server delta -> start of playback"),
]


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def start_server(pace: str) -> tuple[subprocess.Popen[str], str]:
    port = L.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), pace],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("the local server did not start")
    return proc, f"ws://127.0.0.1:{port}/v1/realtime"


def play_reply(page: Any, timeout_s: float) -> bool:
    """Type the text, wait until the reply played to the end; False on a timeout."""
    finished = '.rtnb-assistant[data-played-reason="finished"]'
    n = len(page.query_selector_all(finished))
    page.fill(".rtnb-textinput", REPLY_TEXT)
    page.press(".rtnb-textinput", "Enter")
    deadline = time.monotonic() + timeout_s
    while len(page.query_selector_all(finished)) <= n:
        if time.monotonic() > deadline:
            return False
        page.wait_for_timeout(200)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="replies per send path")
    ap.add_argument(
        "--server-pace",
        choices=("burst", "realtime"),
        default="burst",
        help="how the local server sends reply audio (default: %(default)s, as OpenAI does)",
    )
    ap.add_argument(
        "--part",
        choices=("all", "relay", "transports"),
        default="all",
        help="relay: the relay's two send paths; transports: relay vs WebRTC (default: both)",
    )
    args = ap.parse_args()
    reason = L.missing()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    load_before = os.getloadavg()[0]
    if args.part in ("all", "relay"):
        relay_paths(args)
    if args.part in ("all", "transports"):
        res = transports(args.rounds, args.server_pace)
        report_transports(res)
    print(
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
        f"({os.cpu_count()} CPUs)"
    )
    return 0


#: The relay's mic and send paths, alternated in one session: (name, mic lane, paced audio). The
#: first is the relay as it was (mic over the comm, reply audio in one message per batch), the
#: second adds paced reply audio, the third takes the mic off the comm (the mic lane).
VARIANTS = [
    ("comm, unpaced", False, False),
    ("comm, paced", False, True),
    ("lane, paced", True, True),
]


def relay_paths(args: argparse.Namespace) -> None:
    """The relay's mic paths (comm, lane) and send paths (unpaced, paced) in one session."""
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()[0]
    server, url = start_server(args.server_pace)
    results: dict[str, list[dict[str, Any]]] = {v[0]: [] for v in VARIANTS}
    try:
        with (
            tempfile.TemporaryDirectory() as d,
            L.jupyterlab(Path(d), [NOTEBOOK.format(url=url)], {}) as lab,
            sync_playwright() as pw,
        ):
            browser, page = L.open_notebook(pw, lab)
            page.wait_for_selector(".rtnb-dot.rtnb-connected", timeout=90_000)
            kc = lab.kernel_client()
            page.click(".rtnb-mute")  # silence: the server's VAD stays quiet during the reply
            for r in range(args.rounds):
                for name, lane, paced in VARIANTS:
                    L.run(kc, RESET.format(paced=paced, lane=lane))
                    page.click(".rtnb-mic")  # on: the page takes the lane or the comm now
                    page.wait_for_timeout(2000)
                    L.run(kc, RESET.format(paced=paced, lane=lane))  # after the lane connected
                    ok = play_reply(page, REPLY_TIMEOUT_S)
                    t = json.loads(L.run(kc, COLLECT))
                    page.click(".rtnb-mic")  # off
                    t["ok"] = ok
                    results[name].append(t)
                    print(
                        f"round {r + 1} {name:14}: {len(t['mic_to_kernel'])} mic chunks "
                        f"({t['lane_chunks']} on the lane), p95 "
                        f"{pct(t['mic_to_kernel'], 0.95):.1f} ms, largest audio message "
                        f"{t['max_msg']:,} B{'' if ok else ' (reply timed out)'}",
                        flush=True,
                    )
                    page.wait_for_timeout(1000)
            L.run(kc, "session.close()")
            browser.close()
    finally:
        server.terminate()
        server.wait(10)

    print()
    print(
        f"server audio: {args.server_pace}; {args.rounds} replies per path; load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} CPUs)"
    )
    head = f"{'measure':34} {'path':14} {'n':>5} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}"
    print(head)
    summary: dict[str, dict[str, float]] = {}
    for key, label in SPANS:
        for name, _, _ in VARIANTS:
            xs = [x for t in results[name] for x in t[key]]
            p95 = pct(xs, 0.95)
            summary.setdefault(name, {})[key] = p95
            print(
                f"{label:34} {name:14} {len(xs):5d} {pct(xs, 0.5):10.1f} {p95:8.1f} "
                f"{max(xs, default=float('nan')):8.1f}"
            )
    for name, _, _ in VARIANTS:
        biggest = max(int(t["max_msg"]) for t in results[name])
        print(f"largest audio message, {name}: {biggest:,} bytes")
    comm, lane = summary["comm, paced"], summary["lane, paced"]
    for key in ("mic_to_kernel", "mic_from_worklet"):
        print(
            f"{key} p95 with reply audio playing: lane {lane[key]:.1f} ms vs comm "
            f"{comm[key]:.1f} ms (ratio {lane[key] / comm[key]:.2f}; target <= 40 ms: "
            f"{'met' if lane[key] <= 40 else 'NOT met'})"
        )


# --- the two transports side by side --------------------------------------------------------------
#
# The same measure for both, taken at the server, so that the relay's extra hops (page -> comm ->
# kernel -> WebSocket) and WebRTC's (Opus, RTP, jitter buffer, decoder) are both inside it:
#
# - mic -> server: for every piece of microphone audio the server's session receives (a relay
#   append, a decoded 20 ms WebRTC frame), its arrival time minus the time the page's capture tap
#   saw its last sample. The page's chunks and the server's pieces are matched by content (the
#   fake mic speaks a WAV in a loop): one cross-correlation per 1 s window of what the server got,
#   searched within the 3 s before its arrival; each piece takes the nearest window's lag.
#   Relay: the tap is the capture worklet that produces the chunks (time: its post minus the
#   chunk's length). WebRTC: a second capture worklet on the same mic track (webrtc.js's input
#   tap, which is what the recording stores).
# - server audio -> playback: relay: the server emitting a reply's first audio delta to the page
#   playing its first sample (output latency included); WebRTC: the server's speech track handing
#   a reply's first non-silent sample to the encoder to the page's output tap playing that sample
#   (output latency included).
#
# The server's turn detection is switched off in its process (the mic speaks all the time, and a
# reply must keep playing over it); both mics stream for the whole part, and each transport's
# figures are taken while a reply plays on it. Clocks: the page's epoch ms (worklets: Date.now())
# and the server's time.time(), one machine.

PROBED_SERVER = """\\
import base64, sys, threading, time
import numpy as np
from realtime_nb.local import _state
from realtime_nb.local.server import LocalServer

S = _state.RealtimeState
IN, OUT = [], []  # (t_ms, transport, pcm) / (t_ms, transport, item)
lock = threading.Lock()
LOUD = 0.01 * 32768  # the page's onset rule (rtcstate.js): above -40 dBFS after 300 ms below
last_loud = [-1e18]
first_delta = set()

on_append = S._on_input_audio_buffer_append
def append(self, event, now):
    audio = event.get("audio")
    if isinstance(audio, str):
        with lock:
            IN.append((time.time() * 1000, "websocket", base64.b64decode(audio)))
    return on_append(self, event, now)

on_track = S.append_input_audio
def track(self, pcm, now):
    with lock:
        IN.append((time.time() * 1000, "webrtc", bytes(pcm)))
    return on_track(self, pcm, now)

emit = S._emit
def emit_probe(self, etype, **fields):
    item = fields.get("item_id")
    if etype == "response.output_audio.delta" and item not in first_delta:
        first_delta.add(item)
        with lock:
            OUT.append((time.time() * 1000, "websocket", str(item)))
    return emit(self, etype, **fields)

read = S.read_output_audio
def read_probe(self, n, now):
    t = time.time() * 1000
    pcm = read(self, n, now)
    loud = np.flatnonzero(np.abs(np.frombuffer(pcm, "<i2").astype(np.int32)) > LOUD)
    if len(loud):
        t0 = t + loud[0] / 24
        if t0 - last_loud[0] >= 300:
            with lock:
                OUT.append((t0, "webrtc", ""))
        last_loud[0] = t + loud[-1] / 24
    return pcm

reset_vad = S._reset_vad
def no_vad(self):
    reset_vad(self)
    self._vad = None  # the mic speaks throughout: no turn may start or interrupt a reply

S._on_input_audio_buffer_append = append
S.append_input_audio = track
S._emit = emit_probe
S.read_output_audio = read_probe
S._reset_vad = no_vad
srv = LocalServer(port=int(sys.argv[1]), responder="echo", fast=sys.argv[2] == "burst").start()
print("ready", flush=True)
for line in sys.stdin:
    path = line.strip()
    with lock:
        np.savez(
            path,
            in_t=np.array([t for t, _, _ in IN], np.float64),
            in_kind=np.array([k for _, k, _ in IN]),
            in_pcm=np.array([p for _, _, p in IN], dtype=object),
            out_t=np.array([t for t, _, _ in OUT], np.float64),
            out_kind=np.array([k for _, k, _ in OUT]),
            out_item=np.array([i for _, _, i in OUT]),
        )
    print("dumped", flush=True)
"""

TRANSPORTS_NOTEBOOK = """\
import struct
from IPython.display import display
from realtime_nb import Session

URL, PROBE_DIR = {url!r}, {probe_dir!r}
relay = Session(url=URL, record=False, turn_detection={{"type": "server_vad"}})
rtc = Session(url=URL, record=False, transport="webrtc", turn_detection={{"type": "server_vad"}})
w1, w2 = relay.widget(), rtc.widget()
# Probes write as they go (t float64, n uint32, then n bytes): the benchmark reads the files and
# never waits for this kernel, whose shell is busy with the two widgets' messages.
_files = {{k: open(f"{{PROBE_DIR}}/{{k}}.bin", "ab", buffering=0) for k in ("relay_in", "rtc_in")}}
_plays = open(f"{{PROBE_DIR}}/relay_play.txt", "a", buffering=1)

def _put(kind, t, pcm):
    _files[kind].write(struct.pack("<dI", t, len(pcm)) + pcm)

def _relay_in(content, pcm, _f=w1._accept_mic):
    tw = content.get("tw")
    if isinstance(tw, (int, float)):
        _put("relay_in", float(tw) - len(pcm) // 2 / 24, bytes(pcm))
    return _f(content, pcm)

def _relay_play(item, t, _f=w1._latency.playback_started):
    _plays.write(f"{{item}} {{float(t)!r}}\\n")
    return _f(item, t)

def _rtc_in(content, buffers, _f=w2._webrtc._on_track):
    if content.get("track") == "input" and buffers:
        _put("rtc_in", float(content["t_page_ms"]), bytes(buffers[0]))
    return _f(content, buffers)

w1._accept_mic, w1._latency.playback_started, w2._webrtc._on_track = _relay_in, _relay_play, _rtc_in
display(w1, w2)
"""


def _read_probe(path: Path) -> list[tuple[float, bytes]]:
    """(time, pcm) records the notebook's probes wrote."""
    data = path.read_bytes() if path.exists() else b""
    out, k = [], 0
    while k + 12 <= len(data):
        t, n = struct.unpack_from("<dI", data, k)
        out.append((t, data[k + 12 : k + 12 + n]))
        k += 12 + n
    return out


#: Content alignment: window of server audio matched at once, and how far back (before its
#: arrival) the page may have captured it. 3 s is longer than any delay seen on either path and
#: shorter than the fake mic's loop (3.27 s), so one loop cannot be taken for the next.
ALIGN_WINDOW_S = 1.0
ALIGN_SEARCH_S = 3.0
#: A window counts for the lag only if it correlates this well (speech against itself through
#: Opus scores > 0.9; silence and another part of the sentence far less).
ALIGN_MIN_R = 0.8
RATE = 24_000


def _series(chunks: list[tuple[float, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """Samples (float) and each sample's time (ms) from (time of first sample, pcm16) chunks."""
    xs, ts = [], []
    for t0, pcm in chunks:
        x = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
        xs.append(x)
        ts.append(t0 + np.arange(len(x)) * 1000.0 / RATE)
    if not xs:
        return np.zeros(0, np.float32), np.zeros(0)
    return np.concatenate(xs), np.concatenate(ts)


def _best_lag(window: np.ndarray, page: np.ndarray) -> tuple[int, float]:
    """Offset in ``page`` where ``window`` fits best, and the normalized correlation there."""
    n = len(page) + len(window)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(page, size) * np.conj(np.fft.rfft(window, size)), size)
    corr = corr[: len(page) - len(window) + 1]
    # Normalize by the energy of each page stretch (running sum of squares).
    c2 = np.concatenate([[0.0], np.cumsum(page.astype(np.float64) ** 2)])
    energy = np.sqrt((c2[len(window) :] - c2[: -len(window)]) * float(np.sum(window**2))) + 1e-12
    r = corr / energy
    k = int(np.argmax(r))
    return k, float(r[k])


def mic_to_server(
    page_chunks: list[tuple[float, bytes]],
    server_chunks: list[tuple[float, bytes]],
    windows: list[tuple[float, float]],
) -> tuple[list[float], float]:
    """Per server chunk arriving inside one of ``windows`` (epoch ms), its arrival minus the
    page's capture of its last sample; and the share of voiced windows matched."""
    page, page_t = _series(page_chunks)
    if not len(page) or not server_chunks:
        return [], 0.0
    ends, arrivals, parts = [], [], []
    total = 0
    for t, pcm in server_chunks:
        x = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
        parts.append(x)
        total += len(x)
        ends.append(total - 1)
        arrivals.append(t)
    server = np.concatenate(parts)
    ends_a, arrivals_a = np.array(ends), np.array(arrivals)
    # Lag (page index - server index) from voiced windows, each searched before its arrival.
    win = int(ALIGN_WINDOW_S * RATE)
    lags: list[tuple[int, int]] = []  # (server index, lag)
    voiced = 0
    for start in range(0, len(server) - win, win):
        w = server[start : start + win]
        if float(np.sqrt(np.mean(w**2))) < 0.01:
            continue
        voiced += 1
        arrival = arrivals_a[np.searchsorted(ends_a, start + win - 1)]
        lo = int(np.searchsorted(page_t, arrival - ALIGN_SEARCH_S * 1000))
        hi = int(np.searchsorted(page_t, arrival + 20))
        if hi - lo <= win:
            continue
        k, r = _best_lag(w, page[lo:hi])
        if r >= ALIGN_MIN_R:
            lags.append((start, lo + k - start))
    if not lags:
        return [], 0.0
    # Each chunk takes the lag of the nearest matched window: the lag drifts (the page's Web
    # Audio graph runs on its own clock and resamples the track to it), so one lag cannot hold.
    at = np.array([start for start, _ in lags])
    lag_of = np.array([lag for _, lag in lags])
    matched = len(lags) / max(voiced, 1)
    out = []
    for end, arrival in zip(ends_a, arrivals_a, strict=True):
        i = end + int(lag_of[np.argmin(np.abs(at - end))])
        if 0 <= i < len(page_t) and any(a <= arrival <= b for a, b in windows):
            out.append(float(arrival - page_t[i]))
    return out, matched


def _reply_on(page: Any, root: Any, rtc: bool, timeout_s: float) -> tuple[float, float, bool]:
    """Type the reply text into one widget and wait until it played out: (start, end, ok) in
    epoch ms."""
    start = time.time() * 1000
    finished = '.rtnb-assistant[data-played-reason="finished"]'
    n = len(root.query_selector_all(finished))
    root.query_selector(".rtnb-textinput").fill(REPLY_TEXT)
    root.query_selector(".rtnb-textinput").press("Enter")
    deadline = time.monotonic() + timeout_s

    def done() -> bool:
        if rtc:
            played = root.query_selector(".rtnb-playing").inner_text() or ""
            return bool(root.get_attribute("data-rtc-seen-speaking")) and "speaking" not in played
        return len(root.query_selector_all(finished)) > n

    if rtc:  # "▶ speaking" comes and goes; note that it came
        while "speaking" not in (root.query_selector(".rtnb-playing").inner_text() or ""):
            if time.monotonic() > deadline:
                return start, time.time() * 1000, False
            page.wait_for_timeout(50)
        root.evaluate("(el) => el.setAttribute('data-rtc-seen-speaking', '1')")
    while not done():
        if time.monotonic() > deadline:
            return start, time.time() * 1000, False
        page.wait_for_timeout(100)
    if rtc:
        root.evaluate("(el) => el.removeAttribute('data-rtc-seen-speaking')")
    return start, time.time() * 1000, True


def transports(rounds: int, pace: str) -> dict[str, dict[str, list[float]]]:
    """Both transports in one JupyterLab, one page, one server; ``rounds`` replies each."""
    from playwright.sync_api import sync_playwright

    port = L.free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", PROBED_SERVER, str(port), pace],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert server.stdout is not None and server.stdin is not None
    if server.stdout.readline().strip() != "ready":
        server.kill()
        raise RuntimeError("the probed local server did not start")
    url = f"ws://127.0.0.1:{port}/v1/realtime"
    windows: dict[str, list[tuple[float, float]]] = {"websocket": [], "webrtc": []}
    try:
        with (
            tempfile.TemporaryDirectory() as d,
            L.jupyterlab(Path(d), [TRANSPORTS_NOTEBOOK.format(url=url, probe_dir=d)], {}) as lab,
            sync_playwright() as pw,
        ):
            browser, page = L.open_notebook(pw, lab, extra_args=L.WEBRTC_ARGS, height=1400)
            page.wait_for_selector(".rtnb-root >> nth=1", timeout=120_000)
            relay_root, rtc_root = page.query_selector_all(".rtnb-root")[:2]
            page.wait_for_selector(".rtnb-dot.rtnb-connected", timeout=90_000)
            relay_root.query_selector(".rtnb-mic").click()
            rtc_root.query_selector(".rtnb-mic").click()
            page.wait_for_selector('.rtnb-root[data-rtc-state="connected"]', timeout=60_000)
            page.wait_for_timeout(2000)
            for r in range(rounds):
                for kind, root in (("websocket", relay_root), ("webrtc", rtc_root)):
                    a, b, ok = _reply_on(page, root, kind == "webrtc", REPLY_TIMEOUT_S)
                    windows[kind].append((a, b))
                    print(f"transports round {r + 1} {kind:9}: reply {(b - a) / 1000:.1f} s"
                          f"{'' if ok else ' (timed out)'}", flush=True)  # fmt: skip
                    page.wait_for_timeout(1000)
            onsets_out = json.loads(rtc_root.get_attribute("data-rtc-onsets-output") or "[]")
            page.wait_for_timeout(500)  # the last chunks reach the probe files
            relay_in = _read_probe(Path(d) / "relay_in.bin")
            rtc_in = _read_probe(Path(d) / "rtc_in.bin")
            plays = [ln.split() for ln in (Path(d) / "relay_play.txt").read_text().splitlines()]
            server_probe = Path(d) / "server_probe.npz"
            server.stdin.write(f"{server_probe}\n")
            server.stdin.flush()
            assert server.stdout.readline().strip() == "dumped"
            sv = np.load(server_probe, allow_pickle=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)

    def server_in(kind: str) -> list[tuple[float, bytes]]:
        return [(float(t), bytes(p)) for t, k_, p in
                zip(sv["in_t"], sv["in_kind"], sv["in_pcm"], strict=True) if k_ == kind]  # fmt: skip

    out: dict[str, dict[str, list[float]]] = {}
    for kind, page_chunks in (("websocket", relay_in), ("webrtc", rtc_in)):
        lat, agree = mic_to_server(page_chunks, server_in(kind), windows[kind])
        out[kind] = {"mic_to_server": lat, "agree": [agree]}
    # Server audio -> playback.
    first = {str(i): float(t) for t, k_, i in zip(sv["out_t"], sv["out_kind"], sv["out_item"], strict=True)
             if k_ == "websocket"}  # fmt: skip
    out["websocket"]["audio_to_playback"] = [float(t) - first[i] for i, t in plays if i in first]
    rtc_server = [
        float(t) for t, k_ in zip(sv["out_t"], sv["out_kind"], strict=True) if k_ == "webrtc"
    ]
    played = sorted(onsets_out)
    lat_out = []
    for t in rtc_server:
        later = [p for p in played if t - 5 <= p <= t + 1500]
        if later:
            lat_out.append(later[0] - t)
    out["webrtc"]["audio_to_playback"] = lat_out
    return out


def report_transports(res: dict[str, dict[str, list[float]]]) -> None:
    print()
    print(f"{'transport':10} {'measure':26} {'n':>5} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    for kind in ("websocket", "webrtc"):
        for key, label in (
            ("mic_to_server", "mic -> server"),
            ("audio_to_playback", "server audio -> playback"),
        ):
            xs = res[kind][key]
            print(f"{kind:10} {label:26} {len(xs):5d} {pct(xs, 0.5):10.1f} {pct(xs, 0.95):8.1f} "
                  f"{max(xs, default=float('nan')):8.1f}")  # fmt: skip
        print(f"{kind:10} content alignment: {res[kind]['agree'][0]:.0%} of voiced windows matched")
    relay, rtc = (
        pct(res["websocket"]["mic_to_server"], 0.95),
        pct(res["webrtc"]["mic_to_server"], 0.95),
    )
    print(f"mic -> server p95: WebRTC {rtc:.1f} ms vs relay {relay:.1f} ms "
          f"(ratio {rtc / relay:.2f}; target <= 0.25)")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
