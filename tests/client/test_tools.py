"""@tool: schema from signatures and docstrings, argument parsing, result encoding, dispatch."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Annotated, Literal

import pytest

from realtime_nb.client._policies import StartCall, ToolCallTracker
from realtime_nb.core.tools import (
    Tool,
    ToolArgumentError,
    ToolDefinitionError,
    as_tool,
    encode_error,
    encode_result,
    parse_docstring,
    tool,
)


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


@dataclasses.dataclass
class Place:
    city: str
    country: str = "GB"


@tool
def get_weather(
    city: str, days: int = 1, unit: Literal["c", "f"] = "c", note: str | None = None
) -> str:
    """Look up the weather for a city.

    Args:
        city: The city name.
        days: How many days
            to forecast.
        unit: Temperature unit.
    """
    return f"{city}:{days}:{unit}:{note}"


def test_schema_from_signature_and_google_docstring() -> None:
    d = get_weather.definition()
    assert d["type"] == "function"
    assert d["name"] == "get_weather"
    assert d["description"] == "Look up the weather for a city."
    p = d["parameters"]
    assert p["type"] == "object"
    assert p["additionalProperties"] is False
    assert p["required"] == ["city"]
    assert p["properties"]["city"] == {"type": "string", "description": "The city name."}
    assert p["properties"]["days"] == {
        "type": "integer",
        "description": "How many days to forecast.",
        "default": 1,
    }
    assert p["properties"]["unit"]["enum"] == ["c", "f"]
    assert p["properties"]["note"] == {"type": ["string", "null"]}


def test_tool_stays_callable() -> None:
    assert get_weather("Paris") == "Paris:1:c:None"
    assert isinstance(get_weather, Tool)


def test_nested_types_dataclass_enum_list_dict() -> None:
    @tool(name="plan", timeout=5)
    def plan(
        places: list[Place],
        units: dict[str, Unit],
        tags: set[str],
        size: Annotated[float, "metres"] = 1.5,
    ) -> dict[str, object]:
        """Plan a trip.

        :param places: where to go
        """
        return {"n": len(places), "u": units, "tags": sorted(tags), "size": size}

    p = plan.parameters
    assert plan.timeout == 5
    assert p["properties"]["places"]["description"] == "where to go"
    item = p["properties"]["places"]["items"]
    assert item["type"] == "object"
    assert item["required"] == ["city"]
    assert item["properties"]["country"]["default"] == "GB"
    assert p["properties"]["units"]["additionalProperties"] == {
        "type": "string",
        "enum": ["celsius", "fahrenheit"],
    }
    assert p["properties"]["tags"]["uniqueItems"] is True
    assert p["properties"]["size"]["description"] == "metres"
    kwargs = plan.parse_arguments(
        json.dumps(
            {"places": [{"city": "Oslo"}], "units": {"a": "celsius"}, "tags": ["x"], "size": 2}
        )
    )
    assert kwargs["places"] == [Place("Oslo")]
    assert kwargs["units"] == {"a": Unit.C}
    assert kwargs["tags"] == {"x"}
    assert kwargs["size"] == 2.0
    assert isinstance(kwargs["size"], float)
    assert json.loads(encode_result(plan(**kwargs))) == {
        "n": 1,
        "u": {"a": "celsius"},
        "tags": ["x"],
        "size": 2.0,
    }


def test_pydantic_models_are_inlined() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Inner(pydantic.BaseModel):
        x: int

    class Outer(pydantic.BaseModel):
        inner: Inner
        label: str = "a"

    @tool
    def use(o: Outer) -> Outer:
        """Use it."""
        return o

    schema = use.parameters["properties"]["o"]
    assert "$defs" not in json.dumps(schema)
    assert "$ref" not in json.dumps(schema)
    assert schema["properties"]["inner"]["properties"]["x"]["type"] == "integer"
    kw = use.parse_arguments('{"o": {"inner": {"x": 3}}}')
    assert kw["o"].inner.x == 3
    assert json.loads(encode_result(use(**kw))) == {"inner": {"x": 3}, "label": "a"}
    with pytest.raises(ToolArgumentError, match=r"use\(o\)"):
        use.parse_arguments('{"o": {"inner": {"x": "no"}}}')


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ("{}", r"missing required argument\(s\) \['city'\]"),
        ('{"city": "x", "bogus": 1}', r"unknown argument\(s\) \['bogus'\]; accepted"),
        ('{"city": 3}', r"get_weather\(city\): expected a string, got 3"),
        ('{"city": "x", "days": 1.5}', "expected an integer"),
        ('{"city": "x", "days": true}', "expected an integer"),
        ('{"city": "x", "unit": "k"}', r'one of "c", "f"'),
    ],
)
def test_bad_arguments_say_what_was_wrong(arguments: str, match: str) -> None:
    with pytest.raises(ToolArgumentError, match=match):
        get_weather.parse_arguments(arguments)


def test_arguments_accept_recorded_whitespace_and_int_floats() -> None:
    # The exact text gpt-realtime sent in the recorded tool round (whitespace and all).
    assert get_weather.parse_arguments('{  \n  "city": "London" \n} \n') == {"city": "London"}
    assert get_weather.parse_arguments('{"city": "x", "days": 2.0}')["days"] == 2


def test_definition_errors() -> None:
    class Opaque:
        pass

    def f(x: Opaque) -> None:
        pass

    with pytest.raises(ToolDefinitionError, match=r"f\(x\): unsupported annotation .*Opaque"):
        tool(f)

    def g(x: dict[int, str]) -> None:
        pass

    with pytest.raises(ToolDefinitionError, match="dict keys must be str"):
        tool(g)
    with pytest.raises(ToolDefinitionError, match="not accepted"):
        tool(name="bad name!")(lambda: None)
    with pytest.raises(ToolDefinitionError, match="timeout"):
        tool(timeout=-1)(get_weather.func)

    def pos(x: int, /) -> None:
        pass

    with pytest.raises(ToolDefinitionError, match="positional-only"):
        tool(pos)
    with pytest.raises(ToolDefinitionError, match="'type'"):
        as_tool({"name": "x"})


def test_docstring_styles() -> None:
    numpy_doc = """Summary line
    continued.

    Parameters
    ----------
    a : int
        The a.
    b
        The b.

    Returns
    -------
    int
    """
    summary, params = parse_docstring(numpy_doc)
    assert summary == "Summary line continued."
    assert params == {"a": "The a.", "b": "The b."}
    assert parse_docstring(None) == ("", {})


def test_result_and_error_encoding() -> None:
    assert encode_result("plain") == "plain"
    assert encode_result(None) == '{"ok": true}'
    assert json.loads(encode_result({"a": Place("x")})) == {"a": {"city": "x", "country": "GB"}}
    out = json.loads(encode_error(ValueError("bad key sk-secret-123"), secrets=["sk-secret-123"]))
    assert out == {"error": "ValueError: bad key [redacted]"}
    assert "did not finish" in encode_error(TimeoutError("x did not finish within 1 s"))


def _fc_done(call_id: str, rid: str, name: str = "get_weather") -> dict[str, object]:
    return {
        "type": "response.function_call_arguments.done",
        "response_id": rid,
        "item_id": f"it_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": '{"city": "x"}',
    }


def _resp_done(rid: str, call_ids: list[str]) -> dict[str, object]:
    return {
        "type": "response.done",
        "response": {
            "id": rid,
            "output": [
                {
                    "type": "function_call",
                    "call_id": c,
                    "name": "get_weather",
                    "arguments": "{}",
                    "id": f"it_{c}",
                }
                for c in call_ids
            ],
        },
    }


def test_tracker_one_follow_up_after_done_and_all_outputs() -> None:
    tr = ToolCallTracker()
    starts, due = tr.on_server_event(_fc_done("c1", "r1"))
    assert [s.call.call_id for s in starts] == ["c1"]
    assert not due
    starts, due = tr.on_server_event(_fc_done("c2", "r1"))
    assert len(starts) == 1
    assert not due
    # output_item.done and response.done repeat the calls: not started twice.
    assert tr.on_server_event(
        {
            "type": "response.output_item.done",
            "response_id": "r1",
            "item": _resp_done("r1", ["c1"])["response"]["output"][0],
        }
    ) == ([], False)  # type: ignore[index]  # _resp_done() is a loose dict[str, object]
    assert not tr.finish("c1")  # response not done yet
    starts, due = tr.on_server_event(_resp_done("r1", ["c1", "c2"]))
    assert starts == []
    assert not due
    assert tr.running == 1
    assert tr.finish("c2") is True  # the one follow-up
    assert tr.finish("c2") is False


def test_tracker_fast_tool_finishes_before_response_done() -> None:
    tr = ToolCallTracker()
    (start,), _ = tr.on_server_event(_fc_done("c1", "r1"))
    assert isinstance(start, StartCall)
    assert tr.finish("c1") is False
    assert tr.on_server_event(_resp_done("r1", ["c1"])) == ([], True)


def test_tracker_calls_only_seen_in_response_done() -> None:
    tr = ToolCallTracker()
    starts, due = tr.on_server_event(_resp_done("r9", ["c9"]))
    assert [s.call.call_id for s in starts] == ["c9"]
    assert not due
    assert tr.finish("c9") is True
    assert tr.on_server_event(
        {"type": "response.done", "response": {"id": "r2", "output": []}}
    ) == ([], False)
