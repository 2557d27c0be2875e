"""Regression testing over many recordings: a corpus of recordings as tables (DuckDB SQL,
polars, pandas), warehouse export to Parquet, batch re-drive, composable checks with an HTML
report, a pytest plugin, a scripted caller and importers for Vapi and Retell calls.

Layer 4: it builds on debugging (re-drive, diff), the client and the local backend; nothing
below imports it (the pytest plugin is its own entry point).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - for type checkers; the names are imported on first use
    from .batch import RedriveReport
    from .checks import (
        Check,
        CheckResult,
        TurnRecord,
        check,
        cost_below,
        graded,
        latency_below,
        no_errors,
        not_said,
        said,
        tool_called,
    )
    from .corpus import Corpus, CorpusWarning
    from .evaluate import Evaluation
    from .importers import import_retell, import_vapi
    from .parquet import ExportReport
    from .scripted import Line, scripted_call

__all__ = [
    "Check",
    "CheckResult",
    "Corpus",
    "CorpusWarning",
    "Evaluation",
    "ExportReport",
    "Line",
    "RedriveReport",
    "TurnRecord",
    "check",
    "cost_below",
    "graded",
    "import_retell",
    "import_vapi",
    "latency_below",
    "no_errors",
    "not_said",
    "said",
    "scripted_call",
    "tool_called",
]

_LAZY = {
    **dict.fromkeys(
        (
            "Check",
            "CheckResult",
            "TurnRecord",
            "check",
            "cost_below",
            "graded",
            "latency_below",
            "no_errors",
            "not_said",
            "said",
            "tool_called",
        ),
        "checks",
    ),
    "Corpus": "corpus",
    "CorpusWarning": "corpus",
    "Evaluation": "evaluate",
    "ExportReport": "parquet",
    "RedriveReport": "batch",
    "Line": "scripted",
    "scripted_call": "scripted",
    "import_retell": "importers",
    "import_vapi": "importers",
}


def __getattr__(name: str) -> Any:
    """Import on first use: the pytest plugin in this package loads with every pytest run, and
    must not pull DuckDB, the client and the local backend in with it."""
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'realtime_nb.corpus' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
