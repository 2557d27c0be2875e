"""``realtime_nb.local``: an offline, local stand-in for the OpenAI Realtime API (GA protocol).

A WebSocket server that speaks the Realtime protocol with local parts: WebRTC VAD for turn
detection, PocketSphinx for input transcription, eSpeak NG for speech, and a pluggable responder
("echo", "rules", "chat" against any OpenAI-compatible Chat Completions URL). Needs the optional
extra: ``pip install 'realtime-nb[local]'`` (imported lazily; a clear error names the extra).

    from realtime_nb.local import LocalServer
    with LocalServer(fast=True) as server:
        ...  # connect to server.url + "?model=gpt-realtime"
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
