"""``realtime_nb.local``: an offline, local stand-in for the OpenAI Realtime API (GA protocol).

A WebSocket server that speaks the Realtime protocol with local parts: WebRTC VAD for turn
detection, PocketSphinx for input transcription, eSpeak NG for speech, and a pluggable responder
("echo", "rules", "chat" against any OpenAI-compatible Chat Completions URL). Needs the optional
extra: ``pip install 'realtime-nb[local]'`` (imported lazily; a clear error names the extra).

    from realtime_nb.local import LocalServer
    with LocalServer(fast=True) as server:
        ...  # connect to server.url + "?model=gpt-realtime"

Whatever model a client names, sessions report the backend's own label,
``realtime_nb.core.pricing.LOCAL_MODEL`` (``"realtime-nb-local"``, priced at zero), so a recording
made offline says so and costs nothing. Recognition runs while the user speaks and replies are
spoken sentence by sentence (``LocalServer(streaming=False)`` is the older batch pipeline).

With the ``webrtc`` extra (aiortc), the same port serves WebRTC calls as the API does:
``POST /v1/realtime/calls`` (``server.calls_url``) answers an SDP offer, the call's events go on
its ``oai-events`` data channel and to ``?call_id=`` sideband WebSockets, and its audio goes both
ways as Opus (see :mod:`realtime_nb.local.server`).
"""

from __future__ import annotations

from ._extras import MissingExtraError
from .responders import (
    ChatResponder,
    EchoResponder,
    FunctionCall,
    Responder,
    ResponderError,
    ResponseRequest,
    Rule,
    RulesResponder,
    TextReply,
    ToolWordsResponder,
)
from .server import LocalServer, serve_forever

__all__ = [
    "ChatResponder",
    "EchoResponder",
    "FunctionCall",
    "LocalServer",
    "MissingExtraError",
    "Responder",
    "ResponderError",
    "ResponseRequest",
    "Rule",
    "RulesResponder",
    "TextReply",
    "ToolWordsResponder",
    "serve_forever",
]
