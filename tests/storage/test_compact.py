"""A live-written recording (a batch per flush) is rewritten in large batches when its recorder
closes it: the same events, metadata and state, a clean integrity report, and far fewer batches;
a file it cannot vouch for is left as it is."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from realtime_nb.storage._compact import MIN_BATCHES, compact
from realtime_nb.storage.recording import Recorder, Recording, make_meta
from realtime_nb.testing.synthetic import synthetic_session


def _write(path: Path, *, every: int, compact: bool = True, max_rows: int | None = None) -> int:
    """A synthetic session with a batch every ``every`` events (a live session's flushes)."""
    frames = list(synthetic_session(1.0))[:max_rows]
    with Recorder(path, meta=make_meta(model="m"), flush_interval=3600, compact=compact) as rec:
        for i, f in enumerate(frames):
            rec.append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
            if i % every == every - 1:
                rec.flush()
    return len(frames)


def _batches(path: Path) -> int:
    with pa.memory_map(str(path)) as src:
        return sum(1 for _ in pa.ipc.open_stream(src))


def test_a_live_written_file_is_compacted_on_close(tmp_path: Path) -> None:
    live, kept = tmp_path / "live.arrow", tmp_path / "kept.arrow"
    n = _write(live, every=5)
    _write(kept, every=5, compact=False)
    assert _batches(kept) > MIN_BATCHES
    assert _batches(live) == 2  # every event fits one large batch, then the closing batch
    a, b = Recording.open(live), Recording.open(kept)
    assert a.integrity is not None and a.integrity.damage == [] and a.integrity.clean_end
    assert a.integrity.closed_count == n and all(x.verified for x in a.integrity.batches)
    assert {**a.meta, "started_at": None} == {**b.meta, "started_at": None}
    assert a.table.equals(b.table)
    assert a.state.items == b.state.items and bytes(a.state.input_audio) == bytes(
        b.state.input_audio
    )
    assert not list(tmp_path.glob(".*.compact"))  # no temporary file left behind


def test_large_batches_are_cut_at_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "live.arrow"
    n = _write(path, every=3, compact=False)
    before = Recording.open(path)
    assert compact(path, n, max_batch_bytes=200_000)
    rec = Recording.open(path)
    assert rec.meta == before.meta and rec.table.equals(before.table)
    assert rec.integrity is not None and rec.integrity.damage == []
    sizes = [b.batch.nbytes for b in rec.integrity.batches]
    assert len(sizes) > 3 and max(sizes) < 200_000 + 20_000  # one row may tip it over
    assert [b.first for b in rec.integrity.batches] == sorted(
        b.first for b in rec.integrity.batches
    )


def test_short_or_unusual_files_are_left_alone(tmp_path: Path) -> None:
    short = tmp_path / "short.arrow"
    n = _write(short, every=1000)  # a few batches: nothing to gain
    before = short.read_bytes()
    assert not compact(short, n, 1 << 24)
    assert short.read_bytes() == before
    # The count the recorder knows differs from the file's (not the file it wrote): kept.
    live = tmp_path / "live.arrow"
    n = _write(live, every=2, compact=False)
    before = live.read_bytes()
    assert not compact(live, n + 1, 1 << 24)
    # Damaged after writing (cut in the middle): the plain reader fails, the file stays.
    cut = tmp_path / "cut.arrow"
    cut.write_bytes(before[: len(before) // 2])
    assert not compact(cut, n, 1 << 24)
    assert cut.read_bytes() == before[: len(before) // 2]


@pytest.mark.parametrize("batches", [MIN_BATCHES - 1, MIN_BATCHES])
def test_the_threshold(tmp_path: Path, batches: int) -> None:
    path = tmp_path / "r.arrow"
    _write(path, every=1, max_rows=batches)
    assert _batches(path) == (2 if batches >= MIN_BATCHES else batches + 1)
