"""What the browser shows (realtime_nb/widget/_viewmodel.py), from a real reducer fed with the
recorded sessions in tests/fixtures; push-to-talk's commit rule; the benchmark's bookkeeping."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime_nb.core.events import Event
from realtime_nb.core.protocol import Source
from realtime_nb.core.reducer import Reducer
from realtime_nb.storage.recording import Recording
from realtime_nb.widget._ptt import MIN_COMMIT_MS, PushToTalk
from realtime_nb.widget._timings import LatencyBook
from realtime_nb.widget._viewmodel import (
    EMPTY_VIEW,
    ViewModel,
    changes_nothing_shown,
    conversation_view,
    item_view,
    items_touched,
    stats_view,
)
from tests.conftest import SESSIONS, cassettes

TOOL_ROUND = SESSIONS / "test_openai_ws" / "test_tool_call_round.yaml"
AUDIO_TURN = SESSIONS / "test_openai_ws" / "test_text_in_audio_out_turn.yaml"


def _events(path: Path) -> list[Event]:
    return list(Recording.import_file(path).events)


def _with_a_cut(events: list[Event]) -> list[Event]:
    """The events, the first assistant audio item cut 1 ms in (its recorded audio is a few ms of
    placeholder bytes) by the client's truncate and the server's confirmation, right after its
    audio ended, as when the user interrupts."""
    done = next(i for i, e in enumerate(events) if e.type == "response.output_audio.done")
    item, t = events[done].item_id, events[done].t_ns
    cut = {"item_id": item, "content_index": 0, "audio_end_ms": 1}
    added = [
        Event(-1, t, Source.CLIENT, "conversation.item.truncate", data={
            "type": "conversation.item.truncate", **cut}, item_id=item),
        Event(-1, t, Source.SERVER, "conversation.item.truncated", data={
            "type": "conversation.item.truncated", **cut}, item_id=item),
    ]  # fmt: skip
    return [*events[: done + 1], *added, *events[done + 1 :]]


@pytest.mark.parametrize("path", cassettes("*/*.yaml"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_view_kept_up_event_by_event_is_the_view_of_the_state(path: Path) -> None:
    """Recomputing only the items an event names gives exactly the full view, after every event
    of every recorded session (and of one with a cut)."""
    for events in (_events(path), *([_with_a_cut(_events(path))] if path == AUDIO_TURN else [])):
        reducer, vm = Reducer(), ViewModel()
        for ev in events:
            reducer.apply(ev)
            view = vm.update(reducer.state, ev, cost=0.25)
            full = conversation_view(reducer.state, 0.25)
            assert (view.order, view.stats) == (full.order, full.stats)
            assert view.version <= full.version  # an append changes nothing: the same view
            assert dict(view.items) == dict(full.items), ev
        assert view.order == tuple(it.id for it in reducer.state.items)


def test_a_tool_call_round_item_by_item() -> None:
    st = Reducer().apply_all(_events(TOOL_ROUND))
    user, call, output, answer = (item_view(it) for it in st.items)
    assert (user["role"], user["type"], user["text"]) == (
        "user", "message", "What is the weather in London?")  # fmt: skip
    assert call["type"] == "function_call" and call["role"] is None
    assert call["name"] == "get_weather" and call["call_id"] and '"London"' in call["arguments"]
    assert output["type"] == "function_call_output" and output["call_id"] == call["call_id"]
    assert output["output"] == "It is foggy and 12 degrees in London."
    assert answer["role"] == "assistant" and answer["status"] == "completed"
    assert answer["text"] == "It is foggy and 12 degrees in London."
    assert not answer["has_audio"] and not user["has_audio"]  # a text-only answer
    for d in (user, call, output, answer):
        assert d["truncated"] is False and "heard_text" not in d and "truncated_ms" not in d


def test_a_cut_item_carries_what_was_heard() -> None:
    events = _with_a_cut(_events(AUDIO_TURN))
    st = Reducer().apply_all(events)
    (cut,) = [it for it in st.items if it.truncated]
    d = item_view(cut)
    assert d["truncated"] is True and d["truncated_ms"] == 1
    assert d["truncate_requested_ms"] == 1 and d["has_audio"] and d["role"] == "assistant"
    assert d["heard_text"] == cut.heard_text() and d["text"].startswith(d["heard_text"])
    assert 0 < len(d["heard_text"]) < len(d["text"])
    # Requested but not confirmed yet: heard text already shown.
    r = Reducer()
    for ev in events:
        r.apply(ev)
        if ev.type == "conversation.item.truncate":
            break
    pending = item_view(r.state.item(cut.id))
    assert pending["truncated"] is False and pending["truncate_requested_ms"] == 1
    assert pending["heard_text"] == pending["text"]  # the cut is not confirmed: all of it


def test_secrets_never_reach_the_view() -> None:
    secret = "sk-proj-" + "x" * 30
    r = Reducer()
    item = {"id": "u", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": f"my key is {secret}"}]}  # fmt: skip
    r.apply(Event(0, 0, Source.SERVER, "conversation.item.added",
                  data={"type": "conversation.item.added", "item": item}))  # fmt: skip
    assert secret not in str(conversation_view(r.state, 0.0).items)


def test_the_summary_counts_tokens_turns_and_cost() -> None:
    st = Reducer().apply_all(_events(TOOL_ROUND))
    stats = stats_view(st, 0.0123)
    assert stats["cost"] == 0.0123
    assert stats["tokens"] == {
        "input_tokens": st.usage.input_tokens,
        "output_tokens": st.usage.output_tokens,
        "total_tokens": st.usage.total_tokens,
    }
    assert stats["tokens"]["total_tokens"] > 0
    assert [t["index"] for t in stats["turns"]] == list(range(1, len(st.turns) + 1))
    assert stats_view(st, float("nan"))["cost"] == 0.0


def test_messages_carry_only_what_changed() -> None:
    events = _events(TOOL_ROUND)
    r = Reducer()
    half = len(events) // 2
    r.apply_all(events[:half])
    before = conversation_view(r.state, 0.0)
    r.apply_all(events[half:])
    after = conversation_view(r.state, 0.0, before, touched=None)
    msg = after.items_message(before)
    assert msg is not None and msg["order"] == list(after.order)
    assert {d["id"] for d in msg["items"]} == {
        i for i in after.order if before.items.get(i) != after.items[i]
    }
    assert after.items_message(after) is None and after.stats_message(after) is None
    assert after.stats_message(before) == {"type": "stats", **after.stats}
    snap = after.snapshot_message([{"seq": 1}])
    assert [d["id"] for d in snap["items"]] == snap["order"] == list(after.order)
    assert snap["events"] == [{"seq": 1}] and snap["stats"] == after.stats
    # From nothing (a fresh view), every item; an empty conversation has nothing to send.
    assert len(after.items_message(None)["items"]) == len(after.order)  # type: ignore[index]  # not None: items changed
    assert EMPTY_VIEW.items_message(EMPTY_VIEW) is None


def test_a_deleted_item_leaves_the_order() -> None:
    r = Reducer()
    events = _events(TOOL_ROUND)
    r.apply_all(events)
    vm = ViewModel()
    vm.update(r.state, None, 0.0)
    first = r.state.items[0].id
    ev = Event(len(events), events[-1].t_ns, Source.SERVER, "conversation.item.deleted",
               data={"type": "conversation.item.deleted", "item_id": first}, item_id=first)  # fmt: skip
    r.apply(ev)
    view = vm.update(r.state, ev, 0.0)
    assert first not in view.order and first not in view.items
    assert view.items_message(conversation_view(Reducer().apply_all(events), 0.0)) == {
        "type": "items", "order": list(view.order), "items": []}  # fmt: skip


def test_which_items_an_event_touches() -> None:
    def ev(source: Source, data: dict[str, object], item_id: str | None = None) -> Event:
        return Event(0, 0, source, str(data["type"]), data=data, item_id=item_id)

    assert changes_nothing_shown(ev(Source.CLIENT, {"type": "input_audio_buffer.append"}))
    delta = {"type": "response.output_audio_transcript.delta", "item_id": "a"}
    assert not changes_nothing_shown(ev(Source.SERVER, delta, "a"))
    assert items_touched(ev(Source.SERVER, delta, "a")) == ["a"]
    done = {"type": "response.done", "response": {"id": "r", "output": [{"id": "a"}, {"id": "b"}]}}
    assert items_touched(ev(Source.SERVER, done)) == ["a", "b"]
    created = {"type": "response.created", "response": {"id": "r", "output": []}}
    assert items_touched(ev(Source.SERVER, created)) == []
    assert items_touched(ev(Source.SERVER, {"type": "session.updated", "session": {}})) is None


def test_a_failed_update_keeps_the_last_view_and_catches_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import realtime_nb.widget._viewmodel as vm_module

    events = _events(TOOL_ROUND)
    r, vm = Reducer(), ViewModel()
    for ev in events[:10]:
        r.apply(ev)
        vm.update(r.state, ev, 0.0)
    good = vm.view
    monkeypatch.setattr(vm_module, "item_view", lambda item, transcribing=False: 1 / 0)
    failed = 0
    for ev in events[10:]:
        r.apply(ev)
        try:
            vm.update(r.state, ev, 0.0)
        except ZeroDivisionError:
            failed += 1
        assert vm.view is good
    assert failed
    monkeypatch.undo()
    # The next event names one item; the ones the failed events touched are computed too.
    last = Event(len(events), events[-1].t_ns, Source.LOCAL, "local.playback.played",
                 data={"type": "local.playback.played", "item_id": r.state.items[-1].id,
                       "played_ms": 10.0, "reason": "finished"}, item_id=r.state.items[-1].id)  # fmt: skip
    r.apply(last)
    assert dict(vm.update(r.state, last, 0.0).items) == dict(conversation_view(r.state, 0.0).items)


# --- push-to-talk -------------------------------------------------------------------------------


def test_push_to_talk_commits_a_long_enough_press() -> None:
    ptt = PushToTalk(24_000)
    ptt.add(4800)  # before the press: not counted
    ptt.start()
    ptt.add(2400)  # 50 ms of PCM16 at 24 kHz
    short = ptt.end()
    assert not short.commit and short.ms == 50.0
    assert short.notice == "Hold to talk: only 50 ms were recorded, nothing was sent."
    ptt.start()
    for _ in range(2):
        ptt.add(2400)
    assert ptt.end().commit and ptt.ms == MIN_COMMIT_MS  # exactly the minimum is enough
    ptt.start()
    assert ptt.ms == 0 and not ptt.end().commit
    with pytest.raises(ValueError, match="positive"):
        PushToTalk(0)


def test_push_to_talk_counts_by_the_input_rate() -> None:
    ptt = PushToTalk(8000)
    ptt.start()
    ptt.add(1600)  # 100 ms at 8 kHz
    assert ptt.end().commit


# --- benchmark bookkeeping -----------------------------------------------------------------------


def test_latency_spans_are_matched_on_bytes_and_items() -> None:
    book = LatencyBook()
    assert book.mic_received(1000.0, 1012.5) == 12.5
    book.mic_forwarded(100, 1000.0)
    book.mic_forwarded(100, 1050.0)
    book.mic_forwarded(100, None)  # no browser time: counted, never sampled
    book.audio_sent(150, now_ms=1100.0)  # completes the first chunk only
    assert book.timings.mic_to_server == [100.0]
    book.audio_sent(150, now_ms=1200.0)
    assert book.timings.mic_to_server == [100.0, 150.0]
    book.first_delta("a", 2000.0)
    book.first_delta("a", 2500.0)  # only the first counts
    book.playback_started("a", 2080.0)
    book.playback_started("a", 2090.0)  # already matched
    book.playback_started("b", 2090.0)  # never had a delta
    assert book.timings.delta_to_playback == [80.0]
    assert book.timings.mic_to_kernel == [12.5]


# --- "(speaking...)": words still to come ---------------------------------------------------------


def test_a_user_item_is_pending_until_its_transcript_arrives_if_one_was_asked_for() -> None:
    from realtime_nb.widget._viewmodel import transcribing, transcript_pending

    demo = Path(__file__).resolve().parents[2] / "recordings" / "demo.arrow"
    r = Reducer()
    seen: list[tuple[str, bool]] = []  # (the user item's transcription status, pending)
    asked = None
    for ev in Recording.open(demo).events:
        r.apply(ev)
        users = [it for it in r.state.items if it.role == "user"]
        if users:
            asked = transcribing(r.state)
            it = users[0]
            seen.append((str(it.transcription_status), transcript_pending(it, asked)))
            if item_view(it, asked)["pending"] != seen[-1][1]:
                raise AssertionError("item_view disagrees with transcript_pending")
    assert asked is True, "the demo session transcribes the user's audio"
    assert seen[0][1] is True, "pending from the moment the item is there"
    assert seen[-1] == ("completed", False)
    assert all(not pending for status, pending in seen if status == "completed")
    # A session that asked for no transcript never shows the user's audio as pending.
    it = next(i for i in r.state.items if i.role == "user")
    it.transcription_status = None
    assert transcript_pending(it, False) is False


def test_an_assistant_item_is_pending_while_in_progress() -> None:
    r = Reducer()
    states = []
    for ev in _events(AUDIO_TURN):
        r.apply(ev)
        for it in r.state.items:
            if it.role == "assistant":
                states.append((it.status, item_view(it)["pending"]))
    assert ("in_progress", True) in states
    assert states[-1] == ("completed", False)
