"""Damaged recordings never crash the process and never lose data silently (issue 13).

A real recording (a synthetic session with audio in both directions, ~50 batches) is damaged
hundreds of ways: random bit flips anywhere, flips aimed at batch headers and at the file's
header, byte overwrites, zeroed blocks, removed, duplicated and swapped batches, truncation at
every batch boundary and inside batches. Every damaged copy is opened in a child process (a
segfault shows as a crash of that child, not of the test run), and the test asserts: no crash; no
silent change (every event returned is byte-identical to the original with the same ``seq``, and
anything short of the whole original is reported: a warning, ``complete=False`` or a
``RecordingFormatError``); every batch the damage did not touch is recovered. The same runs over
``tests/storage/data/demo_before_checksums.arrow`` (the demo recording as realtime_nb wrote it
before checksums existed, kept as the example of an old file): there only the crash and recovery
guarantees hold (a flipped audio bit has nothing to be checked against).

Run as a script (``python tests/storage/test_damage.py JOB.json``) this file is the child.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from realtime_nb.core.events import Event
from realtime_nb.core.protocol import Source
from realtime_nb.frontdoor.cli import main as cli_main
from realtime_nb.storage._integrity import _U32, INFO_KEY, _field, _read, custom_metadata
from realtime_nb.storage.recording import (
    META_KEY,
    Recorder,
    Recording,
    RecordingDamagedError,
    RecordingFormatError,
    RecordingSalvageWarning,
    _Columns,
    _schema,
    make_meta,
)
from realtime_nb.testing.synthetic import synthetic_session

REPO = Path(__file__).resolve().parents[2]
#: A recording written before checksums existed (the demo as it was then): old files must open.
DEMO = Path(__file__).parent / "data" / "demo_before_checksums.arrow"
SEED = 13
#: Events between forced flushes: ~50 batches for the ~500 events of the recording below.
EVENTS_PER_BATCH = 10
#: Child processes opening damaged copies side by side (CI has two cores).
WORKERS = 2

Spec = dict[str, Any]


# --- the recording and its damaged copies ---------------------------------------------------------


def _write_recording(path: Path, minutes: float = 0.25) -> None:
    frames = list(synthetic_session(minutes))
    with Recorder(path, meta=make_meta(model="gpt-realtime")) as rec:
        for i, f in enumerate(frames):
            rec.append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
            if i % EVENTS_PER_BATCH == EVENTS_PER_BATCH - 1:
                rec.flush()


def _layout(path: Path) -> tuple[int, list[tuple[int, int, int, int]], int]:
    """``(header_end, [(start, end, first, last)] per data batch, end of the last message)``."""
    rec = Recording.open(path)
    assert rec.complete and rec.integrity is not None
    report = rec.integrity
    batches = [(b.start, b.end, b.first, b.last) for b in report.batches]
    return report.header_end, batches, report.size - 8


def _specs(data: bytes, path: Path, rng: random.Random, checksummed: bool) -> list[Spec]:
    """The damage to apply: each spec says how to build the copy from the original, which
    batches it leaves untouched (they must come back), and whether it touches the header."""
    size = len(data)
    header_end, batches, messages_end = _layout(path)
    specs: list[Spec] = []

    def untouched(lo: int, hi: int) -> list[list[int]]:
        return [[f, la] for s, e, f, la in batches if e <= lo or s >= hi]

    def patch(kind: str, at: int, new: bytes) -> None:
        specs.append(
            {
                "kind": kind,
                "segments": [[0, size]],
                "patches": [[at, new.hex()]],
                "must": untouched(at, at + len(new)),
                "header": at < header_end,
                "lost": None,
            }
        )

    def flip(kind: str, at: int) -> None:
        patch(kind, at, bytes([data[at] ^ (1 << rng.randrange(8))]))

    n_flips, n_headers, n_schema, n_over, n_zero, n_dup, n_swap, n_mid = (
        (150, 60, 20, 60, 40, 30, 10, 50) if checksummed else (80, 30, 10, 20, 20, 10, 0, 20)
    )
    for _ in range(n_flips):
        flip("bit flip", rng.randrange(size))
    for _ in range(n_headers):  # the flatbuffer headers: row counts, buffer offsets, metadata
        s = rng.choice(batches)[0]
        flip("bit flip in a batch header", s + rng.randrange(8 + _header_len(data, s)))
    for _ in range(n_schema):
        flip("bit flip in the file header", rng.randrange(header_end))
    for _ in range(n_over):
        at = rng.randrange(size)
        patch("byte overwrite", at, rng.randbytes(min(rng.randint(1, 16), size - at)))
    for _ in range(n_zero):
        at = rng.randrange(header_end, size)
        patch("zeroed block", at, bytes(min(rng.randint(8, 4096), size - at)))
    for s, e, f, la in batches if checksummed else rng.sample(batches, 20):
        specs.append(
            {
                "kind": "removed batch",
                "segments": [[0, s], [e, size]],
                "patches": [],
                "must": [[f2, l2] for _, _, f2, l2 in batches if f2 != f],
                "header": False,
                "lost": [f, la],
            }
        )
    bounds = [s for s, _, _, _ in batches] + [batches[-1][1], messages_end]
    for _ in range(n_dup):
        s, e, _, _ = rng.choice(batches)
        to = rng.choice(bounds)
        specs.append(
            {
                "kind": "duplicated batch",
                "segments": [[0, to], [s, e], [to, size]],
                "patches": [],
                "must": [[f, la] for _, _, f, la in batches],
                "header": False,
                "lost": None,
            }
        )
    for _ in range(n_swap):
        i, j = sorted(rng.sample(range(len(batches)), 2))
        (s1, e1, _, _), (s2, e2, _, _) = batches[i], batches[j]
        specs.append(
            {
                "kind": "swapped batches",
                "segments": [[0, s1], [s2, e2], [e1, s2], [s1, e1], [e2, size]],
                "patches": [],
                "must": [[f, la] for _, _, f, la in batches],
                "header": False,
                "lost": None,
            }
        )
    cuts = bounds if checksummed else rng.sample(bounds, 10)
    for at in [*cuts, *(rng.randrange(header_end, size) for _ in range(n_mid))]:
        specs.append(
            {
                "kind": "truncation at a batch boundary" if at in bounds else "truncation",
                "segments": [[0, at]],
                "patches": [],
                "must": [[f, la] for _, e, f, la in batches if e <= at],
                "header": False,
                "lost": None,
            }
        )
    for i, spec in enumerate(specs):
        spec["id"] = i
    return specs


def _header_len(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos + 4 : pos + 8], "little", signed=True)


def _build(original: bytes, spec: Spec) -> bytes:
    out = bytearray(b"".join(original[s:e] for s, e in spec["segments"]))
    for at, hexed in spec["patches"]:
        new = bytes.fromhex(hexed)
        out[at : at + len(new)] = new
    return bytes(out)


# --- the child --------------------------------------------------------------------------------------


def _rows(table: pa.Table) -> dict[int, tuple[Any, ...]]:
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return {row[0]: row for row in zip(*cols, strict=True)}


def _child(job_file: str) -> None:
    """Open every damaged copy of a job; one JSON line per copy (``start`` first, so that the
    parent knows which copy a crash happened on)."""
    job = json.loads(Path(job_file).read_text())
    original = Path(job["original"]).read_bytes()
    ref = Recording.open(job["original"])
    want, meta = _rows(ref.table), ref.meta
    scratch = Path(job["scratch"])
    for spec in job["specs"]:
        print(json.dumps({"start": spec["id"]}), flush=True)
        scratch.write_bytes(_build(original, spec))
        res: dict[str, Any] = {"id": spec["id"]}
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                rec = Recording.open(scratch)
                got = _rows(rec.table)
                _ = rec.state  # the reducer over every row
                _ = [e.type for e in rec.events]
            seqs = set(got)
            res |= {
                "outcome": "opened",
                "complete": rec.complete,
                "warnings": [str(w.message) for w in caught],
                "salvage": all(issubclass(w.category, RecordingSalvageWarning) for w in caught),
                "events": len(got),
                "changed": sum(1 for s, row in got.items() if want.get(s) != row),
                "meta_ok": rec.meta == meta,
                "missing": [
                    r for r in spec["must"] if not all(s in seqs for s in range(r[0], r[1] + 1))
                ],
                "whole": len(got) == len(want) and got == want,
            }
        except RecordingFormatError as exc:
            res |= {"outcome": "error", "error": str(exc)}
        except Exception as exc:  # anything else is a failure the parent reports
            res |= {"outcome": "exception", "error": repr(exc)}
        print(json.dumps(res), flush=True)


# --- the parent -------------------------------------------------------------------------------------


def _run_children(original: Path, specs: list[Spec], tmp: Path) -> dict[int, dict[str, Any]]:
    """Results by spec id; a child that dies is replaced, the copy it died on marked a crash."""

    def run(chunk: list[Spec], k: int) -> dict[int, dict[str, Any]]:
        results: dict[int, dict[str, Any]] = {}
        todo = chunk
        while todo:
            job = tmp / f"job{k}.json"
            job.write_text(
                json.dumps(
                    {
                        "original": str(original),
                        "scratch": str(tmp / f"copy{k}.arrow"),
                        "specs": todo,
                    }
                )
            )
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            proc = subprocess.run(
                [sys.executable, __file__, str(job)],
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
                check=False,
            )
            started = None
            for line in proc.stdout.splitlines():
                msg = json.loads(line)
                if "start" in msg:
                    started = msg["start"]
                else:
                    results[msg["id"]] = msg
            if proc.returncode != 0:
                assert started is not None and started not in results, proc.stderr[-2000:]
                results[started] = {
                    "id": started,
                    "outcome": "crash",
                    "error": f"exit {proc.returncode}: {proc.stderr[-500:]}",
                }
            todo = [s for s in todo if s["id"] not in results]
            assert proc.returncode != 0 or not todo, f"the child stopped early: {proc.stderr}"
        return results

    chunks = [specs[k::WORKERS] for k in range(WORKERS)]
    with ThreadPoolExecutor(WORKERS) as pool:
        parts = list(pool.map(run, chunks, range(WORKERS)))
    return {i: r for part in parts for i, r in part.items()}


def _fuzz(original: Path, tmp: Path, checksummed: bool) -> tuple[list[str], dict[str, float]]:
    """Damage ``original`` every way, open each copy in a child; the failures and the figures."""
    data = original.read_bytes()
    specs = _specs(data, original, random.Random(SEED), checksummed)
    results = _run_children(original, specs, tmp)
    failures: list[str] = []
    n_events = len(Recording.open(original))
    damaged = detected = harmless = crashes = changed_files = 0
    recovered = 0.0
    for spec in specs:
        r = results[spec["id"]]
        copy = _build(data, spec)
        if copy == data:
            continue  # a flip that rewrote the same byte: not damage
        damaged += 1
        label = f"#{spec['id']} {spec['kind']} {spec['segments']} {spec['patches'][:1]}"
        if r["outcome"] in ("crash", "exception"):
            crashes += r["outcome"] == "crash"
            failures.append(f"{label}: {r['outcome']}: {r['error']}")
            continue
        if r["outcome"] == "error":
            detected += 1
            if not spec["header"]:
                failures.append(f"{label}: an error though the header is intact: {r['error']}")
            continue
        recovered += r["events"] / n_events
        found = bool(r["warnings"]) or not r["complete"]
        detected += found
        harmless += not found and r["whole"] and r["meta_ok"]
        if not r["salvage"]:
            failures.append(f"{label}: a warning other than RecordingSalvageWarning")
        if r["changed"] or not r["meta_ok"]:
            changed_files += 1
            if checksummed:
                failures.append(f"{label}: {r['changed']} events changed (meta ok: {r['meta_ok']})")
        if not found and not (r["whole"] and r["meta_ok"]) and checksummed:
            failures.append(f"{label}: not the original, and nothing reported")
        if r["missing"]:
            failures.append(f"{label}: untouched batches not recovered: {r['missing'][:5]}")
        if spec["lost"] and checksummed:
            first, last = spec["lost"]
            if not any(f"seq {first}-{last} lost" in w for w in r["warnings"]):
                failures.append(f"{label}: the warning does not name seq {first}-{last}")
    figures = {
        "damaged files": damaged,
        "detected": detected,
        "harmless (content intact, unreported)": harmless,
        "crashes": crashes,
        "files with changed events": changed_files,
        "events recovered (mean fraction)": round(recovered / max(damaged, 1), 3),
    }
    return failures, figures


@pytest.mark.slow
def test_fuzzed_damage_never_crashes_or_changes_events_silently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = tmp_path / "original.arrow"
    _write_recording(original)
    t0 = time.monotonic()
    failures, figures = _fuzz(original, tmp_path, checksummed=True)
    old_failures, old_figures = _fuzz(DEMO, tmp_path, checksummed=False)
    with capsys.disabled():
        print(f"\ndamage fuzz ({time.monotonic() - t0:.1f} s), checksummed recording: {figures}")
        print(f"damage fuzz, {DEMO.name} (no checksums): {old_figures}")
    assert not failures, "\n".join(failures[:20])
    assert not old_failures, "\n".join(old_failures[:20])
    assert figures["crashes"] == old_figures["crashes"] == 0
    assert figures["damaged files"] >= 500
    assert (
        figures["detected"] + figures["harmless (content intact, unreported)"]
        == (figures["damaged files"])
    )


# --- targeted cases -----------------------------------------------------------------------------------


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "rec.arrow"
    _write_recording(path, minutes=0.1)
    return path


def _open_warned(path: Path) -> tuple[Recording, str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = Recording.open(path)
    assert all(issubclass(w.category, RecordingSalvageWarning) for w in caught)
    return rec, " ".join(str(w.message) for w in caught)


def test_every_batch_carries_a_checksum_and_plain_readers_still_read_it(recording: Path) -> None:
    reader = pa.ipc.open_stream(pa.memory_map(str(recording)))
    assert set(reader.schema.metadata) == {META_KEY, b"realtime_nb.crc32c"}
    pairs = list(reader.iter_batches_with_custom_metadata())
    assert all(set(cm) == {INFO_KEY, b"realtime_nb.crc32c"} for _, cm in pairs)
    *data, (closing, closing_meta) = pairs
    rows = sum(b.num_rows for b, _ in data)
    assert closing.num_rows == 0 and json.loads(closing_meta[INFO_KEY]) == {"events": rows}
    assert reader.schema.equals(_schema(make_meta()), check_metadata=False)
    assert rows == len(Recording.open(recording)) > 50


def test_the_checksum_definition_never_changes() -> None:
    """Files already written carry these checksums: a change here would call them damaged."""
    from realtime_nb.storage._integrity import batch_metadata, closing_metadata

    cols = _Columns()
    cols.add(Event(0, 5, Source.SERVER, "session.created", payload='{"type":"session.created"}'))
    cols.add(
        Event(
            1,
            9,
            Source.CLIENT,
            "input_audio_buffer.append",
            payload='{"type":"input_audio_buffer.append","audio":""}',
            audio=b"\x01\x02\x03",
            event_id="e1",
        )
    )
    schema = _schema({"format_version": 1})
    assert batch_metadata(cols.to_batch(schema), 0, 1) == {
        INFO_KEY: b'{"seq":[0,1]}',
        b"realtime_nb.crc32c": b"1b870c00",
    }
    assert closing_metadata(_Columns().to_batch(schema), 2)[b"realtime_nb.crc32c"] == b"7e5e7f07"


def test_old_files_without_checksums_open_as_before() -> None:
    rec, warned = _open_warned(DEMO)
    assert not warned and rec.complete and len(rec) == 161
    assert rec.integrity is not None and not rec.integrity.checksummed
    assert rec.integrity.verified == 0 and len(rec.integrity.batches) == 37


def test_a_removed_batch_is_named_with_its_seq_range_and_offset(recording: Path) -> None:
    data = recording.read_bytes()
    full = Recording.open(recording)
    assert full.integrity is not None
    b = full.integrity.batches[3]
    cut = recording.with_name("removed.arrow")
    cut.write_bytes(data[: b.start] + data[b.end :])
    rec, warned = _open_warned(cut)
    assert not rec.complete and len(rec) == len(full) - b.rows
    assert f"seq {b.first}-{b.last} lost ({b.rows} events): byte {b.start}" in warned


def test_a_damaged_last_batch_of_a_closed_file_is_not_silent(recording: Path) -> None:
    data = recording.read_bytes()
    full = Recording.open(recording)
    assert full.integrity is not None
    last = full.integrity.batches[-1]
    gone = recording.with_name("gone.arrow")
    gone.write_bytes(data[: last.start] + data[last.end :])  # EOS still there
    rec, warned = _open_warned(gone)
    assert not rec.complete
    assert f"seq {last.first}-{last.last} lost" in warned


def test_a_damaged_body_length_does_not_swallow_the_next_batch(recording: Path) -> None:
    data = bytearray(recording.read_bytes())
    full = Recording.open(recording)
    assert full.integrity is not None
    b = full.integrity.batches[2]
    n = int.from_bytes(data[b.start + 4 : b.start + 8], "little")
    fb = bytes(data[b.start + 8 : b.start + 8 + n])
    at = b.start + 8 + _field(fb, _read(_U32, fb, 0), 3)  # Message.bodyLength
    body = int.from_bytes(data[at : at + 8], "little")
    nxt = full.integrity.batches[3]
    data[at : at + 8] = (body + (nxt.end - nxt.start)).to_bytes(8, "little")
    assert custom_metadata(fb)  # the header itself still decodes
    bad = recording.with_name("long.arrow")
    bad.write_bytes(bytes(data))
    rec, warned = _open_warned(bad)
    assert rec.table.equals(full.table)  # every batch, the next one included
    assert not rec.complete and "body length is damaged (no events lost)" in warned


def test_an_end_marker_inside_the_file_hides_nothing(recording: Path) -> None:
    data = bytearray(recording.read_bytes())
    full = Recording.open(recording)
    assert full.integrity is not None
    b = full.integrity.batches[4]
    data[b.start + 4 : b.start + 8] = bytes(4)  # this batch now starts like an end-of-stream
    bad = recording.with_name("eos.arrow")
    bad.write_bytes(bytes(data))
    rec, warned = _open_warned(bad)
    assert not rec.complete and len(rec) == len(full) - b.rows
    assert "end-of-stream marker before the end of the file" in warned


def test_a_damaged_header_is_a_clear_error(recording: Path) -> None:
    data = bytearray(recording.read_bytes())
    at = bytes(data).index(b'"model":"gpt-realtime"') + 10
    data[at] ^= 0x01  # inside the description: still JSON, but not what was written
    bad = recording.with_name("header.arrow")
    bad.write_bytes(bytes(data))
    with pytest.raises(RecordingDamagedError, match="header is damaged"):
        Recording.open(bad)
    data = bytearray(recording.read_bytes())
    data[8:64] = bytes(56)  # the flatbuffer's root and tables
    bad.write_bytes(bytes(data))
    with pytest.raises(RecordingDamagedError, match=r"header .* is damaged.*intact batches follow"):
        Recording.open(bad)
    cut = recording.with_name("cut.arrow")
    cut.write_bytes(bytes(data[:100]))  # a cut inside the header: nothing to recover, a warning
    rec, warned = _open_warned(cut)
    assert len(rec) == 0 and "nothing to recover" in warned


def test_check_command_exit_codes(recording: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["check", str(recording)]) == 0
    out = capsys.readouterr().out
    assert ": whole" in out and "checksums verified" in out and "damage: none" in out
    assert cli_main(["check", str(DEMO)]) == 0
    assert "checksums absent" in capsys.readouterr().out

    data = recording.read_bytes()
    b = Recording.open(recording).integrity.batches[2]  # type: ignore[union-attr]  # read from a file: integrity is set
    bad = recording.with_name("bad.arrow")
    bad.write_bytes(
        data[: b.start + 900] + bytes([data[b.start + 900] ^ 4]) + data[b.start + 901 :]
    )
    assert cli_main(["check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED" in out and f"seq {b.first}-{b.last} lost" in out
    assert f"bytes {b.start}-{b.end - 1}: checksum mismatch" in out

    header = recording.with_name("header.arrow")
    header.write_bytes(bytes(64) + data[64:])  # even its first marker is gone
    assert cli_main(["check", str(header)]) == 1
    assert "DAMAGED: its header" in capsys.readouterr().out

    assert cli_main(["check", str(recording.with_name("missing.arrow"))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    notes = recording.with_name("notes.md")
    notes.write_text("# notes\n")
    assert cli_main(["check", str(notes)]) == 2
    with pytest.raises(SystemExit) as exc:
        cli_main(["check"])
    assert exc.value.code == 2


if __name__ == "__main__":
    _child(sys.argv[1])


@pytest.mark.parametrize(
    "raw",
    [
        b'{"seq":[0,12]}',
        b'{"seq":[7,7]}',
        b'{"seq":[01,2]}',  # not JSON: a leading zero
        b'{"seq": [1, 2]}',  # JSON, not as we write it
        b'{"seq":[5,123456789012345678901234]}',  # past the fast pattern's digits
        b'{"seq":[-1,2]}',
        b'{"events":5}',
        b'{"seq":[1,2]} ',
        b"not json",
    ],
)
def test_batch_descriptions_parse_as_json_would(raw: bytes) -> None:
    from realtime_nb.storage._integrity import _parse_info

    try:
        want = json.loads(raw)
    except ValueError:
        want = None
    assert _parse_info(raw) == want
