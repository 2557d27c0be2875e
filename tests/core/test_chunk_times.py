"""ChunkTimes: the microphone chunks' send times and offsets, read as a list of pairs."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from realtime_nb.core.chunk_times import ChunkTimes
from realtime_nb.core.events import Event, Source
from realtime_nb.core.reducer import Reducer


def test_it_reads_as_the_list_of_pairs_it_replaced() -> None:
    pairs = [(10, 0), (20, 480), (35, 960), (40, 1440)]
    ct = ChunkTimes(pairs)
    assert len(ct) == 4 and ct and not ChunkTimes()
    assert list(ct) == pairs and ct == pairs and ct == tuple(pairs)
    assert ct != pairs[:3] and ct != [(10, 0), (20, 480), (35, 960), (41, 1440)]
    assert ct != [[10, 0], [20, 480], [35, 960], [40, 1440]]  # pairs are tuples
    assert ct[0] == (10, 0) and ct[-1] == (40, 1440)
    head = ct[:2]
    assert isinstance(head, ChunkTimes) and head == pairs[:2]
    assert ct[1::2] == pairs[1::2]
    with pytest.raises(IndexError):
        ct[4]
    with pytest.raises(TypeError):
        hash(ct)
    assert repr(ChunkTimes([(1, 2)])) == "ChunkTimes([(1, 2)])"
    long = ChunkTimes([*pairs, (50, 1920)])
    assert "5 chunks" in repr(long) and "(50, 1920)" in repr(long)
    assert ct.__eq__(object()) is NotImplemented


def test_every_way_of_growing_gives_the_same_times() -> None:
    pairs = [(i * 20_000_000, i * 960) for i in range(50)]
    t = np.array([p[0] for p in pairs], np.int64)
    off = np.array([p[1] for p in pairs], np.int64)
    one = ChunkTimes()
    for p in pairs:
        one.append(p)
    by_add = ChunkTimes()
    for a, b in pairs:
        by_add.add(a, b)
    fast = ChunkTimes()
    fast.extend_arrays(t[:20], off[:20])  # int64 arrays: the reader's fast path
    fast.extend_arrays(t[20:], off[20:])
    lists = ChunkTimes()
    lists.extend_arrays(t.tolist(), off.tolist())
    other_dtype = ChunkTimes()
    other_dtype.extend_arrays(t.astype(np.uint64), off.astype(np.int32))
    chained = ChunkTimes(pairs[:10])
    chained.extend(ChunkTimes(pairs[10:]))
    for ct in (by_add, fast, lists, other_dtype, chained):
        assert ct == one and ct == pairs
    got_t, got_off = fast.arrays()
    assert got_t.dtype == np.int64 and np.array_equal(got_t, t) and np.array_equal(got_off, off)
    # arrays() are copies: the times keep growing (a live session) while they are held.
    fast.add(10**12, 48_000)
    assert len(fast) == 51 and len(got_t) == 50


def test_values_outside_int64_are_clamped_not_raised() -> None:
    ct = ChunkTimes()
    ct.add(2**70, 5)
    ct.append((-(2**70), 2**64))
    assert list(ct) == [(2**63 - 1, 5), (-(2**63), 2**63 - 1)]
    big = ChunkTimes()
    big.extend_arrays([1, 2**80], [0, 3])
    assert list(big) == [(1, 0), (2**63 - 1, 3)]


def test_mismatched_arrays_are_refused_with_both_lengths() -> None:
    ct = ChunkTimes([(1, 0)])
    with pytest.raises(ValueError, match=r"\(3,\) and \(2,\)"):
        ct.extend_arrays(np.arange(3), np.arange(2))
    with pytest.raises(ValueError, match="3 and 2"):
        ct.extend_arrays([1, 2**80, 3], [0, 1])
    with pytest.raises(ValueError, match="1-D"):
        ct.extend_arrays(np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64))
    assert ct == [(1, 0)]  # nothing half-added


def test_index_at_finds_the_chunk_holding_a_byte() -> None:
    ct = ChunkTimes([(10, 0), (20, 480), (30, 480), (40, 960)])  # an empty chunk at 480
    assert ct.index_at(-1) == -1
    assert ct.index_at(0) == 0 and ct.index_at(479) == 0
    assert ct.index_at(480) == 2  # the last chunk starting there
    assert ct.index_at(959) == 2 and ct.index_at(960) == 3 and ct.index_at(10**9) == 3
    assert ChunkTimes().index_at(0) == -1


def test_copies_are_independent_and_pickle_round_trips() -> None:
    ct = ChunkTimes([(1, 0), (2, 480)])
    for other in (copy.copy(ct), copy.deepcopy(ct), pickle.loads(pickle.dumps(ct)), ct[:]):
        assert isinstance(other, ChunkTimes) and other == ct
        other.add(3, 960)
        assert len(ct) == 2


def test_the_reducer_keeps_every_appends_time_in_order() -> None:
    r = Reducer()
    for i in range(3):
        r.apply(
            Event(
                i,
                i * 20_000_000,
                Source.CLIENT,
                "input_audio_buffer.append",
                data={"type": "input_audio_buffer.append"},
                audio=b"\x00" * 960,
            )
        )
    # A reader's bulk path, with offsets on its own origin and plain lists.
    r.apply_input_pieces([60_000_000, 80_000_000], [5_000, 5_960, 6_920], [b"\x01" * 1920])
    st = r.state
    assert isinstance(st.input_chunk_times, ChunkTimes)
    assert st.input_chunk_times == [
        (0, 0),
        (20_000_000, 960),
        (40_000_000, 1920),
        (60_000_000, 2880),
        (80_000_000, 3840),
    ]
    assert st.last_t_ns == 80_000_000 and len(st.input_audio) == 4800
    snap = st.snapshot()
    r.apply_input_pieces(np.array([100_000_000]), np.array([0, 960]), [b"\x02" * 960])
    assert len(snap.input_chunk_times) == 5 and len(st.input_chunk_times) == 6
