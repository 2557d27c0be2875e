"""Rewrite a cleanly closed, live-written recording in large batches.

A live session writes a batch every :data:`~.recording.FLUSH_INTERVAL_S` so that a crash loses
at most that much: about 14 400 batches an hour. Reading such a file pays per batch (decoding
the message, validating it, checking its checksum): about 1 s of an hour's 1.5 s open and
reduce, three times what the same events cost in large batches. Once the recorder has closed
the file there is nothing left to protect against a crash mid-session, so it is rewritten as a
recording written at once would be: batches of up to :data:`~.recording.MAX_BATCH_BYTES`, each
with its checksum and ``seq`` range, the same schema and description, the same closing batch.

Crash safety: the new file is written beside the old one and renamed over it (atomic on POSIX),
so the path always holds one whole recording or the other. The old file is
read with a plain stream reader: anything unexpected in it (it was damaged after it was
written, or is not ours) leaves it as it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa

from ._integrity import batch_metadata, closing_metadata

#: Files with fewer batches are left as they are (a short session, or one written at once).
MIN_BATCHES: Final = 64


def compact(path: Path, events: int, max_batch_bytes: int) -> bool:
    """Rewrite ``path`` (a closed recording holding ``events`` events) in batches of at most
    ``max_batch_bytes``; returns whether it was rewritten. Never raises for a file it cannot
    use: it is left untouched (an ``OSError`` while writing the new file leaves the old one).
    """
    try:
        with pa.memory_map(str(path)) as src:
            reader = pa.ipc.open_stream(src)
            schema = reader.schema
            batches = [b for b in reader if b.num_rows]
    except (pa.ArrowException, OSError, ValueError):
        return False
    if len(batches) < MIN_BATCHES:
        return False
    table = pa.Table.from_batches(batches, schema)
    seq = np.asarray(table.column(0).to_numpy(), np.int64)
    if len(seq) != events or (len(seq) and (seq[0] != 0 or (np.diff(seq) != 1).any())):
        return False  # not the whole, ordered recording this recorder wrote
    tmp = path.with_name(f".{path.name}.compact")
    try:
        with pa.OSFile(str(tmp), "wb") as sink:
            writer = pa.ipc.new_stream(sink, schema)
            for lo, hi in _row_ranges(table, max_batch_bytes):
                # Through its IPC form: the checksum covers the buffers as a reader decodes them
                # (a slice's are its parent's, and a validity bitmap without nulls is dropped).
                part = table.slice(lo, hi - lo).combine_chunks().to_batches()[0]
                batch = pa.ipc.read_record_batch(part.serialize(), schema)
                meta = batch_metadata(batch, int(seq[lo]), int(seq[hi - 1]))
                writer.write_batch(batch, custom_metadata=meta)
            empty = schema.empty_table().to_batches()
            closing = empty[0] if empty else pa.RecordBatch.from_pylist([], schema=schema)
            writer.write_batch(closing, custom_metadata=closing_metadata(closing, events))
            writer.close()
        # No fsync, as for the batches themselves: the promise is against the process dying
        # (the page cache has both files), and a rename over a file flushes the new one first
        # on the usual Linux file systems.
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return True


def _row_ranges(table: pa.Table, max_bytes: int) -> list[tuple[int, int]]:
    """Consecutive row ranges whose payload and audio bytes stay under ``max_bytes`` (a single
    larger row is a range of its own)."""
    import pyarrow.compute as pc

    sizes = np.zeros(table.num_rows, np.int64)
    for name in ("payload", "audio"):
        lengths = pc.fill_null(pc.binary_length(table.column(name)), 0)
        sizes += np.asarray(lengths.to_numpy(), np.int64)
    ends = np.cumsum(sizes)
    ranges = []
    lo = 0
    while lo < len(sizes):
        base = ends[lo - 1] if lo else 0
        hi = int(np.searchsorted(ends, base + max_bytes, side="right"))
        hi = max(hi, lo + 1)
        ranges.append((lo, hi))
        lo = hi
    return ranges
