"""Recording benchmark: a synthetic 60-minute session written and read back, realtime_nb's Arrow
recording against the common way (JSON lines, base64 audio, json.loads on read), same run.

    python benchmarks/bench_recording.py [--minutes 60]

Both sides start from what a live session holds for each event (the frame text and its parsed
dict). Writing: ours cuts the audio out of the frame text and stores it as raw bytes; the baseline
writes one ``json.dumps({t_ns, source, event})`` line per event. Reading: both build the same
Events, run the same reducer and extract every audio byte of both directions as numpy arrays.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime_nb.core.events import Event
from realtime_nb.core.protocol import AUDIO_FIELDS, Source
from realtime_nb.core.reducer import Reducer
from realtime_nb.storage.recording import Recorder, Recording, make_meta
from realtime_nb.testing.synthetic import synthetic_session


def extract_audio(state) -> tuple[np.ndarray, list[np.ndarray]]:  # type: ignore[no-untyped-def]  # a benchmark script, typed where it matters
    user = np.frombuffer(state.input_audio.tobytes(), dtype="<i2")
    bot = []
    for item in state.items:
        part = item.audio_part()
        if part is not None and part.type == "output_audio":
            data = part.output_audio()
            bot.append(np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2"))
    return user, bot


def write_ours(frames, path: Path) -> None:  # type: ignore[no-untyped-def]  # a benchmark script, typed where it matters
    rec = Recorder(
        path, meta=make_meta(model="gpt-realtime", url="wss://api.openai.com/v1/realtime")
    )
    append = rec.append
    for f in frames:
        append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
    rec.close()


def write_jsonl(frames, path: Path) -> None:  # type: ignore[no-untyped-def]  # a benchmark script, typed where it matters
    dumps = json.dumps
    with open(path, "w", encoding="utf-8") as fh:
        for f in frames:
            fh.write(dumps({"t_ns": f.t_ns, "source": f.source, "event": f.data}) + "\n")


def read_ours(path: Path):  # type: ignore[no-untyped-def]  # a benchmark script, typed where it matters
    rec = Recording.open(path)
    return extract_audio(rec.state)


def read_jsonl(path: Path):  # type: ignore[no-untyped-def]  # a benchmark script, typed where it matters
    r = Reducer()
    sources = {s.value: s for s in Source}
    loads, b64 = json.loads, base64.b64decode
    with open(path, encoding="utf-8") as fh:
        for seq, line in enumerate(fh):
            obj = loads(line)
            ev = obj["event"]
            field = AUDIO_FIELDS.get(ev["type"])
            audio = None
            if field is not None:
                audio = b64(ev[field])
            r.apply(
                Event(
                    seq,
                    obj["t_ns"],
                    sources[obj["source"]],
                    ev["type"],
                    data=ev,
                    audio=audio,
                    item_id=ev.get("item_id"),
                    response_id=ev.get("response_id"),
                )
            )
    return extract_audio(r.state)


def best_of(n: int, fn, *args):  # type: ignore[no-untyped-def]  # a benchmark script, typed where it matters
    times, result = [], None
    for _ in range(n):
        gc.collect()
        t0 = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each step; the best is kept")
    args = ap.parse_args()
    t0 = time.perf_counter()
    frames = list(synthetic_session(args.minutes))
    raw_audio = sum(
        len(base64.b64decode(f.data[AUDIO_FIELDS[f.data["type"]]]))
        for f in frames
        if f.data["type"] in AUDIO_FIELDS
    )
    print(
        f"synthetic {args.minutes:g}-minute session: {len(frames)} events, "
        f"{raw_audio / 1e6:.1f} MB of audio (generated in {time.perf_counter() - t0:.1f} s)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        runs = {"ours": 0, "jsonl": 0}

        def fresh(kind: str) -> Path:
            runs[kind] += 1
            return d / f"{kind}{runs[kind]}.{'arrow' if kind == 'ours' else 'jsonl'}"

        w_ours, _ = best_of(args.repeat, lambda: write_ours(frames, fresh("ours")))
        w_json, _ = best_of(args.repeat, lambda: write_jsonl(frames, fresh("jsonl")))
        ours_path, json_path = d / "ours1.arrow", d / "jsonl1.jsonl"
        r_ours, (u1, b1) = best_of(args.repeat, read_ours, ours_path)
        r_json, (u2, b2) = best_of(args.repeat, read_jsonl, json_path)
        assert np.array_equal(u1, u2)
        assert all(np.array_equal(x, y) for x, y in zip(b1, b2, strict=False))
        s_ours, s_json = os.path.getsize(ours_path), os.path.getsize(json_path)
        json_bytes = sum(
            len(p) for p in Recording.open(ours_path).table.column("payload").to_pylist()
        )
    print()
    print(f"{'':28}{'realtime_nb':>12}{'JSONL':>12}{'ratio':>9}  target")
    print(
        f"{'write (s)':28}{w_ours:12.3f}{w_json:12.3f}{w_ours / w_json:9.2f}  <= 1.5 s and <= 1.5x"
    )
    print(
        f"{'open+reduce+audio (s)':28}{r_ours:12.3f}{r_json:12.3f}{r_ours / r_json:9.2f}  <= 1 s and <= 0.2x"
    )
    print(
        f"{'file size (MB)':28}{s_ours / 1e6:12.1f}{s_json / 1e6:12.1f}{s_ours / s_json:9.2f}  <= 0.8x"
    )
    print(
        f"{'size / (audio + JSON)':28}{s_ours / (raw_audio + json_bytes):12.3f}{'':12}{'':9}  <= 1.1"
    )
    ok = (
        w_ours <= 1.5
        and w_ours <= 1.5 * w_json
        and r_ours <= 1.0
        and r_ours * 5 <= r_json
        and s_ours <= 0.8 * s_json
        and s_ours <= 1.1 * (raw_audio + json_bytes)
    )
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
