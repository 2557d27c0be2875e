"""The API key is in no byte of anything a session leaves behind (issue 13).

One scenario runs once per module against the local server (which requires the key), with every
logger at DEBUG: a session whose URL carries the key under odd query names (``auth``,
``client_secret``, ``access_token``) and whose headers carry it; a server ``error`` echoing it; a
server close reason echoing it; a URL with ``user:key@host``; an unreachable URL with the key;
a raw client sending it as ``api-key`` and as the browser subprotocol. Each test then checks one
place: logs, stdout/stderr, recordings, exception texts, ``session.errors`` / ``close_info``, the
widget's comm messages.

The key is shaped like no known key (no ``sk-``, no ``ek_``), so only knowing it redacts it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from realtime_nb.client.session import Session, SessionClosedError
from realtime_nb.local import LocalServer
from realtime_nb.storage.recording import Recorder, make_meta

KEY = "rtnbKey-" + "Q7mZ2xVw" * 3
#: A second secret that only a field name gives away (no known key has this value).
PASSWORD = "pw-" + "Hx4Lr9Tz" * 2
#: What a leak would look like: the key, its URL-encoded and Basic-encoded forms, and the long
#: runs of it that a log line eliding a payload could keep.
FORMS = [KEY, quote(KEY), KEY[:12], KEY[-12:], base64.b64encode(f"user:{KEY}".encode()).decode()]


@dataclass
class Leftovers:
    logs: str = ""
    output: str = ""
    exceptions: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    recordings: list[bytes] = field(default_factory=list)
    comm: str = ""


def _leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        return [f for f in FORMS if f.encode() in text]
    return [f for f in FORMS if f in text]


@contextlib.contextmanager
def _capture_output() -> Iterator[io.StringIO]:
    """What capfd does, for a module-scoped fixture: Python-level and file-descriptor-level
    stdout and stderr, both collected."""
    out = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as fd_file:
        os.dup2(fd_file.fileno(), 1)
        os.dup2(fd_file.fileno(), 2)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                yield out
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            fd_file.seek(0)
            out.write(fd_file.read().decode("utf-8", "replace"))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.lock_ = threading.Lock()
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)  # the message, the exception text and the stack
        with self.lock_:
            self.lines.append(line)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _attach_widget(s: Session, sent: list[dict[str, Any]]) -> Any:
    w = s.widget()
    w.send = lambda msg, buffers=None: sent.append(msg)  # the comm is a dummy outside a kernel
    w._on_msg(w, {"view": "v1", "type": "ready"}, [])
    return w


def _scenario(tmp: Path, out: Leftovers) -> None:
    with LocalServer(fast=True, api_key=KEY) as srv:
        # 1. The key in the headers and under odd query names; an error and a close reason echo it.
        url = f"{srv.url}?model=gpt-realtime&auth={KEY}&client_secret={KEY}&access_token={KEY}"
        s = Session(url=url, api_key=KEY, record=tmp / "a.arrow", meta={"password": PASSWORD})
        sent: list[dict[str, Any]] = []
        w = _attach_widget(s, sent)
        try:
            s.send_event(
                {
                    "type": "session.update",
                    # Unknown parameters: the server's error names them (echoing the key), and
                    # the recorded client event holds a password and an MCP-style credential.
                    "session": {
                        "type": "realtime",
                        KEY: 1,
                        "password": PASSWORD,
                        "access_token": KEY,
                        "server_url": f"https://user:{KEY}@mcp.example/sse?token={KEY}",
                    },
                }
            )
            s.wait_for("error", timeout=10)

            async def dropped() -> None:
                waiting = asyncio.ensure_future(s.await_for("response.done", timeout=10))
                await asyncio.sleep(0)  # the waiter is registered on its first step
                await asyncio.to_thread(srv.drop_connections, 1008, f"bad key {KEY}")
                try:
                    await waiting
                except Exception as exc:  # the drop, as the caller sees it
                    out.exceptions.append(f"{exc!s} {exc!r}")

            asyncio.run(dropped())
            with pytest.raises(SessionClosedError) as exc_info:
                s.send_text("still there?")
            out.exceptions.append(f"{exc_info.value!s} {exc_info.value!r}")
            out.states.append(repr(s.errors))
            out.states.append(repr(s.close_info))
            out.states.append(repr(s.url))
            out.states.append(repr(s))
            out.comm = json.dumps(sent, default=str) + json.dumps(w.get_state(), default=str)
        finally:
            w.close()
            s.close()
        out.recordings.append((tmp / "a.arrow").read_bytes())

        # 2. user:key@host, no header: refused (the server wants Bearer), with the Basic header.
        for i, bad in enumerate(
            (
                f"ws://user:{KEY}@127.0.0.1:{srv.port}/v1/realtime?model=m",
                f"ws://user:{KEY}@127.0.0.1:{_free_port()}/v1/realtime?auth={KEY}",  # no server
            )
        ):
            with pytest.raises(SessionClosedError) as refused:
                Session(url=bad, record=tmp / f"refused{i}.arrow")
            out.exceptions.append(f"{refused.value!s} {refused.value!r}")
        out.recordings.extend(p.read_bytes() for p in tmp.glob("refused*.arrow"))

        # 3. The key as Azure's api-key header and as the browser subprotocol (websockets logs
        # both sides of the handshake at DEBUG).
        from websockets.sync.client import connect

        with connect(
            f"{srv.url}?model=m",
            additional_headers={"api-key": KEY},
            subprotocols=["realtime", f"openai-insecure-api-key.{KEY}"],  # type: ignore[list-item]  # a plain str, as a browser sends it
        ) as ws:
            ws.recv(timeout=10)  # session.created


@pytest.fixture(scope="module")
def leftovers(tmp_path_factory: pytest.TempPathFactory) -> Leftovers:
    out = Leftovers()
    root = logging.getLogger()
    handler = _Collect()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with _capture_output() as captured:
            _scenario(tmp_path_factory.mktemp("no_secrets"), out)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    out.output = captured.getvalue()
    out.logs = "\n".join(handler.lines)
    return out


def test_the_scenario_really_logged_the_handshakes(leftovers: Leftovers) -> None:
    # Guards the other tests: DEBUG was on and the header dumps went through the filters.
    assert "Authorization: Bearer [REDACTED]" in leftovers.logs
    assert "api-key: [REDACTED]" in leftovers.logs
    assert "openai-insecure-api-key.[REDACTED]" in leftovers.logs
    assert "Authorization: Basic [REDACTED]" in leftovers.logs
    assert len(leftovers.exceptions) == 4 and len(leftovers.recordings) == 3


def test_no_key_in_any_log_record(leftovers: Leftovers) -> None:
    assert _leaks(leftovers.logs) == []


def test_no_key_on_stdout_or_stderr(leftovers: Leftovers) -> None:
    assert _leaks(leftovers.output) == []


def test_no_key_or_credential_field_in_the_recordings(leftovers: Leftovers) -> None:
    for data in leftovers.recordings:
        assert _leaks(data) == []
        assert PASSWORD.encode() not in data


def test_no_key_in_exception_texts(leftovers: Leftovers) -> None:
    assert [e for e in leftovers.exceptions if _leaks(e)] == []


def test_no_key_in_errors_close_info_or_reprs(leftovers: Leftovers) -> None:
    joined = "\n".join(leftovers.states)
    assert _leaks(joined) == []
    assert "bad key [REDACTED]" in joined  # the close reason is kept, the key is not
    assert "session.[REDACTED]" in joined  # the server's error is kept, the key is not


def test_no_key_in_widget_messages(leftovers: Leftovers) -> None:
    assert leftovers.comm
    assert _leaks(leftovers.comm) == []


# --- the recorder, without a connection ----------------------------------------------------------


def test_recorder_blanks_credential_fields_and_url_credentials(tmp_path: Path) -> None:
    meta = make_meta(
        model="m",
        url=f"wss://u:{PASSWORD}@gw.example/rt?model=m&auth={KEY}&sig=abcdefgh12",
        description={"Password": PASSWORD},
    )
    path = tmp_path / "r.arrow"
    with Recorder(path, meta=meta, secrets=[KEY]) as rec:
        rec.append("local", {"type": "local.note", "ACCESS_TOKEN": PASSWORD, "n": {"token": 7}})
        rec.append(
            "server",
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "delta": "Hi",
                "logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}],
            },
        )
        rec.append("client", {"type": "session.update", "session": {"refresh_token": PASSWORD}})
    data = path.read_bytes()
    assert _leaks(data) == [] and PASSWORD.encode() not in data
    assert b"abcdefgh12" not in data
    from realtime_nb.storage.recording import Recording

    r = Recording.open(path)
    assert r.meta["url"] == "wss://***@gw.example/rt?model=m&auth=[REDACTED]&sig=[REDACTED]"
    assert r.events[0].data == {
        "type": "local.note",
        "ACCESS_TOKEN": "[REDACTED]",
        "n": {"token": "[REDACTED]"},
    }
    assert r.events[1].data["logprobs"][0]["token"] == "Hi"  # a text token, not a credential
