"""Replay in the browser: ``python benchmarks/bench_replay_browser.py [--minutes 60] [--opens 5] [--seeks 30]``.

A real JupyterLab on loopback and Debian's chromium (the tests' harness, tests/widget/lab.py)
replaying a synthetic recording (realtime_nb.testing.synthetic, 60 minutes by default: ~260 MB on disk,
~240 MB of audio; every third answer interrupted), written once into the cache folder that
bench_scaling.py shares (``--cache``). Reports median and p95 of:

- open: running the cell ``rec = Recording.open(path); w = rec.play(); w`` to the timeline's
  overview drawn (file read, reduction with checkpoints, track layout, peaks, the comm round
  trip, drawing), page clock;
- seek: a click on the timeline to the transcript and event list of the new time shown and the
  audio window under the playhead in memory, measured in the page from the click handler;
  "painted" adds the wait for the next frame to be drawn.

Budgets (issue 8): open < 2 s, seek < 100 ms. Also prints what the page received in total.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from tests.widget import lab as L  # noqa: E402

OPEN_BUDGET_MS = 2000.0
SEEK_BUDGET_MS = 100.0
NOTEBOOK = [
    """\
import os
from realtime_nb.storage.recording import Recording
try:
    w.close()  # the previous run's widget and its data
except NameError:
    pass
rec = Recording.open(os.environ["RTNB_REPLAY_RECORDING"])
w = rec.play()
w
"""
]


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--opens", type=int, default=5)
    ap.add_argument("--seeks", type=int, default=30)
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "realtime_nb_bench",
        help="folder of synthetic recordings shared with bench_scaling.py (written if missing)",
    )
    args = ap.parse_args()
    reason = L.missing()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        from bench_scaling import recording  # the same recording, generated once

        path = recording(args.cache, args.minutes)
        size = path.stat().st_size
        print(f"a {args.minutes:g}-minute synthetic recording: {size / 1e6:.0f} MB")
        env = {"RTNB_REPLAY_RECORDING": str(path)}
        tap = L.WsTap()
        with L.jupyterlab(tmp, NOTEBOOK, env) as lab, sync_playwright() as pw:
            browser, page = L.open_notebook(pw, lab, tap, run_all=False)
            opens: list[float] = []
            for i in range(args.opens):
                page.wait_for_timeout(500)
                start = page.evaluate("() => performance.now()")
                L.run_cell(page, 0)
                page.wait_for_function(
                    f"() => {{ const r = document.querySelector('.rtnb-replay');"
                    f" return r && Number(r.dataset.overviewAt) > {start}; }}",
                    timeout=120_000,
                )
                at = float(page.eval_on_selector(".rtnb-replay", "e => e.dataset.overviewAt"))
                opens.append(at - start)
                print(f"  open {i + 1}: {opens[-1]:.0f} ms")
            box = page.locator(".rtnb-replay canvas").bounding_box()
            rng = random.Random(0)
            seeks: list[float] = []
            painted: list[float] = []
            outside: list[float] = []
            parts: list[tuple[float, float]] = []  # (state shown, audio in memory) after the click
            page.wait_for_timeout(500)
            for _ in range(args.seeks):
                n = int(page.eval_on_selector(".rtnb-replay", "e => e.dataset.seeks || 0"))
                x = box["x"] + rng.uniform(0.01, 0.99) * box["width"]
                t0 = time.perf_counter()
                page.mouse.click(x, box["y"] + box["height"] / 2)
                page.wait_for_function(
                    f"() => Number(document.querySelector('.rtnb-replay').dataset.seeks || 0) > {n}",
                    timeout=10_000,
                )
                outside.append((time.perf_counter() - t0) * 1000)
                page.wait_for_timeout(60)  # let the paint measurement land
                d = page.eval_on_selector(".rtnb-replay", "e => ({...e.dataset})")
                seeks.append(float(d["seekMs"]))
                parts.append(
                    (float(d.get("seekStateMs", "nan")), float(d.get("seekAudioMs", "nan")))
                )
                painted.append(float(d.get("seekPaintMs", "nan")))
                page.wait_for_timeout(100)
            kc = lab.kernel_client()
            stats = json.loads(
                L.run(
                    kc,
                    "import json; print(json.dumps({'sent': w.sent_stats, "
                    "'load_s': w.load_s, 'frontend': w.frontend_log}))",
                )
            )
            browser.close()
        from realtime_nb.storage.recording import Recording

        rec_audio = sum(len(e.audio or b"") for e in Recording.open(path).events)

    ok = True
    print(f"open: click 'run' -> overview drawn, {len(opens)} runs: median {pct(opens, 0.5):.0f} ms, "
          f"p95 {pct(opens, 0.95):.0f} ms (budget {OPEN_BUDGET_MS:.0f} ms); "
          f"of which reading in the kernel (last run): {stats['load_s'] * 1000:.0f} ms")  # fmt: skip
    print(f"seek: click -> state shown + audio ready, {len(seeks)} seeks: median "
          f"{pct(seeks, 0.5):.1f} ms, p95 {pct(seeks, 0.95):.1f} ms, max {max(seeks):.1f} ms "
          f"(budget {SEEK_BUDGET_MS:.0f} ms)")  # fmt: skip
    print(f"      state shown: median {pct([p[0] for p in parts], 0.5):.1f} ms; audio window in "
          f"memory: median {pct([p[1] for p in parts], 0.5):.1f} ms")  # fmt: skip
    print(f"      ... and painted: median {pct(painted, 0.5):.1f} ms, p95 {pct(painted, 0.95):.1f} ms;"
          f" seen from Playwright: median {pct(outside, 0.5):.1f} ms")  # fmt: skip
    print(f"page received {tap.bytes_received() / 1e6:.1f} MB in total "
          f"({stats['sent']['audio']} audio windows, {stats['sent']['audio_bytes'] / 1e6:.1f} MB); "
          f"the recording holds {rec_audio / 1e6:.0f} MB of audio")  # fmt: skip
    if stats["frontend"]:
        print("front-end problems:", stats["frontend"])
        ok = False
    if pct(opens, 0.5) >= OPEN_BUDGET_MS:
        print("FAIL: open over budget")
        ok = False
    if pct(seeks, 0.95) >= SEEK_BUDGET_MS:
        print("FAIL: seek over budget")
        ok = False
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
