"""The notebook front end of a realtime Session: :class:`RealtimeWidget` (an anywidget)."""

from __future__ import annotations

from .widget import RealtimeWidget, redact, worklet_source

__all__ = ["RealtimeWidget", "redact", "worklet_source"]
