"""Recording benchmark: a synthetic session written, read back and exported as WAV, realtime_nb's
Arrow recording against the baselines an expert would pick, all measured in the same run.

    python benchmarks/bench_recording.py [--minutes 60] [--repeat 5] [--export-minutes 60 240]
                                         [--clock wall|cpu]

Every side starts from what a live session holds for each event: the frame text and its parsed
dict. Writers (each one's output is a complete record: time, direction, event):

- ``realtime_nb``: ``Recorder.append`` called as a live session calls it: the frame text, its
  dict and, for the microphone appends it sent, the PCM it encoded them from (``audio=``); the
  reply audio decoded from the frame text, audio cut out of the payloads and stored as raw
  bytes, every batch checksummed, secrets redacted, an ``Event`` returned per event.
- ``realtime_nb, frame text only``: the same with every frame's audio decoded from its text
  (what an import does; a live session never decodes what it sent).
- ``raw-frame JSONL``: the floor. The received frame text written as it is inside one JSON line
  (``{"t_ns":..,"source":..,"event":<frame>}``) through a buffered binary file: no parsing, no
  serializing, no audio decoding, no redaction.
- ``orjson JSONL``: ``orjson.dumps({t_ns, source, event})`` of the parsed dict, one line each.
- ``json JSONL``: the same with the standard library's ``json.dumps`` (the old baseline).

Readers (each one ends with the reduced conversation state and every audio byte of both
directions as numpy arrays, checked equal across readers; each returns them with what holds
them, the ``Recording`` or the reducer, as a user keeps it, so that freeing it is not timed):

- ``realtime_nb``: ``Recording.open(path).state``, of the file the writer above made (16 MB
  batches: events arrive faster than real time, so batches fill before the flush timer fires).
- ``realtime_nb, live batches``: the same, of the same session written as a live one is: a
  batch every ``FLUSH_INTERVAL_S`` (250 ms) of session time, ~14 400 batches an hour, which
  ``Recorder.close()`` then rewrites in large batches (its time is printed).
- ``realtime_nb, not compacted``: the same live-written file without that rewrite, as a session
  that crashed leaves it.
- ``orjson+pybase64``: the orjson file read line by line with ``orjson.loads``, audio decoded
  with ``pybase64``, fed to the same reducer through the same bulk path for microphone appends
  (``Reducer.apply_input_run``) that ``Recording`` uses.
- ``json+base64``: the standard library (``json.loads``, ``base64``), one ``Reducer.apply`` per
  event (the old baseline).
- ``orjson+pybase64, parse only``: the orjson reader with a reducer that does nothing and no
  audio arrays. What it saves is what every reader that ends with the reduced state pays, ours
  included: that over the orjson reader's time is the lowest read ratio any of them can reach.
- ``realtime_nb, open only``: ``Recording.open`` alone (map the file, verify every batch's
  CRC-32C), which our reader pays on top of that floor.

Export: for each ``--export-minutes`` a recording is written (streamed from the generator, not
held in memory), opened and reduced in a child process, then ``export_wav`` is timed and its
peak anonymous memory (``RssAnon``, sampled every few ms: the mapped recording is not counted)
measured. Its baseline is the floor for writing a WAV of that length: ``soundfile.write`` of
an in-memory int16 array of the same shape. Both start after :func:`settle`, as every other
timed run (a WAV of 240 minutes is 1.4 GB of page cache to fill).

Runs of different writers (and readers) alternate, and the best of ``--repeat`` is kept: other
work on the machine slows every side alike. Only the first round's files are kept (to be read
back); later rounds' files are deleted once timed. Every run starts (not timed) after
``os.sync()``, so that no writer pays for writing back the others' dirty pages, which the
kernel otherwise does on these same two cores while the next one runs, and after touching
then freeing more memory than any run needs (:func:`settle`): on these virtual machines a
page the guest has not used lately costs about ten times more to fill than one just freed
(96 MiB written into the page cache: 0.11-0.34 s against 0.02-0.03 s, whatever the size of
the writes), so without it whichever run happened to follow a deletion got the fast pages.
Wall and CPU time are both printed; ``--clock cpu`` judges the write and read targets on CPU
time (a busy machine makes wall time mostly waiting).
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pybase64

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime_nb.core.events import Event
from realtime_nb.core.protocol import AUDIO_FIELDS, Source
from realtime_nb.core.reducer import ConversationState, Reducer
from realtime_nb.storage.recording import FLUSH_INTERVAL_S, Recorder, Recording, make_meta
from realtime_nb.testing.synthetic import SyntheticFrame, synthetic_session

#: Targets of issue 15 (ratios to the strongest baselines, same run).
WRITE_VS_RAW: float = 1.3
READ_VS_ORJSON: float = 0.3
EXPORT_240_S: float = 3.0
EXPORT_PEAK_BYTES: float = 1e9

Audio = tuple[np.ndarray, list[np.ndarray], list[tuple[str, str]], tuple[np.ndarray, np.ndarray]]
#: What a reader returns: what it read, and what holds it (the ``Recording``, the reducer), as
#: a user keeps it: freeing it is not part of reading (see :func:`alternate`).
Read = tuple[Audio, Any]


def extract(state: ConversationState) -> Audio:
    """What every reader must agree on: both directions' audio, the items' transcripts and the
    microphone chunks' times."""
    user = state.input_audio.array().view("<i2")
    bot = [a[: len(a) // 2 * 2].view("<i2") for a in state.output_arrays().values()]
    texts = [(item.id, item.text) for item in state.items]
    return user, bot, texts, state.input_chunk_times.arrays()


# --- writers --------------------------------------------------------------------------------------


def sent_pcm(frames: list[SyntheticFrame]) -> list[bytes | None]:
    """The microphone PCM of each client append, as a live session holds it when it sends one
    (it encoded the frame from it, and hands it to ``Recorder.append(audio=...)``); ``None``
    for every other frame."""
    return [
        base64.b64decode(f.data["audio"])
        if f.source == "client" and f.data["type"] == "input_audio_buffer.append"
        else None
        for f in frames
    ]


def write_ours(frames: list[SyntheticFrame], pcm: list[bytes | None] | None, path: Path) -> None:
    """``pcm``: as :func:`sent_pcm` (what a live session passes), or ``None``: every frame's
    audio decoded from its text (what an import does)."""
    rec = Recorder(
        path, meta=make_meta(model="gpt-realtime", url="wss://api.openai.com/v1/realtime")
    )
    append = rec.append
    if pcm is None:
        for f in frames:
            append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
    else:
        for f, audio in zip(frames, pcm, strict=True):
            append(f.source, f.data, raw=f.raw, audio=audio, t_ns=f.t_ns)
    rec.close()


def write_live(
    frames: list[SyntheticFrame], pcm: list[bytes | None], path: Path, compact: bool = True
) -> float:
    """As a live session's recorder writes: a batch per flush interval of session time, then
    (``compact``) rewritten in large batches when it closes. Returns the seconds ``close()``
    took (the compaction, mostly)."""
    step = int(FLUSH_INTERVAL_S * 1e9)
    rec = Recorder(path, meta=make_meta(model="gpt-realtime"), flush_interval=3600, compact=compact)
    due = step
    for f, audio in zip(frames, pcm, strict=True):
        if f.t_ns >= due:
            rec.flush()
            due = (f.t_ns // step + 1) * step
        rec.append(f.source, f.data, raw=f.raw, audio=audio, t_ns=f.t_ns)
    t0 = time.perf_counter()
    rec.close()
    return time.perf_counter() - t0


def write_raw(frames: list[SyntheticFrame], path: Path) -> None:
    # Binary mode with one encode per line: the fastest of the pure-Python ways tried (text mode,
    # %-formatting, writelines of a list).
    with open(path, "wb") as fh:
        write = fh.write
        for f in frames:
            write(f'{{"t_ns":{f.t_ns},"source":"{f.source}","event":{f.raw}}}\n'.encode())


def write_orjson(frames: list[SyntheticFrame], path: Path) -> None:
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with open(path, "wb") as fh:
        write = fh.write
        for f in frames:
            write(dumps({"t_ns": f.t_ns, "source": f.source, "event": f.data}, option=opt))


def write_json(frames: list[SyntheticFrame], path: Path) -> None:
    dumps = json.dumps
    with open(path, "w", encoding="utf-8") as fh:
        for f in frames:
            fh.write(dumps({"t_ns": f.t_ns, "source": f.source, "event": f.data}) + "\n")


# --- readers --------------------------------------------------------------------------------------


def read_ours(path: Path) -> Read:
    rec = Recording.open(path)
    return extract(rec.state), rec


_SOURCES = {s.value: s for s in Source}
_INPUT_SENSITIVE = frozenset(
    ["input_audio_buffer.committed", "input_audio_buffer.cleared", "local.track.input"]
)
_DELTAS = frozenset(["response.output_audio.delta", "response.audio.delta"])


class ParseOnly:
    """A reducer that does nothing: :func:`read_orjson` with it measures what the baseline costs
    apart from the work every reader that ends with the state shares (the reducer, the audio
    arrays). That shared part over the whole baseline is the floor of the read ratio."""

    state = None

    def apply(self, ev: Event) -> None:
        pass

    def apply_input_run(self, *args: Any) -> None:
        pass

    def apply_output_run(self, *args: Any) -> None:
        pass


def read_orjson(path: Path) -> Read:
    """orjson + pybase64, and the reducer's bulk paths, as ``Recording`` uses them: a run of
    microphone appends is applied at once (``Reducer.apply_input_run``) before the next event
    that reads the input timeline, and a run of reply audio deltas of one item at once
    (``Reducer.apply_output_run``) before the next other event."""
    r = Reducer()
    _feed_orjson(path, r)
    return extract(r.state), r


def parse_orjson(path: Path) -> None:
    """:func:`read_orjson` without the reduction and the audio arrays (see :class:`ParseOnly`)."""
    _feed_orjson(path, ParseOnly())


def _feed_orjson(path: Path, r: Any) -> None:
    loads, b64 = orjson.loads, pybase64.b64decode
    fields = AUDIO_FIELDS
    run_t: list[int] = []
    run_off = [0]
    run_audio: list[bytes] = []
    pos = 0

    def flush_run() -> None:
        nonlocal pos
        r.apply_input_run(run_t, run_off, b"".join(run_audio))
        run_t.clear(), run_audio.clear()
        run_off[:] = [0]
        pos = 0

    out_key: tuple[str, str | None] | None = None
    out_t: list[int] = []
    out_audio: list[bytes] = []

    def flush_out() -> None:
        assert out_key is not None
        r.apply_output_run(out_key[0], out_key[1], out_t, out_audio)
        out_t.clear(), out_audio.clear()

    with open(path, "rb") as fh:
        for seq, line in enumerate(fh):
            obj = loads(line)
            ev = obj["event"]
            etype = ev["type"]
            source = obj["source"]
            field = fields.get(etype)
            if etype == "input_audio_buffer.append" and source == "client":
                chunk = b64(ev["audio"])
                run_t.append(obj["t_ns"])
                run_audio.append(chunk)
                pos += len(chunk)
                run_off.append(pos)
                continue
            if etype in _DELTAS and ev.get(field) and isinstance(ev.get("item_id"), str):
                key = (ev["item_id"], ev.get("response_id"))
                if out_t and key != out_key:
                    flush_out()
                out_key = key
                out_t.append(obj["t_ns"])
                out_audio.append(b64(ev[field]))
                continue
            if out_t:
                flush_out()
            if run_t and etype in _INPUT_SENSITIVE:
                flush_run()
            audio = b64(ev[field]) if field is not None else None
            r.apply(
                Event(
                    seq,
                    obj["t_ns"],
                    _SOURCES[source],
                    etype,
                    data=ev,
                    audio=audio,
                    item_id=ev.get("item_id"),
                    response_id=ev.get("response_id"),
                )
            )
    if run_t:
        flush_run()
    if out_t:
        flush_out()


def read_json(path: Path) -> Read:
    r = Reducer()
    loads, b64 = json.loads, base64.b64decode
    with open(path, encoding="utf-8") as fh:
        for seq, line in enumerate(fh):
            obj = loads(line)
            ev = obj["event"]
            field = AUDIO_FIELDS.get(ev["type"])
            r.apply(
                Event(
                    seq,
                    obj["t_ns"],
                    _SOURCES[obj["source"]],
                    ev["type"],
                    data=ev,
                    audio=b64(ev[field]) if field is not None else None,
                    item_id=ev.get("item_id"),
                    response_id=ev.get("response_id"),
                )
            )
    return extract(r.state), r


def same(a: Audio, b: Audio) -> bool:
    return (
        np.array_equal(a[0], b[0])
        and len(a[1]) == len(b[1])
        and all(np.array_equal(x, y) for x, y in zip(a[1], b[1], strict=True))
        and a[2] == b[2]
        and all(np.array_equal(x, y) for x, y in zip(a[3], b[3], strict=True))
    )


def settle(warm_bytes: int) -> None:
    """Start a run as every other one starts: no dirty pages left to write back, and
    ``warm_bytes`` of memory just touched and freed, so that what the run allocates (page cache
    for a writer, arrays for a reader) comes from pages the guest has used lately, whichever
    run came before (see the module docstring)."""
    gc.collect()
    os.sync()
    scratch = np.ones(warm_bytes, np.uint8)
    del scratch
    # What earlier runs left (the files' frames, their results) out of the collector's sight:
    # a run's collections walk only what it allocates, whatever ran before it.
    gc.freeze()


def alternate(
    repeat: int,
    runs: dict[str, Callable[[int], Any]],
    warm_bytes: int,
    after: Callable[[int], Any] | None = None,
) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """The best wall time and the best CPU time (this process, all threads) of each run over
    ``repeat`` rounds, the runs alternating within a round, each after :func:`settle`, and
    what each run returned last (of a reader: what it read, see :data:`Read`). ``after(i)``
    runs after each, not timed. Results are freed outside the timed runs (freeing a
    reader's state is not reading it). CPU time is what to compare on a busy machine: wall
    time then includes waiting for a core."""
    wall = dict.fromkeys(runs, float("inf"))
    cpu = dict.fromkeys(runs, float("inf"))
    kept: dict[str, Any] = {}
    for i in range(repeat):
        for name, fn in runs.items():
            kept.pop(name, None)
            settle(warm_bytes)
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn(i)
            wall[name] = min(wall[name], time.perf_counter() - t0)
            cpu[name] = min(cpu[name], time.process_time() - c0)
            gc.unfreeze()
            # A reader's result without what holds it (freed here, not timed).
            kept[name] = out[0] if isinstance(out, tuple) else out
            del out
            if after is not None:
                after(i)
    return wall, cpu, kept


# --- export (in a child process, for its memory) --------------------------------------------------


def _rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def export_child(path: str, out: str) -> None:
    """Open and reduce ``path``, then time ``export_wav`` and sample its peak anonymous memory;
    prints one JSON line."""
    import soundfile as sf

    rec = Recording.open(path)
    st = rec.state
    audio = len(st.input_audio) + sum(
        len(p.output_audio())
        for it in st.items
        for p in [it.audio_part()]
        if p is not None and p.type == "output_audio"
    )
    # As every timed run here (see settle): more memory touched and freed than the stereo WAV
    # (4 bytes a frame: at most twice the audio), so the page cache it fills is the same kind
    # of page for the export and for the floor below.
    warm = 2 * audio + (64 << 20)
    settle(warm)
    base = _rss_anon()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_anon())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    rec.export_wav(out)
    took = time.perf_counter() - t0
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], _rss_anon())
    frames = sf.info(out).frames
    os.unlink(out)
    # The floor: writing a WAV of the same shape from memory (no recording involved).
    floor_data = np.ones((frames, 2), np.int16)
    settle(warm)
    t0 = time.perf_counter()
    sf.write(out, floor_data, 24_000, subtype="PCM_16")
    floor = time.perf_counter() - t0
    os.unlink(out)
    print(
        json.dumps(
            {
                "export_s": took,
                "floor_s": floor,
                "peak": peak[0] - base,
                "audio": audio,
                "frames": frames,
            }
        )
    )


def measure_export(minutes: float, d: Path) -> dict[str, Any]:
    path = d / f"export{minutes:g}.arrow"
    rec = Recorder(path, meta=make_meta(model="gpt-realtime"), flush_interval=3600)
    for f in synthetic_session(minutes):  # streamed: a 240-minute session is ~2.5 GB as frames
        rec.append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
    rec.close()
    out = subprocess.run(
        [sys.executable, __file__, "--export-child", str(path), str(d / "out.wav")],
        check=True,
        capture_output=True,
        text=True,
    )
    path.unlink()
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=5, help="rounds; the best of each is kept")
    ap.add_argument(
        "--export-minutes",
        type=float,
        nargs="*",
        default=[60.0, 240.0],
        help="session lengths to export (none: skip the export measurement)",
    )
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="which time the write and read targets are judged on (cpu: on a busy machine)",
    )
    ap.add_argument("--export-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.export_child:
        export_child(*args.export_child)
        return
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
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)

        def fresh(kind: str, i: int) -> Path:
            p = d / f"{kind}{i}.{'arrow' if kind in ('ours', 'text') else 'jsonl'}"
            p.unlink(missing_ok=True)
            return p

        def drop_repeats(i: int) -> None:
            # Only the first round's files are read back. Later rounds' files are deleted as
            # soon as they are timed: gigabytes of dirty pages piling up would make the kernel
            # throttle (and bill) whichever writer runs next, the biggest writers most.
            if i:
                for f in d.glob(f"*{i}.*"):
                    f.unlink()

        pcm = sent_pcm(frames)
        writers = {
            "realtime_nb": lambda i: write_ours(frames, pcm, fresh("ours", i)),
            "raw-frame JSONL": lambda i: write_raw(frames, fresh("raw", i)),
            "orjson JSONL": lambda i: write_orjson(frames, fresh("orjson", i)),
            "json JSONL": lambda i: write_json(frames, fresh("json", i)),
            "realtime_nb, frame text only": lambda i: write_ours(frames, None, fresh("text", i)),
        }
        # More than the largest file (JSON lines: about 1.4x the audio) or read-back arrays.
        warm = 2 * raw_audio + (64 << 20)
        w, wc, _ = alternate(args.repeat, writers, warm, after=drop_repeats)
        ours_path, orjson_path, json_path = (
            d / "ours0.arrow",
            d / "orjson0.jsonl",
            d / "json0.jsonl",
        )
        live_path, crashed_path = d / "live.arrow", d / "crashed.arrow"
        close_s = write_live(frames, pcm, live_path)
        write_live(frames, pcm, crashed_path, compact=False)
        (d / "text0.arrow").unlink()
        readers: dict[str, Callable[[int], Any]] = {
            "realtime_nb": lambda i: read_ours(ours_path),
            "realtime_nb, live batches": lambda i: read_ours(live_path),
            "realtime_nb, not compacted": lambda i: read_ours(crashed_path),
            "orjson+pybase64": lambda i: read_orjson(orjson_path),
            "orjson+pybase64, parse only": lambda i: parse_orjson(orjson_path),
            "realtime_nb, open only": lambda i: Recording.open(ours_path),
            "json+base64": lambda i: read_json(json_path),
        }
        r, rc, results = alternate(args.repeat, readers, warm)
        ours = results["realtime_nb"]
        assert same(ours, results["orjson+pybase64"]), "orjson reader disagrees"
        assert same(ours, results["realtime_nb, live batches"]), "live-batch file disagrees"
        assert same(ours, results["realtime_nb, not compacted"]), "uncompacted file disagrees"
        crashed = Recording.open(crashed_path).integrity
        n_live = len(crashed.batches) if crashed is not None else 0
        assert same(ours, results["json+base64"]), "json reader disagrees"
        del ours
        sizes = {
            k: os.path.getsize(d / f"{k}0.{'arrow' if k == 'ours' else 'jsonl'}")
            for k in ("ours", "raw", "orjson", "json")
        }
        json_bytes = sum(
            len(p) for p in Recording.open(ours_path).table.column("payload").to_pylist()
        )
        frames.clear()  # the frames of a 60-minute session are ~1 GB
        pcm.clear()
        results.clear()

        print(f"\nwrite (best of {args.repeat}; wall s, CPU s)")
        for name in w:
            print(
                f"  {name:30}{w[name]:8.3f} {wc[name]:7.3f}   "
                f"{w[name] / w['raw-frame JSONL']:5.2f}x / {wc[name] / wc['raw-frame JSONL']:5.2f}x "
                f"raw-frame   {w[name] / w['orjson JSONL']:5.2f}x / "
                f"{wc[name] / wc['orjson JSONL']:5.2f}x orjson"
            )
        print(f"read: open, reduce, all audio (best of {args.repeat}; wall s, CPU s)")
        for name in r:
            print(
                f"  {name:30}{r[name]:8.3f} {rc[name]:7.3f}   "
                f"{r[name] / r['orjson+pybase64']:5.2f}x / "
                f"{rc[name] / rc['orjson+pybase64']:5.2f}x orjson+pybase64"
            )
        shared = r["orjson+pybase64"] - r["orjson+pybase64, parse only"]
        floor = shared / r["orjson+pybase64"]
        verify = r["realtime_nb, open only"] / r["orjson+pybase64"]
        print(
            f"  (parse only: the baseline without the reduction and the audio arrays, which every "
            f"reader that ends with the state pays: {shared:.3f} s here, so no such reader can "
            f"read in less than {floor:.2f}x the baseline; open only: Recording.open, which maps "
            f"the file and verifies every batch's checksum, {verify:.2f}x: with it, no less than "
            f"{floor + verify:.2f}x)"
        )
        print(
            f"  (live batches: written as a live session writes them, {n_live} batches, then "
            f"compacted by close() in {close_s:.2f} s; not compacted: the same file as a "
            f"session that crashed leaves it)"
        )
        print("file size (MB)")
        for k, label in (
            ("ours", "realtime_nb"),
            ("raw", "raw-frame JSONL"),
            ("orjson", "orjson JSONL"),
        ):
            print(f"  {label:22}{sizes[k] / 1e6:8.1f}   {sizes[k] / sizes['raw']:5.2f}x raw-frame")
        print(
            f"  realtime_nb / (audio + JSON payloads): {sizes['ours'] / (raw_audio + json_bytes):.3f}"
        )
        clock = (wc, rc) if args.clock == "cpu" else (w, r)
        w_ratio = clock[0]["realtime_nb"] / clock[0]["raw-frame JSONL"]
        r_ratio = clock[1]["realtime_nb"] / clock[1]["orjson+pybase64"]
        live_ratio = clock[1]["realtime_nb, live batches"] / clock[1]["orjson+pybase64"]
        checks = [
            (
                f"write <= {WRITE_VS_RAW}x raw-frame JSONL ({args.clock})",
                w_ratio <= WRITE_VS_RAW,
                f"{w_ratio:.2f}x",
            ),
            (
                f"read <= {READ_VS_ORJSON}x orjson+pybase64 ({args.clock})",
                r_ratio <= READ_VS_ORJSON,
                f"{r_ratio:.2f}x",
            ),
            (
                f"read, live batches <= {READ_VS_ORJSON}x orjson+pybase64 ({args.clock})",
                live_ratio <= READ_VS_ORJSON,
                f"{live_ratio:.2f}x",
            ),
        ]

        if args.export_minutes:
            print("export_wav (state already reduced; peak = anonymous memory above before)")
        for minutes in args.export_minutes:
            e = measure_export(minutes, d)
            print(
                f"  {minutes:5g} min: {e['export_s']:6.2f} s ({e['export_s'] / e['floor_s']:4.1f}x "
                f"writing a WAV of that length from memory: {e['floor_s']:.2f} s), peak "
                f"{e['peak'] / 1e6:6.0f} MB (audio {e['audio'] / 1e6:.0f} MB)"
            )
            if minutes == 240:
                checks.append(
                    (
                        f"240-min export < {EXPORT_240_S:g} s",
                        e["export_s"] < EXPORT_240_S,
                        f"{e['export_s']:.2f} s",
                    )
                )
            checks.append(
                (
                    f"{minutes:g}-min export peak < {EXPORT_PEAK_BYTES / 1e9:g} GB",
                    e["peak"] < EXPORT_PEAK_BYTES,
                    f"{e['peak'] / 1e6:.0f} MB",
                )
            )
    print()
    for label, passed, got in checks:
        ok &= passed
        print(f"  {'ok  ' if passed else 'MISS'} {label}: {got}")
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
