"""The pure core: the protocol (event catalogue, client-event builders, validation), events, audio
(PCM16, G.711, resampling, base64), the reducer (events -> conversation state), tools (JSON schema
from a signature), pricing and redaction.

Nothing here does I/O, starts a thread or imports another layer of realtime_nb: every other
layer builds on it, and its tests are plain lists of events (CONTRIBUTING.md, "Layers").
"""
