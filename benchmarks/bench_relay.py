"""What ``Session`` costs over a bare WebSocket client, measured in the same run.

    python benchmarks/bench_relay.py [--rounds 300] [--turns 6]

1. Round-trip latency: send ``conversation.item.create`` and wait for the server's
   ``conversation.item.added``, through ``Session`` (sync API from the calling thread: the path a
   notebook cell takes) and through a bare ``websockets`` client doing the same exchange.
   Rounds alternate between the two so drift affects both alike.
2. CPU of recording: the same spoken + text turns (audio in, TTS audio out) with ``record=path``
   and ``record=False``, measured as this process's CPU time (the server runs in a child process
   so its CPU is not counted).

Prints the medians, p99s and ratios; exits non-zero if a target is missed (overhead <= 1 ms at
the median and <= 5 ms at p99; recording <= 10 % extra CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(ROOT))

WAV = (
    ROOT.parent
    / "shared"
    / "fixtures"
    / "audio"
    / "realtime_whats_the_weather_pcm16_24khz_mono.wav"
)
#: Targets from the issue.
MAX_MEDIAN_OVERHEAD_MS = 1.0
MAX_P99_OVERHEAD_MS = 5.0
MAX_RECORDING_CPU = 0.10


def _serve(conn: Any) -> None:
    from realtime_nb.local import LocalServer

    with LocalServer(fast=True, responder="echo") as srv:
        conn.send(srv.url)
        conn.recv()  # until the parent says stop


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


class BareClient:
    """A plain websockets client on its own loop thread, driven synchronously like Session is."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ws = asyncio.run_coroutine_threadsafe(self._connect(url), self.loop).result()

    async def _connect(self, url: str) -> Any:
        from websockets.asyncio.client import connect

        ws = await connect(url + "?model=gpt-realtime", compression=None, max_size=None)
        while json.loads(await ws.recv())["type"] != "session.created":
            pass
        return ws

    async def _exchange(self, text: str) -> None:
        from realtime_nb.core.protocol import client

        ev = client.conversation_item_create(client.user_text_item(text))
        await self.ws.send(json.dumps(ev))
        while json.loads(await self.ws.recv())["type"] != "conversation.item.added":
            pass

    def exchange(self, text: str) -> None:
        asyncio.run_coroutine_threadsafe(self._exchange(text), self.loop).result()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.ws.close(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)


def bench_latency(url: str, rounds: int) -> tuple[list[float], list[float]]:
    from realtime_nb.client.session import Session

    bare = BareClient(url)
    s = Session(url=url, record=False)
    via_session: list[float] = []
    via_bare: list[float] = []
    for i in range(rounds + 20):  # the first 20 rounds warm up both paths and are dropped
        t0 = time.perf_counter()
        s.send_text(f"ping {i}", respond=False)
        s.wait_for("conversation.item.added", 10)
        t1 = time.perf_counter()
        bare.exchange(f"ping {i}")
        t2 = time.perf_counter()
        if i >= 20:
            via_session.append((t1 - t0) * 1000)
            via_bare.append((t2 - t1) * 1000)
    s.close()
    bare.close()
    return via_session, via_bare


def _turns(url: str, record: Any, turns: int) -> float:
    from realtime_nb.client.session import Session

    c0 = time.process_time()
    with Session(url=url, record=record, turn_detection=None) as s:
        for i in range(turns):
            s.send_audio(WAV)
            s.commit()
            s.send_text(f"turn {i}: please say a sentence of a reasonable length back to me")
            s.wait_until_idle(60)
    return time.process_time() - c0


def bench_recording(url: str, turns: int, repeats: int) -> tuple[list[float], list[float]]:
    on: list[float] = []
    off: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        _turns(url, False, 1)  # warm-up both paths: imports, pyarrow's writer, TTS caches
        _turns(url, Path(tmp) / "warmup.arrow", 1)
        for r in range(repeats):
            off.append(_turns(url, False, turns))
            on.append(_turns(url, Path(tmp) / f"run{r}.arrow", turns))
    return on, off


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child,), daemon=True)
    proc.start()
    url = parent.recv()
    try:
        sess, bare = bench_latency(url, args.rounds)
        on, off = bench_recording(url, args.turns, args.repeats)
    finally:
        parent.send("stop")
        proc.join(5)

    med_s, med_b = statistics.median(sess), statistics.median(bare)
    p99_s, p99_b = _pct(sess, 0.99), _pct(bare, 0.99)
    overhead_med, overhead_p99 = med_s - med_b, p99_s - p99_b
    cpu_on, cpu_off = statistics.median(on), statistics.median(off)
    extra = cpu_on / cpu_off - 1.0
    print(f"round trip, {args.rounds} rounds (conversation.item.create -> .added, loopback)")
    print(f"  bare websockets : median {med_b:7.3f} ms   p99 {p99_b:7.3f} ms")
    print(f"  Session         : median {med_s:7.3f} ms   p99 {p99_s:7.3f} ms")
    print(
        f"  overhead        : median {overhead_med:+7.3f} ms   p99 {overhead_p99:+7.3f} ms   "
        f"(ratio {med_s / med_b:.2f}x median)  targets <= {MAX_MEDIAN_OVERHEAD_MS} / "
        f"{MAX_P99_OVERHEAD_MS} ms"
    )
    print(f"recording CPU, {args.turns} spoken+text turns x {args.repeats} (client process)")
    print(f"  record=False    : {cpu_off:.3f} s CPU  {sorted(off)}")
    print(f"  record=path     : {cpu_on:.3f} s CPU  {sorted(on)}")
    print(
        f"  extra           : {extra:+.1%} (ratio {cpu_on / cpu_off:.3f})  target <= "
        f"{MAX_RECORDING_CPU:.0%}"
    )
    ok = (overhead_med <= MAX_MEDIAN_OVERHEAD_MS and overhead_p99 <= MAX_P99_OVERHEAD_MS
          and extra <= MAX_RECORDING_CPU)  # fmt: skip
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
