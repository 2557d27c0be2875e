"""Warehouse export: a corpus as zstd Parquet tables partitioned by day, added to incrementally.

Layout (Hive-style partitions, which DuckDB, polars, pyarrow datasets, Spark, Trino, BigQuery
external tables and Ray Data all read as a ``day`` column)::

    DIR/sessions/day=2026-12-03/part-<run>.parquet
    DIR/turns/day=.../part-<run>.parquet
    DIR/items/day=.../part-<run>.parquet
    DIR/events/day=.../part-<run>.parquet
    DIR/audio/day=.../part-<run>.parquet        (only with audio=True)
    DIR/_realtime_nb_export.json                (what was exported, by run)

Each run writes one file per table and day for the recordings not exported before (by their
key, the path relative to the corpus root), so a re-run adds only new recordings. A file is
written under a temporary name and renamed; the manifest is rewritten last. A run killed before
its manifest leaves files the manifest does not name, which the next run deletes first: a
recording is never exported twice.

Audio stays in the Arrow recordings by default (the events table says how many bytes each event
carried): it is 90-99 % of a recording's bytes, warehouses scan binary columns poorly, and the
questions asked of a warehouse (latency, cost, what was said, which tools) never read it.
``audio=True`` adds an ``audio`` table, one row per conversation item with its PCM, for teams that
want the sound next to the rows.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import _cache

if TYPE_CHECKING:
    from .corpus import Corpus

__all__ = ["AUDIO_SCHEMA", "MANIFEST", "ExportReport", "export"]

#: The manifest's file name in the export folder.
MANIFEST: Final = "_realtime_nb_export.json"
#: Version of the export layout written into the manifest (a newer one is refused).
EXPORT_VERSION: Final = 1
#: Rows per Parquet row group of the events table: large enough that zstd and the readers work
#: on big runs (DuckDB and Spark parallelise per row group), small enough that the writer holds
#: only a few tens of megabytes of payload text at a time.
EVENTS_ROW_GROUP: Final = 262_144
TABLE_NAMES: Final = ("sessions", "turns", "items", "events")
#: Most day partitions written at once (one thread each, up to the number of cores): past four,
#: the disk rather than the encoder is the limit.
EXPORT_THREADS: Final = 4

AUDIO_SCHEMA: Final = pa.schema(
    [
        pa.field("recording", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("role", pa.string()),
        pa.field("format", pa.string()),
        pa.field("sample_rate", pa.int32()),
        pa.field("duration_ms", pa.float64()),
        pa.field("audio", pa.binary()),
    ]
)


@dataclass
class ExportReport:
    """What one :func:`export` run did."""

    directory: Path
    run: str
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: Exported before, but the file changed since (grown, rewritten): not re-exported.
    changed: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def __repr__(self) -> str:
        rows = ", ".join(f"{k} {v}" for k, v in self.rows.items())
        return (
            f"<ExportReport {self.directory}: {len(self.added)} recordings added, "
            f"{len(self.skipped)} already there{f', {len(self.changed)} changed since' if self.changed else ''}; "
            f"rows: {rows or 'none'}; {self.seconds:.2f} s>"
        )


def _load_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.exists():
        return {"export_version": EXPORT_VERSION, "runs": [], "recordings": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ValueError(
            f"{path} is not valid JSON: the export folder's manifest is damaged; export into a "
            "new folder"
        ) from None
    if manifest.get("export_version", 0) > EXPORT_VERSION:
        raise ValueError(
            f"{directory} was written by a newer realtime_nb (export version "
            f"{manifest.get('export_version')}); upgrade it: pip install -U realtime-nb"
        )
    return dict(manifest)


def _remove_uncommitted(directory: Path, runs: Sequence[str]) -> None:
    """Delete part files of runs the manifest does not name (a run killed before its end)."""
    known = set(runs)
    for part in directory.glob("*/day=*/part-*.parquet"):
        run = part.stem.removeprefix("part-")
        if run not in known:
            part.unlink()
    for tmp in directory.glob("*/day=*/.part-*.tmp"):
        tmp.unlink()


def _write(table: pa.Table, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp")
    # Arrow's default zstd level: fast to write, and what any reader expects.
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return path


def _write_events(batches: Iterator[pa.RecordBatch], schema: pa.Schema, path: Path) -> int:
    """Stream ``batches`` into one Parquet file, a row group per :data:`EVENTS_ROW_GROUP` rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp")
    rows = 0
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for batch in batches:
            pending.append(batch)
            pending_rows += batch.num_rows
            if pending_rows >= EVENTS_ROW_GROUP:
                writer.write_table(
                    pa.Table.from_batches(pending, schema), row_group_size=EVENTS_ROW_GROUP
                )
                rows += pending_rows
                pending, pending_rows = [], 0
        if pending:
            writer.write_table(
                pa.Table.from_batches(pending, schema), row_group_size=EVENTS_ROW_GROUP
            )
            rows += pending_rows
    os.replace(tmp, path)
    return rows


def _audio_rows(corpus: Corpus, keys: Sequence[str]) -> pa.Table:
    rows: list[dict[str, Any]] = []
    for key in keys:
        rec = corpus.recording(key)
        st = rec.state
        for item in st.items:
            if item.type != "message":
                continue
            pcm = st.item_audio(item.id)
            if not pcm:
                continue
            fmt = st.input_format if item.role == "user" else st.output_format
            rows.append(
                {
                    "recording": key,
                    "item_id": item.id,
                    "role": item.role,
                    "format": fmt.type,
                    "sample_rate": fmt.rate,
                    "duration_ms": fmt.duration_ms(len(pcm)),
                    "audio": pcm,
                }
            )
    return pa.Table.from_pylist(rows, schema=AUDIO_SCHEMA)


def export(corpus: Corpus, directory: str | Path, *, audio: bool = False) -> ExportReport:
    """Write the corpus's recordings not yet in ``directory`` as zstd Parquet (see the module
    docstring for the layout and why audio is left out by default).

    Raises:
        ValueError: the folder's manifest is damaged or from a newer realtime_nb.
        OSError: the folder cannot be written.
    """
    t0 = time.perf_counter()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    manifest = _load_manifest(out)
    _remove_uncommitted(out, [r["run"] for r in manifest["runs"]])
    run = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    report = ExportReport(out, run)
    sessions = corpus.sessions
    done: dict[str, Any] = manifest["recordings"]
    new: list[str] = []
    for key, mt, size in zip(
        sessions.column("recording").to_pylist(),
        sessions.column("mtime_ns").to_pylist(),
        sessions.column("size_bytes").to_pylist(),
        strict=True,
    ):
        if key in done:
            report.skipped.append(key)
            if (done[key].get("mtime_ns"), done[key].get("size_bytes")) != (mt, size):
                report.changed.append(key)
        else:
            new.append(key)
    report.added = new
    if new:
        days: dict[str, list[str]] = {}
        day_of = dict(
            zip(
                sessions.column("recording").to_pylist(),
                sessions.column("day").to_pylist(),
                strict=True,
            )
        )
        for key in new:
            days.setdefault(day_of.get(key) or "unknown", []).append(key)
        tables = {"sessions": sessions, "turns": corpus.turns, "items": corpus.items}
        name = f"part-{run}.parquet"

        def write_day(day: str, keys: list[str]) -> tuple[list[Path], dict[str, int]]:
            files: list[Path] = []
            rows: dict[str, int] = {}
            chosen = set(keys)
            for tname, table in tables.items():
                part = _cache.keep_rows(table, chosen)
                if tname == "sessions":  # day is the partition; the path is this machine's
                    part = part.drop_columns(["day"])
                files.append(_write(part, out / tname / f"day={day}" / name))
                rows[tname] = part.num_rows
            events_path = out / "events" / f"day={day}" / name
            reader = corpus.events(recordings=sorted(chosen))
            rows["events"] = _write_events(iter(reader), reader.schema, events_path)
            files.append(events_path)
            if audio:
                sound = _audio_rows(corpus, sorted(chosen))
                files.append(_write(sound, out / "audio" / f"day={day}" / name))
                rows["audio"] = sound.num_rows
            return files, rows

        # One day per thread: the Parquet writer (encoding, zstd) releases the GIL, so a day's
        # files are written while the next day's events are read, on every core.
        ordered = sorted(days.items())
        threads = min(len(ordered), os.cpu_count() or 1, EXPORT_THREADS)
        with ThreadPoolExecutor(threads, thread_name_prefix="realtime_nb-export") as pool:
            for files, rows in pool.map(lambda d: write_day(*d), ordered):
                report.files.extend(files)
                for tname, count in rows.items():
                    report.rows[tname] = report.rows.get(tname, 0) + count
        s = _cache.keep_rows(sessions, set(new))
        for key, mt, size, day in zip(
            s.column("recording").to_pylist(),
            s.column("mtime_ns").to_pylist(),
            s.column("size_bytes").to_pylist(),
            s.column("day").to_pylist(),
            strict=True,
        ):
            done[key] = {"mtime_ns": mt, "size_bytes": size, "day": day, "run": run}
        manifest["runs"].append(
            {"run": run, "recordings": len(new), "audio": audio, "rows": report.rows}
        )
        manifest["export_version"] = EXPORT_VERSION
        tmp = out / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, out / MANIFEST)
    report.seconds = time.perf_counter() - t0
    return report


def read_table(directory: str | Path, name: str) -> pa.Table:
    """Read one exported table back with pyarrow (``day`` from the partition folders), for
    checks and notebooks; any Parquet reader does the same.

    Raises:
        ValueError: ``name`` is not an exported table.
    """
    import pyarrow.dataset as ds

    if name not in (*TABLE_NAMES, "audio"):
        raise ValueError(f"unknown table {name!r}; exported: {', '.join((*TABLE_NAMES, 'audio'))}")
    base = Path(directory) / name
    if not base.exists():
        raise FileNotFoundError(f"no {name} table under {directory}")
    dataset = ds.dataset(base, format="parquet", partitioning="hive", exclude_invalid_files=True)
    table = dataset.to_table()
    if "day" in table.column_names:
        table = table.set_column(
            table.schema.get_field_index("day"), "day", pc.cast(table.column("day"), pa.string())
        )
    return table
