"""``Session`` arguments as a user writes them: one tool without a list, empty text refused.

Against the embedded local backend (no key): its stand-in model calls a tool the user names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import realtime_nb
from realtime_nb.client.session import Session

from .test_magic import ask


@pytest.fixture
def open_session() -> Iterator[Any]:
    """``open_session(**kwargs)``: a fast local, unrecorded session; all are closed after."""
    from realtime_nb.frontdoor.demo import local_backend

    opened: list[Session] = []

    def make(**kwargs: Any) -> Session:
        s = Session(url=local_backend(fast=True).url, record=False, **kwargs)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def get_weather(city: str = "Paris") -> str:
    """Today's weather."""
    return f"sunny in {city}"


def test_tools_takes_a_single_function(open_session: Any) -> None:
    s = open_session(tools=get_weather)
    assert set(s.tools) == {"get_weather"}
    assert ask(s, "What is the weather in Oslo?") == "The tool said: sunny in Oslo"


def test_tools_takes_a_single_tool(open_session: Any) -> None:
    weather = realtime_nb.tool(get_weather)
    s = open_session(tools=weather)
    assert s.tools == {"get_weather": weather}
    assert ask(s, "weather in Lima") == "The tool said: sunny in Lima"


def test_tools_takes_a_single_definition_dict(open_session: Any) -> None:
    definition = {
        "type": "function",
        "name": "lookup",
        "description": "Look something up.",
        "parameters": {"type": "object", "properties": {}, "required": []},
    }
    s = open_session(tools=definition)
    s.wait_for("session.updated", timeout=10)
    assert s.snapshot().session["tools"] == [definition]
    assert s.tools == {}  # a definition has no Python function to run


@pytest.mark.parametrize("text", ["", " ", "\n\t  "])
def test_send_text_refuses_empty_text(open_session: Any, text: str) -> None:
    s = open_session()
    with pytest.raises(ValueError, match=r"^text is empty") as info:
        s.send_text(text)
    assert str(info.value) == (
        f"text is empty ({text!r}); accepted: a message with words in it (respond() asks for a "
        "response without adding one)"
    )
    # Nothing was sent: the session still answers the next real message alone.
    assert ask(s, "hello") == "You said: hello"
    assert [i.role for i in s.conversation.items] == ["user", "assistant"]
