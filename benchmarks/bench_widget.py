"""Widget latency, measured with a real browser: ``python benchmarks/bench_widget.py [--turns N]``.

A real JupyterLab on loopback, Debian's chromium (fake microphone playing the weather WAV), the
local server at real-time pace. Reports median and p95 of:

- mic chunk -> kernel: the browser's send time of a 50 ms chunk to its arrival in the kernel;
- mic chunk -> server: to the moment the session sent its last byte on the WebSocket;
- server delta -> playback: the session receiving an item's first audio delta to its first sample
  leaving the browser's AudioWorklet (output latency included).

Clocks: the browser's ``performance.timeOrigin + now()`` and the kernel's ``time.time()``, one
machine, so no offset to correct (both follow the system clock to well under a millisecond).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.widget import lab as L  # noqa: E402

NOTEBOOK = [
    """\
import os
from realtime_nb import Session
from realtime_nb.local.server import LocalServer
srv = LocalServer(fast=False).start()
session = Session(url=srv.url, record=False, turn_detection={"type": "server_vad"})
w = session.widget()
w
"""
]


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=6, help="text turns for the playback latency")
    ap.add_argument("--mic-seconds", type=float, default=10.0, help="how long the mic streams")
    args = ap.parse_args()
    reason = L.missing()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory() as d,
        L.jupyterlab(Path(d), NOTEBOOK, {}) as lab,
        sync_playwright() as pw,
    ):
        browser, page = L.open_notebook(pw, lab)
        page.wait_for_selector(".rtnb-dot.rtnb-connected", timeout=90_000)
        kc = lab.kernel_client()
        page.click(".rtnb-mic")
        page.wait_for_timeout(args.mic_seconds * 1000)
        page.click(".rtnb-mute")
        page.wait_for_timeout(1000)
        L.run(kc, "session.cancel()")
        for i in range(args.turns):
            n = len(page.query_selector_all('.rtnb-assistant[data-played-reason="finished"]'))
            page.fill(".rtnb-textinput", f"turn {i}: hello")
            page.press(".rtnb-textinput", "Enter")
            deadline = time.monotonic() + 30
            while (
                len(page.query_selector_all('.rtnb-assistant[data-played-reason="finished"]')) <= n
            ):
                if time.monotonic() > deadline:
                    break
                page.wait_for_timeout(100)
        t = json.loads(
            L.run(
                kc,
                "import json, dataclasses; print(json.dumps({**dataclasses.asdict(w.timings),"
                " 'sent': w.messages_sent, 'mic': dataclasses.asdict(w.mic_stats)}))",
            )
        )
        L.run(kc, "session.close(); srv.stop()")
        browser.close()
    print(f"{'measure':34} {'n':>5} {'median ms':>10} {'p95 ms':>8}")
    for key, label in [
        ("mic_to_kernel", "mic chunk -> kernel"),
        ("mic_to_server", "mic chunk -> server (sent)"),
        ("delta_to_playback", "server delta -> start of playback"),
    ]:
        xs = t[key]
        print(f"{label:34} {len(xs):5d} {pct(xs, 0.5):10.1f} {pct(xs, 0.95):8.1f}")
    print(f"mic: {t['mic']}; comm messages sent by the kernel: {t['sent']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
