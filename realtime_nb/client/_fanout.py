"""Who hears about each recorded event: the waiters of ``Session.wait_for`` and the subscribers of
``Session.on``, with the recent history a wait looks back into. Thread-safe; events are delivered
on the session's I/O thread, waits and subscriptions come from any thread."""

from __future__ import annotations

import concurrent.futures
import fnmatch
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..core.events import Event
from ..core.protocol import AUDIO_FIELDS, canonical_type

__all__ = ["Callback", "Fanout", "Waiter", "matches"]

Callback = Callable[[Event], Any]
logger = logging.getLogger("realtime_nb.client.session")

_PATTERNS: Final = "__patterns__"  # the key of glob subscriptions (each filters for itself)


@dataclass(eq=False)
class Waiter:
    """One wait: the first event matching ``pattern`` (and ``where``) completes ``future``."""

    pattern: str
    where: Callable[[Event], bool] | None
    future: concurrent.futures.Future[Event]


def matches(pattern: str, etype: str) -> bool:
    """``etype`` is ``pattern``: the same type, its beta alias, ``*``, or a glob match."""
    if pattern == "*" or pattern == etype:
        return True
    if "*" in pattern or "?" in pattern:
        return fnmatch.fnmatchcase(etype, pattern)
    return canonical_type(etype) == pattern


class Fanout:
    """Delivers events to waiters and subscribers, keeping the last ``history`` non-audio events.

    ``call(callback, event)`` runs a subscriber (the session schedules coroutines it returns).
    """

    def __init__(self, history: int, call: Callable[[Callback, Event], None]) -> None:
        self._lock = threading.Lock()
        self._history: deque[Event] = deque(maxlen=history)
        self._waiters: list[Waiter] = []
        self._subs: dict[str, list[Callback]] = {}  # replaced, never changed in place
        self._call = call

    def deliver(self, ev: Event) -> None:
        """Hand ``ev`` to every matching waiter and subscriber (I/O thread)."""
        t = ev.type
        with self._lock:
            if t not in AUDIO_FIELDS:
                self._history.append(ev)
            waiters = [w for w in self._waiters if matches(w.pattern, t)] if self._waiters else ()
        for w in waiters:
            if w.future.done():
                continue
            try:
                ok = w.where is None or w.where(ev)
            except Exception as exc:
                w.future.set_exception(exc)
                ok = False
            if ok and not w.future.done():
                w.future.set_result(ev)
        if waiters:
            with self._lock:
                self._waiters = [w for w in self._waiters if not w.future.done()]
        subs = self._subs
        if subs:
            for key in (t, "*", _PATTERNS):
                for cb in subs.get(key, ()):
                    self._call(cb, ev)

    def waiter(
        self,
        pattern: str,
        where: Callable[[Event], bool] | None,
        after: int,
        ended: BaseException | None,
    ) -> Waiter:
        """A waiter for an event after seq ``after``, done at once if one is in the history (or,
        with ``ended``, failed at once for anything but a local event)."""
        w = Waiter(pattern, where, concurrent.futures.Future())
        with self._lock:
            # The history is in seq order: walk back only as far as ``after``, not through all of
            # it (a wait per turn over a long session would otherwise cost O(history) each).
            since: list[Event] = []
            for ev in reversed(self._history):
                if ev.seq <= after:
                    break
                since.append(ev)
            for ev in reversed(since):
                if matches(pattern, ev.type) and (where is None or where(ev)):
                    w.future.set_result(ev)
                    return w
            if ended is not None and not pattern.startswith("local."):
                w.future.set_exception(ended)
                return w
            self._waiters.append(w)
        return w

    def forget(self, w: Waiter) -> None:
        """Stop waiting with ``w`` (done or not)."""
        w.future.cancel()
        with self._lock:
            if w in self._waiters:
                self._waiters.remove(w)

    def fail_all(self, exc: BaseException, spare: tuple[str, ...] = ()) -> None:
        """Fail every pending wait with ``exc``, but those whose pattern starts with one of
        ``spare`` (events still to come: a reconnection's ``local.*``, ``session.*``)."""
        with self._lock:
            kept = [w for w in self._waiters if spare and w.pattern.startswith(spare)]
            waiters = [w for w in self._waiters if not (spare and w.pattern.startswith(spare))]
            self._waiters = kept
        for w in waiters:
            if not w.future.done():
                w.future.set_exception(exc)

    def last_types(self, n: int) -> list[str]:
        """The types of the last ``n`` events kept (for error messages)."""
        with self._lock:
            return [e.type for e in list(self._history)[-n:]]

    def subscribe(self, pattern: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback`` for each event matching ``pattern``; returns the unsubscriber."""
        key, entry = pattern, callback
        if ("*" in pattern and pattern != "*") or "?" in pattern:

            def matching(ev: Event) -> Any:
                return callback(ev) if fnmatch.fnmatchcase(ev.type, pattern) else None

            key, entry = _PATTERNS, matching
        with self._lock:
            subs = {k: list(v) for k, v in self._subs.items()}
            subs.setdefault(key, []).append(entry)
            self._subs = subs

        def unsubscribe() -> None:
            with self._lock:
                subs = {k: list(v) for k, v in self._subs.items()}
                if entry in subs.get(key, []):
                    subs[key].remove(entry)
                    if not subs[key]:
                        del subs[key]
                self._subs = subs

        return unsubscribe
