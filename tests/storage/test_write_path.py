"""The recorder's fast path records exactly what the general path would, and never a secret."""

from __future__ import annotations

import base64
import json
import time
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from realtime_nb.core._redact import _HINTS, REDACTED, hint_pattern, needs_redaction
from realtime_nb.core.events import split_audio
from realtime_nb.storage.recording import (
    MAX_BATCH_BYTES,
    Recorder,
    Recording,
    RecordingSalvageWarning,
    make_meta,
)
from tests.conftest import cassettes

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
PCM = bytes(range(256)) * 15  # 3840 bytes: whole base64 groups, no padding
B64 = base64.b64encode(PCM).decode()


def test_the_spelled_out_pre_check_has_every_hint() -> None:
    for hint in _HINTS:
        for text in (f'{{"x":"a{hint}b"}}', f'{{"x":"a{hint.upper()}b"}}'):
            assert needs_redaction(text), hint
    assert not needs_redaction('{"type":"input_audio_buffer.append","audio":""}')
    assert needs_redaction('{"t":"x"}', (KEY[:20],)) is False
    assert needs_redaction(f'{{"t":"{KEY}"}}', (KEY,))


def _hinted(text: str, known: tuple[str, ...] = ()) -> bool:
    return bool(pc.match_substring_regex(pa.array([text]), hint_pattern(known))[0].as_py())


def _texts_to_check() -> list[str]:
    """Every frame of the real recorded sessions, and each hint spelt every way a text can
    spell it: any case, inside words, JSON-escaped, with the two characters outside ASCII that
    lower to an ASCII letter, around non-ASCII text."""
    texts = [
        json.dumps(i["data"], ensure_ascii=ascii)
        for path in cassettes()
        for i in yaml.safe_load(path.read_text())["interactions"]
        if "data" in i
        for ascii in (True, False)
    ]
    for hint in _HINTS:
        for spelt in (hint, hint.upper(), hint.title(), hint.swapcase()):
            texts += [f'{{"x":"a{spelt}b"}}', f'{{"{spelt}":1}}', f"日本語{spelt}ü"]
    texts += ["ap\u0130", "s\u212a-", "AP\u0130_KEY", "\u0130", "ſk-", "Здравствуйте", "plain text"]
    texts += [json.dumps({"t": "x\u00e9"}), json.dumps({"t": "é"}, ensure_ascii=False)]
    return texts


@pytest.mark.parametrize("known", [(), (KEY,), ("a key with spaces+(x)*",), ("ключ-секрет",)])
def test_the_batch_scan_sees_every_text_the_pre_check_sees(known: tuple[str, ...]) -> None:
    """The file is checked a batch at a time with one RE2 scan (``hint_pattern``) in place of
    ``needs_redaction``: it must never clear a text that ``needs_redaction`` would not."""
    texts = _texts_to_check() + [f"x{k}y" for k in known] + [f"X{k.upper()}Y" for k in known]
    assert len(texts) > 1000
    missed = [t for t in texts if needs_redaction(t, known) and not _hinted(t, known)]
    assert not missed
    # ... and it is no blunter than it needs to be: a normal frame passes.
    assert not _hinted('{"type":"input_audio_buffer.append","audio":"","event_id":"e1"}', known)
    assert not _hinted("Здравствуйте, 日本語", known)


def test_a_hint_across_two_payloads_changes_nothing(tmp_path: Path) -> None:
    """The batch's payloads are scanned as one text: a hint made of the end of one and the start
    of the next sends both to the exact check, which keeps them as they are."""
    path = tmp_path / "across.arrow"
    frames = ['{"type":"x","t":"ap"}', '{"type":"y","t":"i"}']
    frames = ['{"type":"a","t":"s"}k-', *frames]  # "...s}k-": no hint in one payload
    with Recorder(path, meta=make_meta(model="m"), secrets=[KEY], flush_interval=3600) as rec:
        for raw in frames:
            rec.append("server", {"type": "x"}, raw=raw)
    assert Recording.open(path).table.column("payload").to_pylist() == frames


FRAMES = [
    # (the frame text, audio passed by the caller)
    (f'{{"type":"input_audio_buffer.append","audio":"{B64}"}}', None),
    (f'{{"type":"input_audio_buffer.append","audio":"{B64}","event_id":"e1"}}', PCM),
    (f'{{"type": "input_audio_buffer.append", "audio" : "{B64}"}}', None),  # spaced
    (
        f'{{"type":"response.output_audio.delta","delta":"{B64}","item_id":"i","response_id":"r"}}',
        None,
    ),
    ('{"type":"response.audio.delta","delta":"AAE="}', None),  # padded
    ('{"type":"response.audio.delta","delta":"AAF="}', None),  # non-canonical padding bits
    ('{"type":"input_audio_buffer.append","audio":"not base64!"}', None),
    ('{"type":"input_audio_buffer.append","audio":""}', None),
    ('{"type":"input_audio_buffer.append","audio":5}', None),
    # the key first appears nested, with another value: the top-level one is the audio
    (f'{{"type":"input_audio_buffer.append","x":{{"audio":"QQ=="}},"audio":"{B64}"}}', None),
    (f'{{"type":"input_audio_buffer.append","audio":"{B64}","note":"{KEY}"}}', None),
    (f'{{"type":"input_audio_buffer.append","audio":"{B64}","api_key":"abc"}}', None),
    ('{"type":"response.output_audio_transcript.delta","delta":"hi"}', None),
]


@pytest.mark.parametrize(("raw", "audio"), FRAMES)
def test_fast_path_records_what_the_general_path_would(raw: str, audio: bytes | None) -> None:
    data = json.loads(raw)
    rec = Recorder(None, secrets=[KEY])
    ev = rec.append("client", data, raw=raw, audio=audio)
    payload, pdict, want_audio = split_audio(data["type"], data, raw, audio)
    want = payload if payload is not None else json.dumps(pdict, separators=(",", ":"))
    assert ev.audio == want_audio
    if KEY in raw or "api_key" in raw:
        assert KEY not in ev.payload and REDACTED in ev.payload
        assert json.loads(ev.payload).keys() == json.loads(want).keys()
    else:
        assert json.loads(ev.payload) == json.loads(want)
        if payload is not None:
            assert ev.payload == payload  # cut from the frame text, not re-serialized
    assert ev.wire()["type"] == data["type"]


def test_secrets_never_reach_the_file_on_the_fast_path(tmp_path: Path) -> None:
    path = tmp_path / "s.arrow"
    with Recorder(path, meta=make_meta(model="m"), secrets=[KEY]) as rec:
        for raw, audio in FRAMES:
            rec.append("client", json.loads(raw), raw=raw, audio=audio)
    assert KEY.encode() not in path.read_bytes()
    assert len(Recording.open(path)) == len(FRAMES)


def test_a_secret_in_one_frame_of_a_batch_is_redacted_there_only(tmp_path: Path) -> None:
    """Frames are checked a batch at a time for the file and on first read for the event: the
    one frame with a secret is redacted in both, alike, and the others are kept as received."""
    path = tmp_path / "one.arrow"
    clean = [
        f'{{"type":"response.output_audio.delta","delta":"{B64}","item_id":"i{i}"}}'
        for i in range(50)
    ]
    dirty = f'{{"type":"error","error":{{"message":"Incorrect API key provided: {KEY}"}}}}'
    frames = [*clean[:20], dirty, *clean[20:]]
    with Recorder(path, meta=make_meta(model="m"), secrets=[KEY], flush_interval=3600) as rec:
        events = [rec.append("server", json.loads(raw), raw=raw) for raw in frames]
        # Read as the live session reads them: the parsed event first, for the dirty one.
        assert KEY not in json.dumps(events[20].data) and REDACTED in json.dumps(events[20].data)
    assert KEY.encode() not in path.read_bytes()
    rows = Recording.open(path).table.column("payload").to_pylist()
    assert rows == [ev.payload for ev in events]
    assert rows[:20] + rows[21:] == [raw.replace(B64, "") for raw in clean]
    assert KEY not in events[20].payload and KEY not in json.dumps(events[20].wire())


def test_a_batch_reaches_the_file_within_the_flush_interval(tmp_path: Path) -> None:
    path = tmp_path / "live.arrow"
    rec = Recorder(path, meta=make_meta(model="m"), flush_interval=0.05)
    try:
        for i in range(3):
            raw = f'{{"type":"input_audio_buffer.append","audio":"{B64}","event_id":"e{i}"}}'
            rec.append("client", json.loads(raw), raw=raw)
        deadline = time.monotonic() + 5
        while path.stat().st_size < 3 * len(PCM) and time.monotonic() < deadline:
            time.sleep(0.01)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RecordingSalvageWarning)  # not closed yet
            got = Recording.open(path)
        assert [e.audio for e in got.events] == [PCM] * 3
    finally:
        rec.close()


def test_a_full_batch_is_written_by_the_appending_thread(tmp_path: Path) -> None:
    path = tmp_path / "big.arrow"
    raw = f'{{"type":"input_audio_buffer.append","audio":"{B64}"}}'
    data = json.loads(raw)
    n = MAX_BATCH_BYTES // len(PCM) + 10
    with Recorder(path, meta=make_meta(model="m"), flush_interval=3600) as rec:
        for _ in range(n):
            rec.append("client", data, raw=raw)
        # The timer would not write for an hour: the full batch is on disk already.
        assert path.stat().st_size >= MAX_BATCH_BYTES
    back = Recording.open(path)
    assert back.complete and len(back) == n
    assert back.integrity is not None and len(back.integrity.batches) == 2


def _live_like(path: Path, every: int) -> None:
    """A synthetic session written with a batch every ``every`` events, as the flush timer cuts
    a live one: appends' runs cross batch boundaries, and rows without audio sit between them.
    Not compacted on close: a session that crashed leaves its file that way."""
    from realtime_nb.testing.synthetic import synthetic_session

    with Recorder(path, meta=make_meta(model="m"), flush_interval=3600, compact=False) as rec:
        for i, f in enumerate(synthetic_session(0.5)):
            rec.append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
            if i % every == every - 1:
                rec.flush()


@pytest.mark.parametrize("every", [1, 7, 25])
def test_bulk_reduce_over_many_small_batches_equals_event_by_event(
    tmp_path: Path, every: int
) -> None:
    from realtime_nb.core.reducer import Reducer
    from realtime_nb.storage.recording import reduce_table

    path = tmp_path / "live.arrow"
    _live_like(path, every)
    rec = Recording.open(path)
    assert rec.integrity is not None
    assert len(rec.integrity.batches) == -(-len(rec) // every)
    # Also a slice starting inside a batch (what StateTimeline hands over between checkpoints).
    for table in (rec.table, rec.table.slice(3, rec.table.num_rows - 10)):
        bulk = reduce_table(table)
        one = Reducer().apply_all(Recording(table, rec.meta).events)
        assert bytes(bulk.input_audio) == bytes(one.input_audio)
        assert bulk.input_chunk_times == one.input_chunk_times
        assert [(i.id, i.text) for i in bulk.items] == [(i.id, i.text) for i in one.items]
        # Whole items (every part, its audio chunk by chunk, first-audio times) and responses.
        assert bulk.items == one.items and bulk.responses == one.responses
        assert bulk.turns == one.turns
        assert bulk.counts == one.counts and bulk.event_count == one.event_count
        assert bulk.last_t_ns == one.last_t_ns


def _odd_session() -> list[tuple[str, dict[str, object]]]:
    """Audio events in every shape the bulk paths must tell apart: beta and GA delta names,
    deltas without an item or a response id, deltas of two items interleaved, audio kept inline
    (not canonical base64), appends from the server side, and the events that read the input
    timeline (commit, clear) between appends."""
    d = lambda **kw: {"type": "response.output_audio.delta", "delta": B64, **kw}  # noqa: E731
    a = {"type": "input_audio_buffer.append", "audio": B64}
    return [
        ("server", {"type": "session.created", "session": {"id": "s"}}),
        ("client", a),
        ("server", d(item_id="i1", response_id="r1")),  # before the item exists
        ("client", a),
        ("server", {"type": "response.created", "response": {"id": "r1"}}),
        ("server", d(item_id="i1", response_id="r1")),
        ("server", {**d(item_id="i1", response_id="r1"), "type": "response.audio.delta"}),
        ("client", {"type": "input_audio_buffer.append", "audio": "AAF="}),  # inline
        ("server", d(item_id="i2")),  # no response id
        ("server", d(item_id="i1", response_id="r1")),
        ("server", d(response_id="r1")),  # no item id
        ("server", {"type": "response.output_audio.delta", "delta": "AAF=", "item_id": "i1"}),
        ("server", a),  # an append the server sent: not the microphone's
        ("client", a),
        ("server", {"type": "input_audio_buffer.committed", "item_id": "u1"}),
        ("client", a),
        ("client", {"type": "input_audio_buffer.clear"}),
        ("server", {"type": "input_audio_buffer.cleared"}),
        ("client", a),
        (
            "server",
            {
                "type": "response.output_audio_transcript.delta",
                "item_id": "i1",
                "response_id": "r1",
                "content_index": 0,
                "delta": "hi",
            },
        ),
        ("server", d(item_id="i1", response_id="r1")),
        ("client", a),
    ]


@pytest.mark.parametrize("every", [1, 3, 100])
def test_bulk_reduce_of_odd_audio_events_equals_event_by_event(tmp_path: Path, every: int) -> None:
    from realtime_nb.core.reducer import Reducer
    from realtime_nb.storage.recording import StateTimeline, reduce_table

    path = tmp_path / "odd.arrow"
    with Recorder(path, meta=make_meta(model="m"), flush_interval=3600) as rec:
        for i, (source, data) in enumerate(_odd_session()):
            rec.append(source, data, raw=json.dumps(data), t_ns=i * 100_000_000)
            if i % every == every - 1:
                rec.flush()
    table = Recording.open(path).table
    events = list(Recording(table, {}).events)
    for lo in range(len(events)):
        for hi in range(lo, len(events) + 1):
            # Any slice, on a reducer that already holds the rows before it.
            r_bulk, r_one = Reducer(), Reducer()
            r_bulk.apply_all(events[:lo])
            r_one.apply_all(events[:lo])
            reduce_table(table.slice(lo, hi - lo), r_bulk)
            r_one.apply_all(events[lo:hi])
            bulk, one = r_bulk.state, r_one.state
            assert bytes(bulk.input_audio) == bytes(one.input_audio), (lo, hi)
            assert bulk.input_chunk_times == one.input_chunk_times, (lo, hi)
            assert bulk.items == one.items and bulk.responses == one.responses, (lo, hi)
            assert bulk.order == one.order and bulk.turns == one.turns, (lo, hi)
            assert bulk.counts == one.counts and bulk.event_count == one.event_count
            assert bulk.errors == one.errors and bulk.last_t_ns == one.last_t_ns
    # Checkpoints every 0.3 s of this 2-second session: the timeline's pieces agree too.
    tl = StateTimeline(table, 0.3)
    for k in range(len(events) + 1):
        got = tl.state_at(k * 0.1 - 0.05)
        want = Reducer().apply_all(events[:k])
        assert got.items == want.items and bytes(got.input_audio) == bytes(want.input_audio)
        assert got.input_chunk_times == want.input_chunk_times and got.counts == want.counts
    assert tl.state.items == Reducer().apply_all(events).items


def test_pending_rows_add_no_object_for_the_collector(tmp_path: Path) -> None:
    """Held rows are values in one list: a collection (which walks everything a session holds)
    is not triggered by recording, however many events wait for the next batch."""
    import gc

    raw = f'{{"type":"input_audio_buffer.append","audio":"{B64}"}}'
    data = json.loads(raw)
    with Recorder(tmp_path / "gc.arrow", meta=make_meta(model="m"), flush_interval=3600) as rec:
        rec.append("client", data, raw=raw)
        gc.collect()
        gc.disable()
        try:
            before = len(gc.get_objects())
            for _ in range(2000):
                rec.append("client", data, raw=raw)
            grown = len(gc.get_objects()) - before
        finally:
            gc.enable()
    assert grown < 50, f"{grown} tracked objects for 2000 pending events"
