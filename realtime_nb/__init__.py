"""realtime_nb: talk to speech-to-speech realtime models in Jupyter, record every event, replay,
inspect and diff the conversations.

The public API is re-exported here; heavy modules (the session, the widget, the local server)
are imported on first use so that ``import realtime_nb`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core._version import __version__

if TYPE_CHECKING:  # pragma: no cover - import-time only, for type checkers and IDEs
    from .client.session import Session
    from .core.events import Event
    from .core.reducer import ConversationState, Item, Reducer, reduce
    from .core.tools import tool
    from .corpus import (
        Corpus,
        check,
        cost_below,
        latency_below,
        no_errors,
        not_said,
        said,
        tool_called,
    )
    from .debugging.diff import diff
    from .debugging.metrics import metrics
    from .debugging.replay import ReplayData
    from .local import LocalServer
    from .storage.recording import Recorder, Recording
    from .testing.replay_server import ReplayServer
    from .widget import RealtimeWidget

__all__ = [
    "ConversationState",
    "Corpus",
    "Event",
    "Item",
    "LocalServer",
    "RealtimeWidget",
    "Recorder",
    "Recording",
    "Reducer",
    "ReplayData",
    "ReplayServer",
    "Session",
    "__version__",
    "check",
    "cost_below",
    "diff",
    "latency_below",
    "load_ipython_extension",
    "metrics",
    "no_errors",
    "not_said",
    "reduce",
    "said",
    "tool",
    "tool_called",
    "unload_ipython_extension",
]

_LAZY = {
    "Event": ("core.events", "Event"),
    "Recorder": ("storage.recording", "Recorder"),
    "Recording": ("storage.recording", "Recording"),
    "Reducer": ("core.reducer", "Reducer"),
    "ConversationState": ("core.reducer", "ConversationState"),
    "Item": ("core.reducer", "Item"),
    "reduce": ("core.reducer", "reduce"),
    "Session": ("client.session", "Session"),
    "tool": ("core.tools", "tool"),
    "RealtimeWidget": ("widget", "RealtimeWidget"),
    "diff": ("debugging.diff", "diff"),
    "metrics": ("debugging.metrics", "metrics"),
    "ReplayData": ("debugging.replay", "ReplayData"),
    "ReplayServer": ("testing", "ReplayServer"),
    "LocalServer": ("local", "LocalServer"),
    "Corpus": ("corpus", "Corpus"),
    **{
        name: ("corpus", name)
        for name in (
            "check",
            "cost_below",
            "latency_below",
            "no_errors",
            "not_said",
            "said",
            "tool_called",
        )
    },
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'realtime_nb' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext realtime_nb``: register the ``%realtime`` / ``%%realtime`` magics."""
    from .frontdoor.magic import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext realtime_nb``: close the magic's sessions."""
    from .frontdoor.magic import unload_ipython_extension as _unload

    _unload(ipython)
