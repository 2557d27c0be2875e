"""The checks, alone (pure, over turn records) and the model-graded one against a loopback
OpenAI-compatible stand-in."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from realtime_nb.corpus import (
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


def turn(
    i: int = 0, answer: str = "", calls: Any = (), latency: float | None = 500.0, **kw: Any
) -> TurnRecord:
    row = {
        "recording": "r.arrow",
        "turn": i,
        "user_text": kw.get("user", "what's the weather in Paris?"),
        "assistant_text": answer,
        "tool_calls": [
            {"name": n, "arguments": json.dumps(a), "output": "sunny", "call_id": f"c{k}"}
            for k, (n, a) in enumerate(calls)
        ],
        "latency_ms": latency,
        "cost_usd": kw.get("cost"),
        "errors": kw.get("errors", []),
        "status": kw.get("status", "completed"),
        "interrupted": False,
    }
    return TurnRecord.from_row(row)


CALL = [
    turn(0, "Hello! How can I help?", latency=300.0, cost=0.01),
    turn(
        1, "It is sunny in Paris.", [("get_weather", {"city": "paris"})], latency=900.0, cost=0.02
    ),
]


def statuses(c: Any, turns: list[TurnRecord] = CALL) -> list[tuple[int | None, str]]:
    return [(i, r.status) for i, r in c.run(turns)]


def test_said_and_tool_called_look_for_some_turn() -> None:
    assert statuses(said("sunny")) == [(None, "pass")]
    assert statuses(said("snow", "SUNNY")) == [(None, "pass")]
    assert statuses(said(re.compile(r"\bParis\b"))) == [(None, "pass")]
    [(_, failed)] = said("snow").run(CALL)
    assert failed.status == "fail" and "turn 1: answer was 'It is sunny in Paris.'" in failed.detail
    assert statuses(tool_called("get_weather", city="Paris")) == [(None, "pass")]
    assert statuses(tool_called("get_weather", city=lambda c: c.startswith("par"))) == [
        (None, "pass")
    ]
    [(_, wrong)] = tool_called("get_weather", city="Rome").run(CALL)
    assert wrong.status == "fail" and '{"city": "paris"}' in wrong.detail
    assert statuses(tool_called("get_weather").at(0)) == [(0, "fail")]
    assert statuses(tool_called("get_weather").at(1)) == [(1, "pass")]
    assert statuses(said("Hello").each_turn()) == [(0, "pass"), (1, "fail")]
    assert statuses(said("Hello").at(5)) == [(5, "fail")]


def test_per_turn_checks() -> None:
    assert statuses(not_said("sorry")) == [(0, "pass"), (1, "pass")]
    assert statuses(not_said("paris")) == [(0, "pass"), (1, "fail")]
    assert statuses(latency_below(500)) == [(0, "pass"), (1, "fail")]
    assert statuses(latency_below(500), [turn(latency=None)]) == [(0, "skip")]
    bad = [turn(0, "x", errors=["server_error: boom"]), turn(1, "y", status="failed"), turn(2, "z")]
    assert statuses(no_errors(), bad) == [(0, "fail"), (1, "fail"), (2, "pass")]
    assert no_errors().run(bad)[0][1].detail == "server_error: boom"


def test_cost_below_is_about_the_whole_call() -> None:
    assert statuses(cost_below(0.05)) == [(None, "pass")]
    [(_, r)] = cost_below(0.02).run(CALL)
    assert r.status == "fail" and r.detail == "call cost $0.0300 >= $0.02"
    assert statuses(cost_below(0.015).each_turn()) == [(0, "pass"), (1, "fail")]
    assert statuses(cost_below(1), [turn(cost=None)]) == [(None, "skip")]


def test_any_callable_and_composition() -> None:
    short = check(lambda t: len(t.assistant_text) < 20 or f"{len(t.assistant_text)} chars", "short")
    assert statuses(short) == [(0, "fail"), (1, "fail")]
    assert short.run(CALL)[0][1].detail == "22 chars"
    assert statuses(check(lambda t: t.turn == 0)) == [(0, "pass"), (1, "fail")]
    assert statuses(check(lambda t: CheckResult("skip", "n/a"))) == [(0, "skip"), (1, "skip")]

    def boom(t: TurnRecord) -> bool:
        raise RuntimeError("oops")

    [(_, r), _] = check(boom).run(CALL)
    assert r.status == "fail" and "boom raised RuntimeError: oops" in r.detail
    both = said("sunny").each_turn() & tool_called("get_weather").each_turn()
    assert statuses(both) == [(0, "fail"), (1, "pass")]
    either = said("Hello").each_turn() | tool_called("get_weather").each_turn()
    assert statuses(either) == [(0, "pass"), (1, "pass")]
    assert statuses(~said("Hello").each_turn()) == [(0, "fail"), (1, "pass")]
    assert said("x").named("greets").name == "greets"
    with pytest.raises(TypeError, match="returned int"):
        check(lambda t: 3).test_turn(CALL[0])


def test_bad_arguments_say_what_is_accepted() -> None:
    with pytest.raises(ValueError, match="positive number of milliseconds"):
        latency_below(-1)
    with pytest.raises(ValueError, match="at least one phrase"):
        said()
    with pytest.raises(TypeError, match=r"strings or re\.compile"):
        said(3)  # type: ignore[arg-type]  # the error is the point
    with pytest.raises(ValueError, match="accepted: 'each', 'any', 'call', a turn index"):
        said("x").at("first")  # type: ignore[arg-type]  # the error is the point
    with pytest.raises(TypeError, match="callable over a turn"):
        check("not callable")  # type: ignore[arg-type]  # the error is the point


class _Grader(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint: passes a turn whose answer mentions the weather."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Grader.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        prompt = body["messages"][-1]["content"]
        if "garbage" in prompt:
            content = "I think it is fine"
        else:
            ok = "sunny" in prompt.split("Assistant:")[-1]
            content = (
                "```json\n"
                + json.dumps({"pass": ok, "reason": "mentions it" if ok else "no weather"})
                + "\n```"
            )
        data = json.dumps(
            {"choices": [{"message": {"role": "assistant", "content": content}}]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def grader() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Grader)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Grader.requests.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join()


def test_model_graded_check_against_a_loopback_endpoint(grader: str) -> None:
    g = graded("the answer gives the weather", url=grader, model="judge-1", api_key="k")
    results = g.run(CALL)
    assert [(i, r.status, r.detail) for i, r in results] == [
        (0, "fail", "no weather"),
        (1, "pass", "mentions it"),
    ]
    sent = _Grader.requests[1]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer k"
    assert sent["body"]["model"] == "judge-1"
    prompt = sent["body"]["messages"][-1]["content"]
    assert "the answer gives the weather" in prompt and 'get_weather({"city": "paris"})' in prompt
    [(_, r)] = g.run([turn(0, "garbage")])
    assert r.status == "fail" and "not JSON" in r.detail


def test_model_graded_check_is_skipped_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REALTIME_NB_GRADER_URL", raising=False)
    assert statuses(graded("polite")) == [(0, "skip"), (1, "skip")]


def test_an_unreachable_grader_fails_the_turn() -> None:
    [(_, r)] = graded("polite", url="http://127.0.0.1:9", timeout=2).run([CALL[0]])
    assert r.status == "fail" and r.detail.startswith("grader error")
