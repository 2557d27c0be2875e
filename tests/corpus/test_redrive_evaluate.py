"""Batch re-drive of the small corpus on the local backend with changed instructions, checks that
pass and fail, the report; resuming, a failure not stopping the batch, 429 back-off."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest

from realtime_nb.corpus import Corpus, latency_below, no_errors, not_said, said, tool_called
from realtime_nb.corpus.batch import RateGate, exhausted_limit
from realtime_nb.storage.recording import Recording
from tests.conftest import SESSIONS
from tests.corpus.conftest import GREETING, NEW_INSTRUCTIONS

pytestmark = pytest.mark.slow


def test_every_recording_is_redriven_and_names_its_parent(base: Corpus, redriven: Corpus) -> None:
    report = redriven.report
    assert report is not None and not report.failed and not report.skipped
    assert sorted(report.redriven) == sorted(base.keys)
    parents = redriven.parents()
    assert sorted(parents.values()) == sorted(str(base.path(k).resolve()) for k in base.keys)  # type: ignore[type-var]  # none is None here
    for key in redriven.keys:
        meta = redriven.recording(key).meta
        assert meta["redrive"]["changed"]["instructions"] == NEW_INSTRUCTIONS
    s = redriven.sessions.to_pylist()
    assert {r["instructions"] for r in s} == {NEW_INSTRUCTIONS}
    # The resume key is in the child's name: the settings (and the model) that made it.
    assert all(r["recording"].endswith(f".{r['settings_hash'][:12]}.arrow") for r in s)
    # Every answer obeys the new instructions.
    answers = [t["assistant_text"] for t in redriven.turns.to_pylist() if t["assistant_text"]]
    assert answers and all(a.startswith(GREETING) for a in answers)


def test_evaluate_passing_and_failing_checks_with_the_report(
    base: Corpus, redriven: Corpus, tmp_path: Path
) -> None:
    ev = redriven.evaluate(
        {
            "greets": said(GREETING).each_turn(),
            "weather tool": tool_called("get_weather"),
            "no errors": no_errors(),
            "never greets": not_said(GREETING),
            "fast": latency_below(60_000),
        },
        against=base,
    )
    rows = ev.table.to_pylist()
    by_check: dict[str, set[str]] = {}
    for r in rows:
        by_check.setdefault(r["check"], set()).add(r["status"])
    assert by_check["greets"] == {"pass"}
    assert by_check["no errors"] == {"pass"}
    assert by_check["fast"] == {"pass"}
    assert by_check["never greets"] == {"fail"}
    tools = {
        r["recording"].split(".")[0]: r["status"] for r in rows if r["check"] == "weather tool"
    }
    assert tools["openai_tool"] == "pass" and tools["xai_tool"] == "pass"
    assert tools["scripted"] == "fail"
    assert not ev.passed
    # What differs from the parent: the answer changed (it greets now), the parent is named.
    failing = [r for r in rows if r["check"] == "never greets"]
    assert all(r["parent"] in base.keys for r in failing)
    assert all("answer" in (r["differs"] or "") for r in failing)
    text = ev.text()
    assert "FAIL openai_tool." in text and "answer (new):    Bonjour" in text
    page = ev.html()
    assert "tex2jax_ignore mathjax_ignore" in page and "text-align: left" in page
    assert "var(--jp-ui-font-color1" in page
    assert "<th>never greets</th>" in page and "✗ fail" in page and "✓ pass" in page
    assert "Failing turns" in page and "answer (parent)" in page
    assert "latency (ms)" in page and "before: n " in page and "after: n " in page
    saved = ev.save_html(tmp_path / "report.html")
    assert saved.read_text(encoding="utf-8").startswith("<!doctype html>")
    ok = redriven.evaluate([said(GREETING), no_errors()], against=base)
    assert ok.passed and ok.counts()["fail"] == 0 and "None: every check passed." in ok.html()


def test_a_second_run_with_the_same_settings_skips_everything(
    base: Corpus, redriven: Corpus
) -> None:
    assert redriven.report is not None
    again = base.redrive(
        instructions=NEW_INSTRUCTIONS,
        record=redriven.report.directory,
        concurrency=2,
        progress=False,
    )
    assert again.report is not None
    assert again.report.redriven == {} and sorted(again.report.skipped) == sorted(base.keys)
    assert sorted(again.keys) == sorted(redriven.keys)


def test_one_failure_does_not_stop_the_batch(base_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "recs"
    folder.mkdir()
    shutil.copy(base_dir / "openai_tool.arrow", folder / "good.arrow")
    # A real session whose only user turn is audio the cassette did not keep: nothing to send.
    Recording.import_file(
        SESSIONS / "test_openai_ws" / "test_audio_in_server_vad_turn.yaml",
        save_to=folder / "nothing_to_say.arrow",
    )
    out = Corpus(folder, cache=False).redrive(
        instructions="Be brief.", record=tmp_path / "out", progress=False
    )
    assert out.report is not None
    assert list(out.report.redriven) == ["good.arrow"]
    assert "no user turns to re-drive" in out.report.failed["nothing_to_say.arrow"]
    assert out.keys == [out.report.redriven["good.arrow"].name]


@pytest.fixture
def refusing_server() -> Iterator[tuple[str, list[int]]]:
    """A WebSocket endpoint on loopback that refuses every handshake with HTTP 429."""
    from websockets.asyncio.server import serve

    hits: list[int] = []
    ready = threading.Event()
    stop: list[asyncio.AbstractEventLoop | asyncio.Event] = []
    port: list[int] = []

    def process_request(connection, request):  # type: ignore[no-untyped-def]  # websockets hook
        hits.append(1)
        return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "rate limited\n")

    async def main() -> None:
        done = asyncio.Event()
        stop.extend([asyncio.get_running_loop(), done])
        async with serve(lambda ws: None, "127.0.0.1", 0, process_request=process_request) as srv:
            port.append(srv.sockets[0].getsockname()[1])
            ready.set()
            await done.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    yield f"ws://127.0.0.1:{port[0]}/v1/realtime", hits
    loop, done = stop
    loop.call_soon_threadsafe(done.set)  # type: ignore[union-attr, attr-defined]  # the pair above
    thread.join(10)


def test_429_is_retried_with_a_growing_back_off(
    base_dir: Path, tmp_path: Path, refusing_server: tuple[str, list[int]]
) -> None:
    url, hits = refusing_server
    waits: list[float] = []
    one = Corpus([base_dir / "openai_tool.arrow"], cache=False)
    out = one.redrive(
        instructions="x",
        record=tmp_path / "out",
        url=url,
        local=False,
        progress=False,
        max_attempts=3,
        backoff_s=0.05,
        sleep=waits.append,
    )
    assert out.report is not None
    assert "HTTP 429" in out.report.failed["openai_tool.arrow"]
    assert out.report.attempts["openai_tool.arrow"] == 3
    assert len(hits) >= 3
    # Two back-offs (after attempts 1 and 2), the second about twice the first.
    assert len(waits) == 2 and waits[1] > waits[0] * 1.5
    assert not list((tmp_path / "out").glob("*.arrow"))


def test_an_exhausted_rate_limit_holds_the_batch(base_dir: Path) -> None:
    rec = Recording.from_events(
        [
            {"type": "session.created", "session": {"model": "gpt-realtime"}},
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {"name": "requests", "limit": 100, "remaining": 10, "reset_seconds": 1.0},
                    {"name": "tokens", "limit": 1000, "remaining": 0, "reset_seconds": 7.5},
                ],
            },
        ]
    )
    assert exhausted_limit(rec) == 7.5
    assert exhausted_limit(Recording.open(base_dir / "openai_tool.arrow")) is None
    slept: list[float] = []
    gate = RateGate(slept.append)
    gate.hold(7.5)
    gate.wait()
    assert len(slept) == 1 and 7.0 < slept[0] <= 7.5
