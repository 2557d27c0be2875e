"""Widget latency while reply audio plays, in a real browser: ``python benchmarks/bench_widget.py``.

A real JupyterLab on loopback and Debian's chromium, the microphone on (muted: it streams 50 ms
chunks of silence, so the server's VAD never cuts the reply) while the kernel streams a long
spoken reply to the page. The local server runs in its own process, as a remote API would (its
speech synthesis does not compete with the kernel for the GIL), and by default sends the reply
audio as fast as it is synthesised, as the OpenAI API does (``--server-pace realtime`` paces it).

Each round plays one reply with the old send path (``w.pace_audio = False``: all audio that
arrived in a 50 ms batch window goes in one comm message) and one with the paced one
(``_pacing.py``: messages of at most 100 ms, at most 1 s ahead of real time), in
the same session, alternating. Reports, per send path, median / p95 / max of:

- mic chunk -> kernel: the page's send time of a chunk to its arrival in the kernel's handler;
- mic chunk relay: the AudioWorklet posting the chunk to the page's main thread sending it (a
  busy main thread; not part of the figure above);
- mic chunk -> server: the page's send time to the session's last byte on the WebSocket;
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
    "for _k in ('mic_to_kernel', 'mic_relay', 'mic_to_server', 'delta_to_playback'):\n"
    "    getattr(w.timings, _k).clear()\n"
    "w._pacer.max_message_bytes = 0\n"
    "w._latency._first_delta_ms.clear()  # an earlier reply's first delta is not this one's\n"
)
COLLECT = (
    "import json, dataclasses\n"
    "print(json.dumps({**dataclasses.asdict(w.timings), 'max_msg': w.max_audio_message_bytes,"
    " 'sent': w.messages_sent, 'mic': dataclasses.asdict(w.mic_stats)}))\n"
)
SPANS = [
    ("mic_to_kernel", "mic chunk -> kernel"),
    ("mic_relay", "mic chunk relay (worklet -> page send)"),
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
    args = ap.parse_args()
    reason = L.missing()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()[0]
    server, url = start_server(args.server_pace)
    results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
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
            page.click(".rtnb-mic")
            page.wait_for_timeout(2000)
            for r in range(args.rounds):
                for paced in (False, True):
                    L.run(kc, RESET.format(paced=paced))
                    ok = play_reply(page, REPLY_TIMEOUT_S)
                    t = json.loads(L.run(kc, COLLECT))
                    t["ok"] = ok
                    results[paced].append(t)
                    name = "paced" if paced else "unpaced"
                    print(
                        f"round {r + 1} {name:8}: {len(t['mic_to_kernel'])} mic chunks, "
                        f"p95 {pct(t['mic_to_kernel'], 0.95):.1f} ms, largest audio message "
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
        f"server audio: {args.server_pace}; {args.rounds} replies per send path; load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} CPUs)"
    )
    head = f"{'measure':40} {'path':8} {'n':>5} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}"
    print(head)
    summary: dict[bool, dict[str, float]] = {}
    for key, label in SPANS:
        for paced in (False, True):
            xs = [x for t in results[paced] for x in t[key]]
            p95 = pct(xs, 0.95)
            summary.setdefault(paced, {})[key] = p95
            name = "paced" if paced else "unpaced"
            print(
                f"{label:40} {name:8} {len(xs):5d} {pct(xs, 0.5):10.1f} {p95:8.1f} "
                f"{max(xs, default=float('nan')):8.1f}"
            )
    for paced in (False, True):
        biggest = max(int(t["max_msg"]) for t in results[paced])
        print(f"largest audio message, {'paced' if paced else 'unpaced'}: {biggest:,} bytes")
    before, after = summary[False]["mic_to_kernel"], summary[True]["mic_to_kernel"]
    print(
        f"mic chunk -> kernel p95: {after:.1f} ms paced vs {before:.1f} ms unpaced "
        f"(ratio {after / before:.2f}; target <= 40 ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
