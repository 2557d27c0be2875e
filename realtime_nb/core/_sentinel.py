"""The one "not given" sentinel: an argument left out, as opposed to one given as ``None``.

``None`` is a real value in the protocol (``turn_detection: null`` switches VAD off), so options
that may be left to the server's default need a marker of their own.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

__all__ = ["UNSET", "Unset"]


class Unset(enum.Enum):
    """The type of :data:`UNSET` (an enum, so ``x is UNSET`` narrows types for mypy)."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "<server default>"

    def __bool__(self) -> Literal[False]:
        return False


#: Left out: the server's (or the function's) default applies.
UNSET: Final = Unset.UNSET
