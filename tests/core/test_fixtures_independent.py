"""Every recorded cassette, read twice: by the reducer and by an independent oracle (_oracle.py).

The oracle derives from the raw YAML events what the conversation must look like (order, roles,
transcripts, tool calls, responses, usage, output audio); the reducer's state must agree. New
files dropped into tests/fixtures/sessions/ are picked up at collection time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime_nb import Recording
from realtime_nb.core.reducer import ConversationState, Item
from realtime_nb.debugging.metrics import turn_views
from tests.conftest import SESSIONS
from tests.core._oracle import Expected, ExpectedItem, derive, parsed_arguments

CASSETTES = sorted(SESSIONS.glob("**/*.yaml"))
XAI = [p for p in CASSETTES if p.parent.name.startswith("test_xai")]
SEEDING = [p for p in CASSETTES if "history_seeding" in p.name]
MESSAGE_ROLES = {"user", "assistant", "system"}


def _id(p: Path) -> str:
    return str(p.relative_to(SESSIONS).with_suffix(""))


def _state(path: Path) -> ConversationState:
    return Recording.import_file(path).state


def _shape(it: Item | ExpectedItem) -> tuple[str, str, str | None]:
    """Id, type and role; a role only means something on a message."""
    return it.id, it.type, it.role if it.type == "message" else None


def _disagreements(exp: Expected, st: ConversationState) -> list[str]:
    bad: list[str] = []

    def check(what: str, expected: object, actual: object) -> None:
        if expected != actual:
            bad.append(f"{what}: expected {expected!r}, reducer has {actual!r}")

    check(
        "items (id, type, role)",
        [_shape(i) for i in exp.conversation()],
        [_shape(i) for i in st.items],
    )
    for e in exp.conversation():
        a = st.items_by_id.get(e.id)
        if a is None:
            continue
        if e.type == "message":
            check(f"{e.role} {e.id} text", e.text, a.text)
        elif e.type == "function_call":
            check(f"call {e.id} name", e.name, a.name)
            check(f"call {e.id} call_id", e.call_id, a.call_id)
            check(
                f"call {e.id} arguments",
                parsed_arguments(e.arguments),
                parsed_arguments(a.arguments),
            )
        elif e.type == "function_call_output":
            check(f"output {e.id} call_id", e.call_id, a.call_id)
            check(f"output {e.id} output", e.output, a.output)
        if e.type != "message" and a.role in MESSAGE_ROLES:
            bad.append(
                f"{e.type} {e.id} carries message role {a.role!r} (would count as a {a.role} message)"
            )
        if e.role == "assistant" and e.type == "message":
            part = a.audio_part()
            got = part.audio_bytes if part is not None and part.type == "output_audio" else 0
            check(f"assistant {e.id} output audio bytes", e.audio_bytes, got)
            # The recorder cut every audio payload to 33 bytes (tests/fixtures/README.md).
            assert e.audio_bytes == 33 * e.audio_deltas, f"oracle miscounted {e.id}'s audio"
            check(
                f"assistant {e.id} output_audio_ms",
                exp.duration_ms(e.audio_bytes),
                a.output_audio_ms,
            )
            check(
                f"assistant {e.id} duration by state.output_format",
                exp.duration_ms(e.audio_bytes),
                st.output_format.duration_ms(got),
            )
    check(
        "output format (type, rate)",
        exp.output_format,
        (st.output_format.type, st.output_format.rate),
    )
    check("response ids", sorted(exp.responses), sorted(st.responses))
    check("usage", exp.usage, {k: getattr(st.usage, k) for k in exp.usage})
    return bad


@pytest.mark.parametrize("path", CASSETTES, ids=_id)
def test_reducer_agrees_with_an_independent_reading(path: Path) -> None:
    exp = derive(path)
    bad = _disagreements(exp, _state(path))
    assert not bad, f"{_id(path)}:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("path", XAI, ids=_id)
def test_xai_usage_is_counted_from_the_top_level_of_response_done(path: Path) -> None:
    exp = derive(path)
    assert exp.usage_events, "every xAI session here has at least one response.done"
    assert all(u for u in exp.usage_events), "every xAI response.done carries token usage"
    assert exp.usage["total_tokens"] > 0
    assert exp.usage["total_tokens"] == sum(u["total_tokens"] for u in exp.usage_events)
    st = _state(path)
    assert (st.usage.total_tokens, st.usage.input_tokens, st.usage.output_tokens) == (
        exp.usage["total_tokens"],
        exp.usage["input_tokens"],
        exp.usage["output_tokens"],
    )


@pytest.mark.parametrize("path", SEEDING, ids=_id)
def test_history_seeding_attributes_each_response_to_the_turn_it_answers(path: Path) -> None:
    exp = derive(path)
    st = _state(path)
    assert exp.answers, "a seeding session has at least one response"
    views = turn_views(st)
    for rid, user_id in exp.answers.items():
        assert user_id is not None
        owners = [t for t in st.turns if t.response_id == rid]
        assert [t.item_id for t in owners] == [user_id], (
            f"response {rid} answers {user_id} ({st.items_by_id[user_id].text!r}); turns owning "
            f"it: {[(t.index, t.kind, t.item_id) for t in owners]}"
        )
        holders = [v for v in views if rid in [r.id for r in v.responses]]
        assert [v.user_item.id if v.user_item else None for v in holders] == [user_id]
