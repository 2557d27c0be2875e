"""Replay benchmark: the Python data layer of replay on a synthetic 60-minute recording.

    python benchmarks/bench_replay.py [--minutes 60] [--seeks 50]

Measures what the replay view needs: *open* (read the file, reduce it with checkpoints, lay out
both tracks) plus a 1 000-bin *overview*; and *seek* (the state at a random playhead plus a 2 s
audio window of each track). Targets: open + overview < 2 s, every seek < 100 ms. The state at
the playhead is checked against the plain reducer at a few times.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime_nb.debugging.replay import ReplayData
from realtime_nb.storage.recording import Recorder, Recording, make_meta
from realtime_nb.testing.synthetic import synthetic_session

OPEN_BUDGET_S = 2.0
SEEK_BUDGET_S = 0.100


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--seeks", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.arrow"
        t = time.perf_counter()
        rec = Recorder(path, meta=make_meta(model="gpt-realtime"))
        for f in synthetic_session(args.minutes):
            rec.append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
        rec.close()
        size = path.stat().st_size
        print(f"wrote {args.minutes:g} min synthetic session: {size / 1e6:.0f} MB in "
              f"{time.perf_counter() - t:.1f} s")  # fmt: skip

        t0 = time.perf_counter()
        data = ReplayData(Recording.open(path))
        t1 = time.perf_counter()
        ov = data.overview(1000)
        t2 = time.perf_counter()
        open_s = t2 - t0
        print(
            f"open (read + reduce + {len(data._timeline.checkpoints)} checkpoints + tracks): "
            f"{t1 - t0:.3f} s"
        )
        print(f"overview ({ov.bins} bins, both tracks): {t2 - t1:.3f} s")
        print(f"open + overview: {open_s:.3f} s (budget {OPEN_BUDGET_S} s)")

        rng = random.Random(0)
        times = [rng.uniform(0, data.duration_s) for _ in range(args.seeks)]
        times += [0.0, data.duration_s - 0.5, data.duration_s]
        costs = []
        for x in times:
            a = time.perf_counter()
            data.state_at(x)
            data.audio_window("user", x, 2.0)
            data.audio_window("assistant", x, 2.0)
            costs.append(time.perf_counter() - a)
        costs.sort()
        print(f"seek (state_at + 2 s window of each track), {len(costs)} seeks: median "
              f"{costs[len(costs) // 2] * 1000:.1f} ms, max {costs[-1] * 1000:.1f} ms "
              f"(budget {SEEK_BUDGET_S * 1000:.0f} ms)")  # fmt: skip

        # Against the plain reducer: every event up to the playhead, no checkpoint, no bulk path.
        from realtime_nb.core.reducer import Reducer

        for x in (times[0], data.duration_s / 2):
            got, want = data.state_at(x), Reducer()
            for ev in Recording.open(path).events:
                if ev.t_ns > x * 1e9:
                    break
                want.apply(ev)
            assert len(got.items) == len(want.state.items), x
            assert got.turns == want.state.turns, x
            assert got.usage == want.state.usage, x
            assert got.input_audio == want.state.input_audio, x
        print("state at the playhead == the plain reducer's (checked at 2 times)")
    ok = open_s < OPEN_BUDGET_S and costs[-1] < SEEK_BUDGET_S
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
