"""Warehouse export: read back by DuckDB, polars and pyarrow equals the corpus tables; re-runs add
only new recordings; a killed run leaves nothing that a re-run would duplicate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from realtime_nb.corpus import Corpus
from realtime_nb.corpus.parquet import MANIFEST, read_table

KEYS = {
    "sessions": ["recording"],
    "turns": ["recording", "turn"],
    "items": ["recording", "position"],
}


def _sorted(table: pa.Table, by: list[str]) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in by])


def _same(a: pa.Table, b: pa.Table, by: list[str]) -> None:
    b = b.select(a.column_names).cast(a.schema)
    assert _sorted(a, by).to_pylist() == _sorted(b, by).to_pylist()


def test_export_reads_back_equal_in_duckdb_polars_and_pyarrow(base: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "warehouse"
    report = base.to_parquet(out)
    assert sorted(report.added) == sorted(base.keys) and not report.skipped
    days = {d for d in base.sessions.column("day").to_pylist()}
    assert {p.name for p in (out / "events").iterdir()} == {f"day={d}" for d in days}
    for name, by in KEYS.items():
        ours = base.table(name)
        glob = f"{out}/{name}/**/*.parquet"
        via_duckdb = duckdb.sql(
            f"select * from read_parquet('{glob}', hive_partitioning = true)"
        ).to_arrow_table()
        via_polars = pl.scan_parquet(glob, hive_partitioning=True).collect().to_arrow()
        via_pyarrow = read_table(out, name)
        for got in (via_duckdb, via_polars, via_pyarrow):
            if name == "sessions":
                got = got.set_column(
                    got.schema.get_field_index("day"), "day", got.column("day").cast(pa.string())
                )
            _same(ours, got, by)
    events = base.events().read_all()
    got = duckdb.sql(
        f"select * exclude (day) from read_parquet('{out}/events/**/*.parquet', hive_partitioning = true)"
    ).to_arrow_table()
    _same(events, got, ["recording", "seq"])
    # zstd, written by a plain Parquet writer: nothing realtime_nb-specific is needed to read it.
    part = next((out / "events").rglob("*.parquet"))
    assert pq.ParquetFile(part).metadata.row_group(0).column(0).compression == "ZSTD"
    assert report.rows["events"] == events.num_rows


def test_rerunning_adds_only_new_recordings(base_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "recs"
    folder.mkdir()
    for name in ("openai_tool.arrow", "xai_tool.arrow"):
        shutil.copy(base_dir / name, folder / name)
    out = tmp_path / "warehouse"
    first = Corpus(folder, cache=False).to_parquet(out)
    assert sorted(first.added) == ["openai_tool.arrow", "xai_tool.arrow"]
    files_before = sorted(out.rglob("*.parquet"))
    again = Corpus(folder, cache=False).to_parquet(out)
    assert again.added == [] and sorted(again.skipped) == sorted(first.added)
    assert sorted(out.rglob("*.parquet")) == files_before
    shutil.copy(base_dir / "scripted.arrow", folder / "scripted.arrow")
    third = Corpus(folder, cache=False).to_parquet(out)
    assert third.added == ["scripted.arrow"]
    sessions = read_table(out, "sessions")
    assert sorted(sessions.column("recording").to_pylist()) == [
        "openai_tool.arrow",
        "scripted.arrow",
        "xai_tool.arrow",
    ]
    whole = Corpus(folder, cache=False)
    [(events,)] = duckdb.sql(
        f"select count(*) as n from read_parquet('{out}/events/**/*.parquet')"
    ).fetchall()
    assert events == whole.events().read_all().num_rows
    manifest = json.loads((out / MANIFEST).read_text())
    assert len(manifest["runs"]) == 2  # the run that added nothing wrote nothing


def test_files_of_a_killed_run_are_removed_before_the_next(base_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "recs"
    folder.mkdir()
    shutil.copy(base_dir / "openai_tool.arrow", folder / "a.arrow")
    out = tmp_path / "warehouse"
    Corpus(folder, cache=False).to_parquet(out)
    # A run killed after writing a part but before its manifest: a file no run names.
    orphan = next((out / "turns").rglob("*.parquet"))
    stray = orphan.with_name("part-killedrun.parquet")
    shutil.copy(orphan, stray)
    shutil.copy(base_dir / "xai_tool.arrow", folder / "b.arrow")
    Corpus(folder, cache=False).to_parquet(out)
    assert not stray.exists()
    turns = read_table(out, "turns")
    assert sorted(turns.column("recording").to_pylist()) == ["a.arrow", "b.arrow"]


def test_audio_table_on_request(base: Corpus, tmp_path: Path) -> None:
    demo = next(k for k in base.keys if k.startswith("demo/"))
    one = Corpus([base.path(demo)], cache=False)
    one.to_parquet(tmp_path / "w", audio=True)
    audio = read_table(tmp_path / "w", "audio")
    rec = one.recording(one.keys[0])
    roles = dict(
        zip(audio.column("item_id").to_pylist(), audio.column("role").to_pylist(), strict=True)
    )
    assert set(roles.values()) == {"user", "assistant"}
    for item_id, pcm in zip(
        audio.column("item_id").to_pylist(), audio.column("audio").to_pylist(), strict=True
    ):
        assert pcm == rec.state.item_audio(item_id)


def test_a_damaged_manifest_is_refused(tmp_path: Path, base_dir: Path) -> None:
    out = tmp_path / "w"
    out.mkdir()
    (out / MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match="manifest is damaged"):
        Corpus([base_dir / "openai_tool.arrow"], cache=False).to_parquet(out)
