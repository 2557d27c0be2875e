"""Corpus benchmark: 100 synthetic 5-minute recordings as one dataset.

    python benchmarks/bench_corpus.py [--recordings 100] [--minutes 5]

Measures, in one run:

- *sessions + turns* tables, cold (every file reduced, without reading its audio, on the
  summary worker processes) and warm (the per-file summary cache); target: a few seconds cold.
  Before it the 2 GB just written are flushed to disk (``os.sync``), so that the measurement
  does not share the disk with their write-back; the files stay in the page cache (dropping it
  needs root and would slow every other process on the machine);
- a DuckDB query over every event (``select type, count(*) ... group by type``, streamed from the
  files); target < 1 s;
- the Parquet export, ``corpus.to_parquet(dir)``: reads the events from the Arrow files (no
  audio), writes sessions, turns, items and events as zstd Parquet, one file per table and day
  (the day partitions on up to one thread per core), and its manifest; against the baseline
  ``pyarrow.parquet.write_table(table, path, compression="zstd")`` of the same four tables
  already in memory (the events read beforehand, outside the timing), one file each, one thread
  (pyarrow's defaults otherwise, as the export's, whose events row groups are 262,144 rows
  rather than 1,048,576); target: ratio <= 1.5x (wall; the CPU ratio is printed next to it). Also against ``write_table`` of the same per-day files, in memory, one
  after the other: what the export adds beyond the layout;
- peak memory (the maximum resident set of this process and of the largest worker) and how much
  audio the corpus holds.

The CPU seconds include the worker processes and threads. The fast measurements are the best of
:data:`REPEAT` runs, the export and its baselines taking turns in each round so that a busy
neighbour slows them alike. The recordings are written by realtime_nb's recorder from
:func:`synthetic_session` (five seeds, each written once), then copied with a new start time
(spread over a week, for the day partitions): each copy keeps its batches and their checksums,
the header is re-described.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa
import pyarrow.parquet as pq

from realtime_nb.corpus import Corpus
from realtime_nb.corpus.parquet import ExportReport
from realtime_nb.storage._integrity import CRC_KEY, meta_checksum
from realtime_nb.storage.recording import META_KEY, Recorder, make_meta
from realtime_nb.testing.synthetic import synthetic_session

#: Distinct synthetic sessions written by the recorder; the rest are copies of them.
SEEDS = 5
TABLES_BUDGET_S = 5.0  # "a few seconds"
QUERY_BUDGET_S = 1.0
EXPORT_RATIO_BUDGET = 1.5
#: Runs of each fast measurement; the best is reported (the others measure the neighbours).
REPEAT = 5


def write_base(path: Path, minutes: float, seed: int) -> None:
    rec = Recorder(path, meta=make_meta(model="gpt-realtime"), flush_interval=3600)
    for f in synthetic_session(minutes, seed=seed):
        rec.append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
    rec.close()


def copy_with_start(src: Path, dst: Path, started_at: str) -> None:
    """``src`` with a new start time: same batches (and batch checksums), new description."""
    with pa.memory_map(str(src)) as source:
        reader = pa.ipc.open_stream(source)
        meta = json.loads(reader.schema.metadata[META_KEY])
        meta["started_at"] = started_at
        described = json.dumps(meta, separators=(",", ":")).encode()
        schema = reader.schema.with_metadata(
            {META_KEY: described, CRC_KEY: meta_checksum(described)}
        )
        with pa.OSFile(str(dst), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            while True:
                try:
                    batch, custom = reader.read_next_batch_with_custom_metadata()
                except StopIteration:
                    break
                writer.write_batch(batch, custom_metadata=custom)


CPU: dict[str, float] = {}


def timed(fn, label: str = ""):  # type: ignore[no-untyped-def]  # a benchmark script, typed where it matters
    """Wall seconds and the result; the process's CPU seconds go to ``CPU[label]`` (on a shared
    machine the wall time includes waiting for a core; the CPU time does not)."""
    c0, t0 = _cpu(), time.perf_counter()
    out = fn()
    CPU[label] = _cpu() - c0
    return time.perf_counter() - t0, out


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the summary workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def best_interleaved(n: int, fns: dict):  # type: ignore[no-untyped-def]  # a benchmark script
    """Each of ``fns`` run ``n`` times, taking turns; the fastest run of each (wall and CPU)."""
    best: dict[str, tuple[float, float, object]] = {}
    for k in range(n):
        for label, fn in fns.items():
            wall, out = timed(lambda fn=fn, k=k: fn(k), label)
            if label not in best or wall < best[label][0]:
                best[label] = (wall, CPU[label], out)
    for label, (_wall, cpu, _out) in best.items():
        CPU[label] = cpu
    return {label: (wall, out) for label, (wall, _cpu, out) in best.items()}


def best_of(n: int, fn, label: str):  # type: ignore[no-untyped-def]  # a benchmark script
    """The fastest of ``n`` runs (on a shared machine the others measure the neighbours)."""
    best: tuple[float, object] | None = None
    best_cpu = 0.0
    for k in range(n):
        wall, out = timed(lambda k=k: fn(k), label)
        if best is None or wall < best[0]:
            best, best_cpu = (wall, out), CPU[label]
    CPU[label] = best_cpu
    assert best is not None
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recordings", type=int, default=100)
    p.add_argument("--minutes", type=float, default=5.0)
    args = p.parse_args()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "recordings"
        root.mkdir()
        t0 = time.perf_counter()
        bases = []
        for seed in range(SEEDS):
            base = Path(tmp) / f"base{seed}.arrow"
            write_base(base, args.minutes, seed)
            bases.append(base)
        start = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc)
        for i in range(args.recordings):
            when = start + dt.timedelta(days=i % 7, minutes=7 * i)
            copy_with_start(
                bases[i % SEEDS],
                root / f"call-{i:04d}.arrow",
                when.isoformat(timespec="milliseconds"),
            )
        size = sum(f.stat().st_size for f in root.glob("*.arrow"))
        print(
            f"{args.recordings} synthetic {args.minutes:g}-minute recordings, {size / 1e9:.2f} GB "
            f"(made in {time.perf_counter() - t0:.1f} s)"
        )
        os.sync()  # the files' write-back is the setup's, not the measurement's
        cache = Path(tmp) / "cache"
        pattern = f"{root}/**/*.arrow"

        cold_s, corpus = timed(lambda: _tables(Corpus(pattern, cache_dir=cache)), "cold")
        warm_s, warm = timed(lambda: _tables(Corpus(pattern, cache_dir=cache)), "warm")
        assert warm.turns.equals(corpus.turns)
        sessions, turns = corpus.sessions, corpus.turns
        audio_s = sum(sessions.column("user_audio_s").to_pylist()) + sum(
            sessions.column("assistant_audio_s").to_pylist()
        )
        print(
            f"  {sessions.num_rows} sessions, {turns.num_rows} turns, {audio_s / 3600:.1f} h of audio"
        )

        query = "select type, count(*) as n from events group by type order by n desc"
        query_s, counts = best_of(REPEAT, lambda _k: warm.sql(query), "query")
        events = sum(counts.column("n").to_pylist())
        query2_s, _ = best_of(
            REPEAT,
            lambda _k: warm.sql(
                "select recording, count(*) filter (where type = 'response.done') as responses, "
                "max(t_ns) / 1e9 as seconds from events group by recording"
            ),
            "query2",
        )

        out = Path(tmp) / "warehouse"
        # The baselines' input: the same tables, in memory (the events read from the files here,
        # outside the timing; the export reads them itself, inside its own).
        tables = {
            "sessions": warm.sessions,
            "turns": warm.turns,
            "items": warm.items,
            "events": warm.events().read_all(),
        }
        plain = Path(tmp) / "plain"
        plain.mkdir()

        def write_plain(k: int) -> None:
            for name, table in tables.items():
                pq.write_table(table, plain / f"{name}-{k}.parquet", compression="zstd")

        # The same files as the export (a table per day), each written by plain write_table:
        # what the export adds beyond the layout itself.
        import pyarrow.compute as pc

        days = warm.sessions.column("day").to_pylist()
        keys = warm.sessions.column("recording").to_pylist()
        by_day: dict[str, list[str]] = {}
        for key, day in zip(keys, days, strict=True):
            by_day.setdefault(day, []).append(key)
        parts = {
            (name, day): table.filter(pc.is_in(table.column("recording"), pa.array(members)))
            for name, table in tables.items()
            for day, members in by_day.items()
        }

        def write_partitioned(k: int) -> None:
            for (name, day), part in parts.items():
                folder = plain / f"{k}" / name / f"day={day}"
                folder.mkdir(parents=True, exist_ok=True)
                pq.write_table(part, folder / "part.parquet", compression="zstd")

        runs = best_interleaved(
            REPEAT,
            {
                "export": lambda k: warm.to_parquet(out / str(k)),
                "plain": write_plain,
                "byday": write_partitioned,
            },
        )
        (export_s, report), (plain_s, _), (byday_s, _) = (
            runs["export"],
            runs["plain"],
            runs["byday"],
        )
        assert isinstance(report, ExportReport)
        assert report.rows["events"] == events
        parquet_mb = sum(f.stat().st_size for f in (out / "0").rglob("*.parquet")) / 1e6
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    ratio = export_s / plain_s
    print()
    print(f"{'':44}{'wall s':>9}{'CPU s':>9}  target (wall)")
    rows = [
        ("sessions + turns tables, cold (no cache)", cold_s, "cold", f"<= {TABLES_BUDGET_S:g} s"),
        ("sessions + turns tables, warm (cached)", warm_s, "warm", ""),
        (f"DuckDB group-by over all {events} events", query_s, "query", f"< {QUERY_BUDGET_S:g} s"),
        ("DuckDB per-recording aggregate of events", query2_s, "query2", f"< {QUERY_BUDGET_S:g} s"),
        ("to_parquet (reads events; per day; zstd)", export_s, "export", ""),
        ("write_table of the 4 tables in memory, zstd", plain_s, "plain", ""),
        ("write_table of the same per-day files", byday_s, "byday", ""),
    ]
    for label, wall, key, target in rows:
        print(f"{label:44}{wall:9.2f}{CPU[key]:9.2f}  {target}")
    cpu_ratio = CPU["export"] / CPU["plain"]
    print(f"{'export / write_table':44}{ratio:8.2f}x{cpu_ratio:8.2f}x  <= {EXPORT_RATIO_BUDGET:g}x")
    print(
        f"{'export / write_table per day':44}{export_s / byday_s:8.2f}x"
        f"{CPU['export'] / CPU['byday']:8.2f}x"
    )
    print(
        f"load average (1 min) at the start {load_start:.1f}, at the end "
        f"{os.getloadavg()[0]:.1f} ({os.cpu_count()} cores); CPU s include worker processes"
    )
    print(
        f"Parquet written: {parquet_mb:.1f} MB; peak memory (max RSS): {peak_mb:.0f} MB, "
        f"largest summary worker {worker_mb:.0f} MB"
    )
    ok = (
        cold_s <= TABLES_BUDGET_S
        and query_s < QUERY_BUDGET_S
        and query2_s < QUERY_BUDGET_S
        and ratio <= EXPORT_RATIO_BUDGET
    )
    print("all targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


def _tables(corpus: Corpus) -> Corpus:
    corpus.sessions  # noqa: B018  # building the tables is what is measured
    corpus.turns  # noqa: B018
    return corpus


if __name__ == "__main__":
    raise SystemExit(main())
