"""Scaling benchmark: ``python benchmarks/bench_scaling.py [--minutes 5 15 60 240] [--runs 3] [--clock wall|cpu]``.

Synthetic sessions (``realtime_nb.testing.synthetic``, every third answer interrupted as in
``benchmarks/bench_replay_browser.py``) of 5, 15, 60 and 240 minutes, generated once into a cache
folder (``--cache``, default ``$TMPDIR/realtime_nb_bench``; the 240-minute file is ~1 GB and takes
~2 minutes to write the first time). For each size, in fresh subprocesses, time and memory of:

- ``open``: ``Recording.open(path)`` (read and verify every batch; the file is memory-mapped);
- ``reduce``: ``rec.state`` (the whole reduction, with its replay checkpoints);
- ``state_at``: ``rec.state_at(t)`` at 30 random times after the reduction (median and max);
- ``events``: ``len(rec.events)``, 200 random ``rec.events[i]`` and a walk over every event
  reading its type (the audio stays in the table);
- ``diff``: ``diff(path, path)`` (two opens, two reductions, turn matching);
- ``export_wav``: the stereo WAV of the whole session;
- ``replay_open``: ``ReplayData(Recording.open(path))`` plus a 1 000-bin overview, in its own
  process (what ``rec.play()`` does in the kernel before the first draw).

Each operation starts after touching and freeing 2.5x the file's size of memory (not timed;
``--cold`` skips it): on these virtual machines memory the guest has not used lately costs
about ten times more to fill than memory just freed (see ``benchmarks/bench_recording.py``), and
only the largest sizes, which need more than the process freed before, paid it, so the 240/60
ratios measured the VM as much as the code (replay open: 2.9-3.4 s cold against 1.35-1.44 s).

Memory is **resident set size** (RSS, sampled every 2 ms from /proc/self/statm by a thread) at
the operation's peak, minus the RSS of the process after its imports: it counts the pages of
the mapped recording that were read as well as every allocation (Python, numpy, Arrow). Each
run is a new process; the figures are the median over ``--runs``.

Prints a table, the 240/60 ratio of each figure (linear scaling is 4.0) and checks the targets
of issue 15: replay open at 240 min <= 4.5x the 60-minute figure; ``state_at`` anywhere in
60 minutes < 50 ms; ``export_wav`` of 240 minutes < 3 s and < 1 GB above the audio; open +
reduce memory close to the audio size (<= 2x). Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Issue 15's targets.
REPLAY_RATIO_TARGET = 4.5
STATE_AT_BUDGET_MS = 50.0
EXPORT_240_BUDGET_S = 3.0
EXPORT_240_MEMORY_BEYOND_AUDIO = 1e9
#: "Open + reduce memory close to the audio size": opening verifies every batch's checksum, so
#: the whole mapped file is resident (1.1x the audio: payload texts and Arrow framing beside it);
#: the reducer keeps the assistant's audio deltas as bytes (~0.3x) and the input audio where it
#: lies in the file. 2x leaves the state its room; it was 3.3x.
OPEN_REDUCE_MEMORY_X_AUDIO = 2.0
#: Every third answer interrupted, as in the browser benchmark: truncations make the replay
#: tracks and the reducer do their real work.
TRUNCATE_EVERY = 3
#: state_at samples per run and random event reads: enough for a stable max, seconds at 240 min.
STATE_AT_SAMPLES = 30
EVENT_READS = 200

_CHILD = r"""
import json, os, sys, threading, time
sys.path.insert(0, os.environ["RTNB_REPO"])
from realtime_nb.storage.recording import Recording
from realtime_nb.debugging.replay import ReplayData
from realtime_nb.debugging.diff import diff
import numpy as np, pyarrow.compute as pc
# pyarrow imports pandas on its first Python-to-Arrow conversion (~0.5 s, once per process; a
# notebook has usually paid it already): paid here, before anything is measured.
import pandas

PAGE = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE
peak = [0]
def sample():
    while True:
        r = rss()
        if r > peak[0]:
            peak[0] = r
        time.sleep(0.002)
threading.Thread(target=sample, daemon=True).start()
base = rss()
out = {}
WARM = int(os.environ["RTNB_WARM"])
def settle():
    # See bench_recording.settle: memory the guest has not used lately costs ~10x more to fill
    # on these virtual machines, which would bill the largest sizes for the VM, not the code.
    import gc
    gc.collect()
    if WARM:
        scratch = np.ones(WARM, np.uint8)
        del scratch
def measure(name, fn):
    settle()
    peak[0] = rss()
    c, t = time.process_time(), time.perf_counter()
    value = fn()
    dt, dc = time.perf_counter() - t, time.process_time() - c
    time.sleep(0.005)  # one more sample after the end
    out[name] = {"s": dt, "cpu": dc, "rss": max(peak[0], rss()) - base}
    return value

path = sys.argv[1]
which = sys.argv[2]
if which == "replay":
    data = measure("replay_open", lambda: ReplayData(Recording.open(path)).overview(1000))
else:
    rec = measure("open", lambda: Recording.open(path))
    measure("reduce", lambda: rec.state)
    out["open_reduce_rss"] = max(out["open"]["rss"], out["reduce"]["rss"])
    dur = rec.duration_s
    rng = np.random.default_rng(int(sys.argv[3]))
    costs, cpu = [], []
    for t in rng.uniform(0, dur, int(sys.argv[4])):
        c, a = time.process_time(), time.perf_counter()
        rec.state_at(float(t))
        costs.append(time.perf_counter() - a)
        cpu.append(time.process_time() - c)
    out["state_at"] = {"median_s": float(np.median(costs)), "max_s": max(costs),
                       "cpu_max_s": max(cpu)}
    def events():
        evs = rec.events
        n = len(evs)
        for i in rng.integers(0, n, int(sys.argv[5])):
            evs[int(i)].data
        return sum(1 for e in evs if e.type)
    measure("events", events)
    measure("diff", lambda: diff(path, path))
    wav = os.path.join(os.environ["RTNB_TMP"], "out.wav")
    measure("export_wav", lambda: rec.export_wav(wav))
    size = os.path.getsize(wav)
    os.unlink(wav)
    # The floor: the same number of bytes written to the same folder in 4 MiB blocks (the
    # export's window), nothing computed: what the disk and the page cache allow.
    block = bytes(4 << 20)
    def floor():
        with open(wav, "wb", buffering=0) as f:
            for i in range(0, size, len(block)):
                f.write(block[: min(len(block), size - i)])
    measure("wav_floor", floor)
    os.unlink(wav)
    col = rec.table.column("audio")
    out["audio_bytes"] = int(pc.sum(pc.binary_length(col)).as_py() or 0)
    out["events_n"] = len(rec)
print(json.dumps(out))
"""


def recording(cache: Path, minutes: float) -> Path:
    """The cached synthetic recording of ``minutes`` minutes (written the first time)."""
    path = cache / f"synthetic_{minutes:g}min_trunc{TRUNCATE_EVERY}.arrow"
    if path.exists():
        return path
    from tests.widget.lab import synthetic_recording

    cache.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    partial = path.with_suffix(".partial")
    synthetic_recording(partial, minutes, truncate_every=TRUNCATE_EVERY)
    os.replace(partial, path)  # a killed run leaves no half file under the final name
    print(f"  wrote {path.name}: {path.stat().st_size / 1e6:.0f} MB in "
          f"{time.perf_counter() - t:.0f} s", flush=True)  # fmt: skip
    return path


def child(path: Path, which: str, seed: int, tmp: str, warm: bool = True) -> dict[str, Any]:
    # Touched and freed before each operation: more than any of them allocates (replay open
    # holds the audio about twice over; the WAV is 1.5x the audio).
    scratch = int(2.5 * path.stat().st_size) if warm else 0
    env = {**os.environ, "RTNB_REPO": str(REPO), "RTNB_TMP": tmp, "RTNB_WARM": str(scratch)}
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(path),
            which,
            *map(str, (seed, STATE_AT_SAMPLES, EVENT_READS)),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if res.returncode:
        raise RuntimeError(f"{which} on {path.name} failed:\n{res.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[5, 15, 60, 240])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="what the time targets are checked on: wall time, or the process's CPU time (for a "
        "machine shared with other work, where waiting for a CPU inflates wall time)",
    )
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "realtime_nb_bench")
    ap.add_argument(
        "--cold",
        action="store_true",
        help="do not touch and free memory before each operation (see the module docstring)",
    )
    args = ap.parse_args()
    ops = ["open", "reduce", "events", "diff", "export_wav", "replay_open"]
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    rows: dict[float, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = recording(args.cache, minutes)
            runs = [child(path, "recording", k, tmp, not args.cold) for k in range(args.runs)]
            replays = [child(path, "replay", k, tmp, not args.cold) for k in range(args.runs)]
            row: dict[str, float] = {
                "audio_mb": runs[0]["audio_bytes"] / 1e6,
                "events": runs[0]["events_n"],
                "state_at_median_ms": med([r["state_at"]["median_s"] * 1e3 for r in runs]),
                "state_at_max_ms": max(r["state_at"]["max_s"] * 1e3 for r in runs),
                "state_at_cpu_max_ms": max(r["state_at"]["cpu_max_s"] * 1e3 for r in runs),
                "open_reduce_mb": med([r["open_reduce_rss"] / 1e6 for r in runs]),
                "wav_floor_s": med([r["wav_floor"]["s"] for r in runs]),
                "wav_floor_cpu": med([r["wav_floor"]["cpu"] for r in runs]),
            }
            for op in ops:
                src = replays if op == "replay_open" else runs
                row[f"{op}_s"] = med([r[op]["s"] for r in src])
                row[f"{op}_cpu"] = med([r[op]["cpu"] for r in src])
                row[f"{op}_mb"] = med([r[op]["rss"] / 1e6 for r in src])
            rows[minutes] = row
            print(
                f"{minutes:g} min ({row['events']:.0f} events, {row['audio_mb']:.0f} MB audio): "
                + ", ".join(f"{op} {row[f'{op}_s']:.3f} s / {row[f'{op}_mb']:.0f} MB" for op in ops)
                + f", state_at median {row['state_at_median_ms']:.1f} ms max "
                f"{row['state_at_max_ms']:.1f} ms (CPU {row['state_at_cpu_max_ms']:.1f} ms)",
                flush=True,
            )

    print(f"\nmedian of {args.runs} runs; memory = peak RSS above the process after its imports, "
          "cumulative within the process (open -> reduce -> state_at -> events -> diff -> "
          "export_wav; replay_open in its own process)")  # fmt: skip
    print("wall s (CPU s) / MB; CPU time is the steadier figure on a shared machine")
    head = f"{'minutes':>7} {'audio MB':>8} " + " ".join(f"{op:>25}" for op in ops)
    print(head + f" {'state_at med/max ms':>20}")
    for minutes, row in rows.items():
        cells = " ".join(
            f"{row[f'{op}_s']:7.3f} ({row[f'{op}_cpu']:6.3f}) {row[f'{op}_mb']:5.0f}" for op in ops
        )
        print(f"{minutes:7g} {row['audio_mb']:8.0f} {cells} "
              f"{row['state_at_median_ms']:9.1f}/{row['state_at_max_ms']:.1f}")  # fmt: skip

    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    clock = "wall time" if args.clock == "wall" else "CPU time"
    k = "_s" if args.clock == "wall" else "_cpu"
    ok = True
    if 60 in rows and 240 in rows:
        a, b = rows[60], rows[240]
        print("\n240/60 ratios (4.0 is linear):")
        for op in ops:
            print(f"  {op:12} time {b[f'{op}_s'] / a[f'{op}_s']:5.2f}x   CPU "
                  f"{b[f'{op}_cpu'] / a[f'{op}_cpu']:5.2f}x   memory "
                  f"{b[f'{op}_mb'] / max(a[f'{op}_mb'], 1e-9):5.2f}x")  # fmt: skip
        print(f"  {'state_at':12} max  {b['state_at_max_ms'] / a['state_at_max_ms']:5.2f}x")
        ratio = b[f"replay_open{k}"] / a[f"replay_open{k}"]
        ok &= check(f"replay open 240/60 = {ratio:.2f}x ({clock})",
                    ratio <= REPLAY_RATIO_TARGET, f"<= {REPLAY_RATIO_TARGET}x")  # fmt: skip
        print(f"  export_wav 240 min: {b['export_wav_s']:.2f} s wall, {b['export_wav_cpu']:.2f} s CPU; "
              f"writing the same bytes to the same folder: {b['wav_floor_s']:.2f} s wall "
              f"({b['export_wav_s'] / b['wav_floor_s']:.2f}x)")  # fmt: skip
        ok &= check(f"export_wav 240 min = {b[f'export_wav{k}']:.2f} s ({clock})",
                    b[f"export_wav{k}"] < EXPORT_240_BUDGET_S, f"< {EXPORT_240_BUDGET_S} s")  # fmt: skip
        beyond = b["export_wav_mb"] - b["open_reduce_mb"]
        ok &= check(f"export_wav 240 min memory beyond open + reduce = {beyond:.0f} MB",
                    beyond * 1e6 < EXPORT_240_MEMORY_BEYOND_AUDIO,
                    f"< {EXPORT_240_MEMORY_BEYOND_AUDIO / 1e6:.0f} MB")  # fmt: skip
    if 60 in rows:
        worst = rows[60]["state_at_max_ms" if args.clock == "wall" else "state_at_cpu_max_ms"]
        ok &= check(f"state_at at 60 min, worst of {STATE_AT_SAMPLES * args.runs} = "
                    f"{worst:.1f} ms ({clock})",
                    worst < STATE_AT_BUDGET_MS, f"< {STATE_AT_BUDGET_MS:.0f} ms")  # fmt: skip
    for minutes, row in rows.items():
        x = row["open_reduce_mb"] / row["audio_mb"]
        ok &= check(f"open + reduce memory at {minutes:g} min = {x:.2f}x the audio",
                    x <= OPEN_REDUCE_MEMORY_X_AUDIO or minutes < 60,
                    f"<= {OPEN_REDUCE_MEMORY_X_AUDIO}x from 60 min (fixed costs dominate below)")  # fmt: skip
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def check(what: str, good: bool, target: str) -> bool:
    print(f"{'ok  ' if good else 'MISS'} {what} (target {target})")
    return good


if __name__ == "__main__":
    raise SystemExit(main())
