"""Testing helpers: the cassette :class:`ReplayServer` (serves a recording back to an agent's code,
reporting the first client event that differs), the ``realtime_replay`` pytest plugin, and
synthetic sessions for benchmarks. Builds on the core and storage.
"""

from .replay_server import (
    DEFAULT_IGNORE,
    AudioMatch,
    CassetteMatcher,
    Difference,
    RecordedConnection,
    ReplayMismatch,
    ReplayServer,
    load_recording,
    recorded_connections,
)

__all__ = [
    "DEFAULT_IGNORE",
    "AudioMatch",
    "CassetteMatcher",
    "Difference",
    "RecordedConnection",
    "ReplayMismatch",
    "ReplayServer",
    "load_recording",
    "recorded_connections",
]
