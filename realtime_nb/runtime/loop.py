"""One asyncio event loop on a daemon thread of its own, driven from other threads.

The local server, the replay server and the session each run their sockets on a loop of their
own so that a notebook's (blocking) cells can drive them. :class:`LoopThread` is that lifecycle,
written once: start, run a coroutine and wait for its result, schedule a callback, stop (pending
tasks cancelled, the thread joined). Every thread it starts is named ``realtime_nb-<role>``, and
every wait that runs out raises :class:`LoopTimeoutError` naming what did not finish.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

__all__ = ["THREAD_PREFIX", "LoopThread", "LoopTimeoutError", "run_in_daemon_thread"]

T = TypeVar("T")

#: Every thread realtime_nb starts is named with this prefix and its role, so that a thread
#: dump (or a test looking for leaks) tells ours apart.
THREAD_PREFIX: Final = "realtime_nb-"
#: Default wait for :meth:`LoopThread.stop`: long enough for connections to close politely, short
#: enough that a stuck task shows up as an error instead of a hung kernel.
STOP_TIMEOUT_S: Final = 10.0


class LoopTimeoutError(TimeoutError):
    """Something run on a :class:`LoopThread` did not finish in time.

    A :class:`TimeoutError` (so an ``OSError`` too); the message names what timed out, the limit
    and the thread.
    """


class LoopThread:
    """An asyncio event loop running on a daemon thread named ``realtime_nb-<role>``.

    The thread starts at construction. From any other thread, :meth:`run` runs a coroutine on the
    loop and returns its result, :meth:`submit` schedules one without waiting, and
    :meth:`call_soon_threadsafe` schedules a plain callback. :meth:`stop` cancels whatever is
    still pending and joins the thread; it is idempotent.

    Usage::

        loop = LoopThread("local")
        port = loop.run(open_server(), timeout=10, what="starting the local server")
        ...
        loop.stop()
    """

    def __init__(self, role: str) -> None:
        self.role = role
        self.loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name=THREAD_PREFIX + role, daemon=True)
        self._stopping = False
        self._stop_lock = threading.Lock()
        self.thread.start()

    @property
    def name(self) -> str:
        """The thread's name, ``realtime_nb-<role>``."""
        return self.thread.name

    @property
    def running(self) -> bool:
        """The loop accepts work: not stopped (nor stopping) and its thread alive."""
        return not self._stopping and self.thread.is_alive() and not self.loop.is_closed()

    def in_loop_thread(self) -> bool:
        """Whether the caller is running on this loop's thread."""
        return threading.current_thread() is self.thread

    # --- the thread -------------------------------------------------------------------------

    def _main(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                # Closing shuts the default executor down without waiting for its threads: a
                # job stuck in C code must not keep stop() from returning.
                loop.close()

    # --- from other threads -----------------------------------------------------------------

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; a future of its result (cancelling it cancels the task).

        Raises:
            RuntimeError: the loop is stopped (``coro`` is closed, never run).
        """
        # Under the stop lock: work accepted here is scheduled before stop()'s request, so it is
        # either run or cancelled when the loop stops, never silently dropped.
        with self._stop_lock:
            if not self.running:
                coro.close()
                raise RuntimeError(f"{self.name} is stopped; nothing more can run on it")
            return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        timeout: float | None = None,
        *,
        what: str | None = None,
    ) -> T:
        """Run ``coro`` on the loop and wait for its result, at most ``timeout`` seconds.

        ``what`` names the work for the timeout's message (default: the coroutine's name). On
        timeout the task is cancelled before the error is raised. The coroutine's own exception
        propagates as is.

        Raises:
            LoopTimeoutError: not finished within ``timeout`` seconds.
            RuntimeError: called from the loop's own thread (it would wait for itself), or the
                loop is stopped.
            concurrent.futures.CancelledError: the task was cancelled (by :meth:`stop`, say).
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(
                f"LoopThread.run() called on {self.name} itself: await the coroutine instead"
            )
        label = what or _name_of(coro)
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            # A coroutine's own TimeoutError is the same class (3.11+), and the result may have
            # come just after the wait ran out: a done future tells both apart.
            if future.done():
                return future.result()
            future.cancel()
            raise self.timeout_error(label, timeout) from None

    @classmethod
    def start_with(
        cls, role: str, coro: Coroutine[Any, Any, T], timeout: float | None, *, what: str
    ) -> tuple[LoopThread, T]:
        """A new loop thread with ``coro`` already run on it (a server's start-up, say), and its
        result. If the coroutine fails or times out, the thread is stopped before the error
        propagates, so a failed start leaves no thread behind.

        Raises:
            LoopTimeoutError: ``coro`` did not finish within ``timeout`` seconds.
            Exception: whatever ``coro`` raised.
        """
        runner = cls(role)
        try:
            return runner, runner.run(coro, timeout, what=what)
        except BaseException:
            with contextlib.suppress(TimeoutError):
                runner.stop(timeout)
            raise

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` on the loop's thread, soon (not at all if the loop is
        stopping by then).

        Raises:
            RuntimeError: the loop is stopped.
        """
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # "Event loop is closed"
            raise RuntimeError(f"{self.name} is stopped; nothing more can run on it") from None

    def timeout_error(self, what: str, timeout: float | None) -> LoopTimeoutError:
        """The error for ``what`` not finishing within ``timeout`` s (for waits of the owner's)."""
        limit = "in time" if timeout is None else f"within {timeout:g} s"
        return LoopTimeoutError(f"{what} did not finish {limit} (on thread {self.name})")

    def stop(self, timeout: float | None = STOP_TIMEOUT_S) -> None:
        """Stop the loop, cancel its pending tasks (each gets to run its cleanup), close it and
        join the thread. Idempotent. From the loop's own thread it only asks the loop to stop
        (the caller's callback has to return first) and does not wait.

        Raises:
            LoopTimeoutError: the thread is still running after ``timeout`` seconds (a task that
                ignores cancellation, or a callback blocking the loop).
        """
        with self._stop_lock:
            self._stopping = True
            # A loop closed in between has nothing left to stop.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.loop.stop)
        if self.in_loop_thread():
            return
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise self.timeout_error("stopping the event loop", timeout)

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LoopThread {self.name} {state}>"


def run_in_daemon_thread(func: Callable[[], T], *, role: str) -> asyncio.Future[T]:
    """Call ``func()`` on a new daemon thread named ``realtime_nb-<role>``; returns a future, on
    the running loop, of its result or exception (a ``BaseException`` that is not an
    ``Exception``, such as ``SystemExit``, becomes a ``RuntimeError`` naming it).

    Unlike ``loop.run_in_executor``, whose worker threads the interpreter joins at exit, a call
    that never returns does not keep the process alive: a blocking function given up on (a tool
    that timed out) ends with the process. One thread per call, so such a call never takes a
    slot another one needs. The caller's context variables are copied, as ``asyncio.to_thread``
    does. Cancelling the future (``asyncio.wait_for`` on timeout) does not stop the thread
    (nothing can); its outcome is then dropped.

    Raises:
        RuntimeError: no running event loop in this thread.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile: nobody waits for the outcome
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]  # T when exc is None

    def main() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = ctx.run(func)
        except Exception as exc:
            error = exc
        except BaseException as exc:  # SystemExit & co. would stop the loop of the awaiting task
            error = RuntimeError(f"{type(exc).__name__}({exc}) raised on {THREAD_PREFIX}{role}")
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=main, name=THREAD_PREFIX + role, daemon=True).start()
    return future


def _name_of(coro: Coroutine[Any, Any, Any]) -> str:
    """``Server._open()`` for a coroutine of that method (a nested function's enclosing ones left
    out): what a timeout message names when the caller did not say."""
    name = str(getattr(coro, "__qualname__", None) or type(coro).__name__)
    return name.rsplit("<locals>.", 1)[-1] + "()"


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel every task still pending and let each finish its cleanup (as ``asyncio.run`` does),
    reporting any that failed with something other than the cancellation."""
    pending = asyncio.all_tasks(loop)
    if not pending:
        return
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    for task in pending:
        if task.cancelled():
            continue
        exc = task.exception()
        if exc is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception in a task cancelled when the loop stopped",
                    "exception": exc,
                    "task": task,
                }
            )
