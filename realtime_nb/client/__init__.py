"""The client: :class:`~realtime_nb.client.session.Session`, the kernel-side connection to a
Realtime server (WebSocket I/O on its own thread, tools, recording). Builds on the core, storage
and the local backend (its default server when no key is set).
"""

from ._calls import Transport, calls_url

__all__ = ["Transport", "calls_url"]
