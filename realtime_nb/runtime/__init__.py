"""I/O utilities the shells share: :class:`LoopThread`, one asyncio event loop on a daemon thread
of its own, driven from other threads (the local server, the replay server, the session).

Rank 0 beside the core, but not pure: it starts threads. It imports nothing else of realtime_nb
(CONTRIBUTING.md, "Layers").
"""

from .loop import LoopThread, LoopTimeoutError, run_in_daemon_thread

__all__ = ["LoopThread", "LoopTimeoutError", "run_in_daemon_thread"]
