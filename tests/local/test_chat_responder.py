"""The chat responder against a tiny real Chat Completions HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from realtime_nb.local import LocalServer

from .local_helpers import Client, connect, validate_server_event

TOOLS = [
    {
        "type": "function",
        "name": "get_time",
        "description": "Current time in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


class FakeChat(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeChat.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        last = body["messages"][-1]
        if last["role"] == "tool":
            message = {"role": "assistant", "content": f"It is {last['content']} there."}
        elif "time" in last["content"] and body.get("tools"):
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_fake1",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"city": "Paris"}'},
                    }
                ],
            }
        else:
            system = (
                body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
            )
            message = {"role": "assistant", "content": f"[{system[:10]}] {last['content'].upper()}"}
        data = json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def chat_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeChat)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_chat_reply_tool_call_and_follow_up(chat_url: str) -> None:
    FakeChat.requests.clear()
    with LocalServer(
        "chat", chat_url=chat_url, chat_model="tiny", chat_api_key="k", fast=True
    ) as server:

        async def main() -> Client:
            ws = await connect(server.url)
            c = Client(ws)
            await c.recv()
            await c.send(
                {
                    "type": "session.update",
                    "session": {"type": "realtime", "instructions": "Be terse.", "tools": TOOLS},
                }
            )
            await c.until("session.updated")
            await c.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "hello"}],
                    },
                }
            )
            await c.send({"type": "response.create"})
            await c.until("response.done")
            await c.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "what time is it in Paris?"}],
                    },
                }
            )
            await c.send({"type": "response.create"})
            done = await c.until("response.done")
            call = done["response"]["output"][0]
            await c.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "function_call_output",
                        "call_id": call["call_id"],
                        "output": "noon",
                    },
                }
            )
            await c.send({"type": "response.create"})
            await c.until("response.done")
            await ws.close()
            return c

        c = asyncio.run(asyncio.wait_for(main(), 60))
    for e in c.events:
        validate_server_event(e)
    transcripts = [e["transcript"] for e in c.of("response.output_audio_transcript.done")]
    assert transcripts == ["[Be terse.] HELLO", "It is noon there."]
    call = c.of("response.function_call_arguments.done")[0]
    assert (call["name"], call["call_id"], json.loads(call["arguments"])) == (
        "get_time",
        "call_fake1",
        {"city": "Paris"},
    )
    first, _second, third = FakeChat.requests
    assert first["path"] == "/v1/chat/completions"
    assert first["auth"] == "Bearer k"
    assert first["body"]["model"] == "tiny"
    assert first["body"]["tools"][0]["function"]["name"] == "get_time"
    assert third["body"]["messages"][-2]["tool_calls"][0]["id"] == "call_fake1"
    assert third["body"]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_fake1",
        "content": "noon",
    }


def test_unreachable_chat_fails_the_response_not_the_session() -> None:
    with LocalServer("chat", chat_url="http://127.0.0.1:9/v1", fast=True) as server:

        async def main() -> Client:
            ws = await connect(server.url)
            c = Client(ws)
            await c.recv()
            await c.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "hi"}],
                    },
                }
            )
            await c.send({"type": "response.create"})
            await c.until("response.done")
            await ws.close()
            return c

        c = asyncio.run(asyncio.wait_for(main(), 30))
    done = c.of("response.done")[0]["response"]
    for e in c.events:
        validate_server_event(e)
    assert done["status"] == "failed"
    assert "unreachable" in done["status_details"]["error"]["message"]
