"""Where each microphone chunk sits: its send time and its place on the input timeline.

An hour of microphone audio is ~100,000 chunks. As a list of ``(t_ns, offset)`` tuples that is
~11 MB of Python objects made one by one; here it is two int64 arrays (1.6 MB), filled from
numpy in one call by a recording's reader, and still read as a sequence of those tuples.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Iterator
from typing import Any, Final, overload

import numpy as np
import numpy.typing as npt

_LO: Final = -(2**63)
_HI: Final = 2**63 - 1


def _clamp(v: int) -> int:
    return _LO if v < _LO else _HI if v > _HI else v


class ChunkTimes:
    """The input chunks in order, as ``(t_ns when sent, byte offset on the input timeline)``.

    A sequence of tuples (indexing, slicing, iterating, comparing with a list of pairs) that
    only grows. Values are int64: one outside that range (a hand-made event's time) is clamped
    to it. :meth:`arrays` gives both columns as numpy arrays, for code that works on all of
    them at once.
    """

    __slots__ = ("_off", "_t")

    def __init__(self, pairs: Iterable[tuple[int, int]] = ()) -> None:
        self._t = array("q")
        self._off = array("q")
        self.extend(pairs)

    # -- reading ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._t)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self._t, self._off, strict=True)

    @overload
    def __getitem__(self, index: int) -> tuple[int, int]: ...
    @overload
    def __getitem__(self, index: slice) -> ChunkTimes: ...
    def __getitem__(self, index: int | slice) -> tuple[int, int] | ChunkTimes:
        if isinstance(index, slice):
            out = ChunkTimes()
            out._t, out._off = self._t[index], self._off[index]
            return out
        return self._t[index], self._off[index]

    def index_at(self, offset: int) -> int:
        """The index of the chunk holding byte ``offset`` of the input timeline: the last one
        starting at or before it (-1: before the first). Offsets only grow, so this is a
        binary search."""
        return bisect.bisect_right(self._off, offset) - 1

    def arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The send times and the offsets, as two new int64 arrays."""
        return np.array(self._t, dtype=np.int64), np.array(self._off, dtype=np.int64)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ChunkTimes):
            return self._t == other._t and self._off == other._off
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and all(
                isinstance(p, tuple) and p == q for p, q in zip(other, self, strict=True)
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # it grows, as a list does

    def __repr__(self) -> str:
        n = len(self)
        if n <= 4:
            return f"ChunkTimes({list(self)!r})"
        return f"<ChunkTimes {n} chunks, first {self[0]}, last {self[-1]}>"

    # -- growing ---------------------------------------------------------------------------------

    def append(self, pair: tuple[int, int]) -> None:
        t_ns, offset = pair
        self.add(t_ns, offset)

    def add(self, t_ns: int, offset: int) -> None:
        """Append one chunk (as :meth:`append` of a tuple, without making it)."""
        try:
            self._t.append(t_ns)
        except OverflowError:
            self._t.append(_clamp(t_ns))
        try:
            self._off.append(offset)
        except OverflowError:
            self._off.append(_clamp(offset))

    def extend(self, pairs: Iterable[tuple[int, int]]) -> None:
        if isinstance(pairs, ChunkTimes):
            self._t.extend(pairs._t)
            self._off.extend(pairs._off)
            return
        for t_ns, offset in pairs:
            self.add(t_ns, offset)

    def extend_arrays(self, t_ns: Any, offsets: Any) -> None:
        """Append ``len(t_ns)`` chunks given as two sequences of ints of equal length (numpy
        int64 arrays are copied in one call each).

        Raises:
            ValueError: the lengths differ, or they are not 1-D.
        """
        if (
            type(t_ns) is np.ndarray
            and type(offsets) is np.ndarray
            and t_ns.dtype == offsets.dtype == np.int64
            and t_ns.ndim == offsets.ndim == 1
            and len(t_ns) == len(offsets)
            and t_ns.flags.c_contiguous
            and offsets.flags.c_contiguous
        ):  # a reader's slices of its columns: the common case, checked cheaply
            self._t.frombytes(t_ns.data.cast("B"))
            self._off.frombytes(offsets.data.cast("B"))
            return
        try:
            t = np.ascontiguousarray(t_ns, dtype=np.int64)
            off = np.ascontiguousarray(offsets, dtype=np.int64)
        except OverflowError:  # a value outside int64: clamped, one at a time
            t_list, off_list = list(t_ns), list(offsets)
            if len(t_list) != len(off_list):
                raise ValueError(
                    f"ChunkTimes.extend_arrays needs sequences of equal length, got "
                    f"{len(t_list)} and {len(off_list)}"
                ) from None
            self.extend(zip(t_list, off_list, strict=True))
            return
        if t.shape != off.shape or t.ndim != 1:
            raise ValueError(
                f"ChunkTimes.extend_arrays needs two 1-D sequences of equal length, got shapes "
                f"{t.shape} and {off.shape}"
            )
        self._t.frombytes(t.data.cast("B"))
        self._off.frombytes(off.data.cast("B"))

    # -- copying ---------------------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        return (_chunk_times, (self._t.tobytes(), self._off.tobytes()))

    def __copy__(self) -> ChunkTimes:
        return self[:]

    def __deepcopy__(self, memo: dict[int, Any]) -> ChunkTimes:
        return self[:]


def _chunk_times(t: bytes, off: bytes) -> ChunkTimes:
    out = ChunkTimes()
    out._t.frombytes(t)
    out._off.frombytes(off)
    return out
