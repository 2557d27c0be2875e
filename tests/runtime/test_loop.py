"""LoopThread: one event loop on a thread of its own, driven from the test's thread."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
import time
from typing import Any

import pytest

from realtime_nb.runtime import LoopThread, LoopTimeoutError, run_in_daemon_thread


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


@pytest.fixture
def lt() -> LoopThread:
    loop = LoopThread("test")
    yield loop
    loop.stop()


def test_the_thread_is_a_named_daemon(lt: LoopThread) -> None:
    assert lt.name == "realtime_nb-test"
    assert lt.thread.daemon and lt.running
    assert _threads("realtime_nb-test") == [lt.thread]
    assert "running" in repr(lt)


def test_run_returns_the_result_computed_on_the_loop_thread(lt: LoopThread) -> None:
    async def where() -> tuple[str, int]:
        await asyncio.sleep(0)
        return threading.current_thread().name, 42

    assert lt.run(where(), timeout=5) == ("realtime_nb-test", 42)
    assert lt.submit(where()).result(5) == ("realtime_nb-test", 42)


def test_exceptions_propagate_as_they_are(lt: LoopThread) -> None:
    async def fail() -> None:
        raise KeyError("nope")

    async def own_timeout() -> None:
        raise TimeoutError("the coroutine's own")

    with pytest.raises(KeyError, match="nope"):
        lt.run(fail(), timeout=5)
    with pytest.raises(TimeoutError, match="the coroutine's own") as info:
        lt.run(own_timeout(), timeout=5)
    assert not isinstance(info.value, LoopTimeoutError)
    assert lt.running  # a failed coroutine does not stop the loop


def test_timeout_names_what_timed_out_and_cancels_it(lt: LoopThread) -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    t0 = time.monotonic()
    with pytest.raises(LoopTimeoutError) as info:
        lt.run(forever(), timeout=0.1, what="waiting for the moon")
    assert time.monotonic() - t0 < 2
    assert str(info.value) == (
        "waiting for the moon did not finish within 0.1 s (on thread realtime_nb-test)"
    )
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, OSError)
    assert cancelled.wait(2)
    with pytest.raises(LoopTimeoutError, match=r"^forever\(\) did not finish within 0.05 s"):
        lt.run(forever(), timeout=0.05)  # the coroutine's name by default


def test_call_soon_threadsafe_runs_on_the_loop(lt: LoopThread) -> None:
    seen: list[tuple[str, int]] = []
    done = threading.Event()

    def note(x: int) -> None:
        seen.append((threading.current_thread().name, x))
        done.set()

    lt.call_soon_threadsafe(note, 7)
    assert done.wait(5)
    assert seen == [("realtime_nb-test", 7)]


def test_run_from_the_loop_thread_is_refused(lt: LoopThread) -> None:
    async def nested() -> None:
        async def inner() -> None:
            return None

        lt.run(inner(), timeout=1)

    with pytest.raises(RuntimeError, match="await the coroutine instead"):
        lt.run(nested(), timeout=5)


def test_stop_cancels_pending_tasks_and_leaves_no_thread() -> None:
    lt = LoopThread("test-stop")
    started, cleaned = threading.Event(), threading.Event()

    async def pending() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    fut = lt.submit(pending())
    assert started.wait(5)
    lt.stop(timeout=5)
    assert cleaned.is_set(), "the pending task ran its cleanup"
    assert fut.cancelled()
    assert not lt.thread.is_alive() and not lt.running
    assert _threads("realtime_nb-test-stop") == []
    assert lt.loop.is_closed()
    lt.stop()  # idempotent
    with pytest.raises(RuntimeError, match="realtime_nb-test-stop is stopped"):
        lt.run(asyncio.sleep(0), timeout=1)
    with pytest.raises(RuntimeError, match="is stopped"):
        lt.call_soon_threadsafe(print)


def test_stop_from_the_loop_thread_does_not_wait_for_itself() -> None:
    lt = LoopThread("test-self-stop")
    lt.call_soon_threadsafe(lt.stop)
    lt.thread.join(5)
    assert not lt.thread.is_alive()


def test_stop_times_out_on_a_blocked_loop() -> None:
    release = threading.Event()
    lt = LoopThread("test-stuck")
    lt.call_soon_threadsafe(release.wait, 10)  # blocks the loop (what callbacks must not do)
    try:
        with pytest.raises(LoopTimeoutError, match="stopping the event loop did not finish"):
            lt.stop(timeout=0.1)
    finally:
        release.set()
        lt.thread.join(5)
    assert not lt.thread.is_alive()


def test_context_manager_stops() -> None:
    with LoopThread("test-with") as lt:
        assert lt.run(asyncio.sleep(0, result="ok"), timeout=5) == "ok"
    assert _threads("realtime_nb-test-with") == []


# --- run_in_daemon_thread --------------------------------------------------------------------

_where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="unset")


def test_run_in_daemon_thread_result_error_and_context(lt: LoopThread) -> None:
    def work() -> tuple[str, bool, str]:
        me = threading.current_thread()
        return me.name, me.daemon, _where.get()

    async def go() -> tuple[Any, ...]:
        _where.set("the caller's")
        ok = await run_in_daemon_thread(work, role="test-job")
        with pytest.raises(ValueError, match="bad"):
            await run_in_daemon_thread(lambda: int("bad"), role="test-job")
        with pytest.raises(RuntimeError, match=r"SystemExit\(3\) raised on realtime_nb-test-exit"):
            await run_in_daemon_thread(lambda: sys.exit(3), role="test-exit")
        return ok

    assert lt.run(go(), timeout=5) == ("realtime_nb-test-job", True, "the caller's")


def test_a_call_given_up_on_keeps_its_thread_but_not_the_caller(lt: LoopThread) -> None:
    release = threading.Event()

    async def go() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run_in_daemon_thread(release.wait, role="test-stuck-job"), 0.05)

    lt.run(go(), timeout=5)
    (stuck,) = _threads("realtime_nb-test-stuck-job")
    assert stuck.daemon  # the interpreter does not wait for it at exit
    release.set()  # its late outcome goes to a cancelled future: dropped, no error
    stuck.join(5)
    assert lt.run(asyncio.sleep(0.01, result="fine"), timeout=5) == "fine"


def test_start_with_returns_the_running_thread_and_the_result() -> None:
    async def bind() -> str:
        return threading.current_thread().name

    runner, name = LoopThread.start_with("start-ok", bind(), 5, what="binding")
    try:
        assert runner.running and name == runner.name
    finally:
        runner.stop()


def test_a_failed_start_leaves_no_thread() -> None:
    async def refuse() -> None:
        raise OSError("address already in use")

    before = {t.name for t in threading.enumerate()}
    with pytest.raises(OSError, match="already in use"):
        LoopThread.start_with("start-fail", refuse(), 5, what="binding")
    after = {t.name for t in threading.enumerate()}
    assert not {n for n in after - before if "start-fail" in n}
