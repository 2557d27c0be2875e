"""The notebook front ends: :class:`RealtimeWidget` (a live session) and :class:`ReplayWidget`
(a recording, with a timeline and the state at the playhead). Both are anywidgets."""

from __future__ import annotations

from .replay import ReplayWidget
from .widget import RealtimeWidget, redact, worklet_source

__all__ = ["RealtimeWidget", "ReplayWidget", "redact", "worklet_source"]
