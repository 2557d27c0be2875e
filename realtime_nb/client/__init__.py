"""The client: :class:`~realtime_nb.client.session.Session`, the kernel-side connection to a
Realtime server (WebSocket I/O on its own thread, tools, recording). Builds on the core, storage
and the local backend (its default server when no key is set).
"""
