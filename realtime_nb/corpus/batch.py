"""Batch re-drive: every recording of a corpus against new settings, ``concurrency`` at a time.

Each parent's child goes to ``RECORD/<parent key without .arrow>.<settings hash>.arrow``, so the
name says which settings made it and a second run with the same settings finds it and skips it
(resumable). A failed re-drive leaves its partial recording as ``....arrow.failed`` (out of the
corpus's ``*.arrow``, kept to look at) and the batch goes on; the report lists the failures.

Rate limits: a handshake refused with HTTP 429 is retried after an exponential back-off, and the
whole batch holds back meanwhile (the limit is the account's, not the connection's); a child
whose last ``rate_limits.updated`` shows a budget at zero holds the batch back for that limit's
``reset_seconds``.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..core._sentinel import UNSET
from ..debugging.redrive import _jsonable, redrive, settings_changes
from ..storage.recording import Recording, RecordingFormatError
from ._summary import read_light, settings_hash

if TYPE_CHECKING:
    from .corpus import Corpus

__all__ = ["RateGate", "RedriveReport", "exhausted_limit", "redrive_corpus"]

JSON = dict[str, Any]

#: Attempts per recording when the handshake is refused with HTTP 429 (then it is a failure).
MAX_ATTEMPTS: Final = 5
#: First back-off after a 429, doubled on each further one: the API's limits reset per second or
#: per minute, so 1, 2, 4, 8 s spans a per-minute window's worst case with the jitter.
BACKOFF_S: Final = 1.0
#: Longest single back-off, and the cap on a ``reset_seconds`` the batch will honour at once.
MAX_BACKOFF_S: Final = 60.0
#: Re-drives running at once by default: a handful keeps a rate-limited account under its
#: concurrent-session limit and the local backend's synthesiser busy without thrashing.
DEFAULT_CONCURRENCY: Final = 4


@dataclass
class RedriveReport:
    """What a batch re-drive did: per parent key, the child's path, and the failures."""

    settings_hash: str
    directory: Path
    redriven: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, Path] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    #: Seconds the batch held back for rate limits (429 back-offs and exhausted budgets).
    waited_s: float = 0.0
    seconds: float = 0.0

    @property
    def children(self) -> dict[str, Path]:
        """Parent key -> child recording, for every parent that has one (new or skipped)."""
        return {**self.skipped, **self.redriven}

    def __repr__(self) -> str:
        return (
            f"<RedriveReport {self.settings_hash}: {len(self.redriven)} re-driven, "
            f"{len(self.skipped)} already done, {len(self.failed)} failed; {self.seconds:.1f} s>"
        )


class RateGate:
    """Holds every worker back until a moment, shared by the batch (thread-safe)."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._until = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep
        self.waited_s = 0.0

    def hold(self, seconds: float) -> None:
        """Nobody starts for ``seconds`` from now (the longest hold wins)."""
        with self._lock:
            self._until = max(self._until, time.monotonic() + min(seconds, MAX_BACKOFF_S))

    def wait(self) -> None:
        with self._lock:
            delay = self._until - time.monotonic()
            if delay > 0:
                self.waited_s += delay
        if delay > 0:
            self._sleep(delay)


def exhausted_limit(rec: Recording) -> float | None:
    """``reset_seconds`` of a rate limit the recording's last ``rate_limits.updated`` shows
    exhausted (``remaining`` 0), else ``None``."""
    import pyarrow.compute as pc

    table = rec.table
    rows = table.filter(pc.equal(table.column("type"), "rate_limits.updated"))
    if not rows.num_rows:
        return None
    try:
        last = json.loads(rows.column("payload")[-1].as_py())
    except ValueError:
        return None
    waits = [
        float(limit.get("reset_seconds") or 0.0)
        for limit in last.get("rate_limits") or []
        if isinstance(limit, dict) and limit.get("remaining") == 0
    ]
    return max(waits) if waits else None


def _is_429(exc: BaseException) -> bool:
    return "HTTP 429" in str(exc)


def _child_path(directory: Path, key: str, digest: str) -> Path:
    stem = key[: -len(".arrow")] if key.endswith(".arrow") else key
    return directory / f"{stem}.{digest[:12]}.arrow"


def _already_done(path: Path, digest: str) -> bool:
    """A whole child recording made with these settings."""
    if not path.exists():
        return False
    try:
        meta, _table, whole = read_light(path)
    except (RecordingFormatError, OSError):
        return False
    red = meta.get("redrive") if isinstance(meta.get("redrive"), dict) else None
    return bool(whole and red and settings_hash(red.get("changed"), meta.get("model")) == digest)


def redrive_corpus(
    corpus: Corpus,
    *,
    instructions: Any = UNSET,
    tools: Any = UNSET,
    voice: Any = UNSET,
    record: str | Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    local: bool | None = None,
    progress: bool = True,
    max_attempts: int = MAX_ATTEMPTS,
    backoff_s: float = BACKOFF_S,
    sleep: Callable[[float], None] = time.sleep,
    **session_fields: Any,
) -> Corpus:
    """Re-drive every recording of ``corpus`` (see :func:`realtime_nb.debugging.redrive.redrive`
    for what one re-drive does and what the settings mean); returns the corpus of the children,
    whose ``report`` attribute is the :class:`RedriveReport`.

    Args:
        record: the folder of the children (default: ``<corpus root>/redrive``).
        concurrency: re-drives at once.
        url, api_key, model: where to connect. ``local`` (default: when no ``url``, no
            ``api_key`` and no ``OPENAI_API_KEY``) starts one offline local server for the batch.
        progress: a tqdm bar (the notebook bar in Jupyter) over the recordings.
        max_attempts, backoff_s, sleep: the 429 back-off (``sleep`` is for tests).

    Raises:
        ValueError: ``concurrency`` or ``max_attempts`` below 1.
    """
    from .corpus import Corpus

    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
    if not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be a positive integer, got {max_attempts!r}")
    t0 = time.perf_counter()
    changed = settings_changes(session_fields, instructions=instructions, tools=tools, voice=voice)
    out = Path(record) if record is not None else corpus.root / "redrive"
    out.mkdir(parents=True, exist_ok=True)
    if local is None:
        local = url is None and api_key is None and not os.environ.get("OPENAI_API_KEY")
    server: Any = None
    if local:
        from ..local import LocalServer

        server = LocalServer("tools", fast=True).start()
        url = server.url
    # The model a re-drive records is the parent's requested one (its metadata), as redrive()
    # picks it; the resume key must be computed from the same.
    models = {
        key: json.loads(meta or "{}").get("model")
        for key, meta in zip(
            corpus.sessions.column("recording").to_pylist(),
            corpus.sessions.column("meta").to_pylist(),
            strict=True,
        )
    }
    # redrive() stores the settings through _jsonable in the child's metadata; hashing them the
    # same way is what lets a later run recognise the child.
    changed_json = _jsonable(changed)
    digests = {
        key: settings_hash(changed_json, model or models.get(key) or "gpt-realtime")
        for key in corpus.keys
        if key not in corpus.unreadable
    }
    # One hash names the batch in the report: that of the first recording's model.
    report = RedriveReport(next(iter(digests.values()), settings_hash(changed_json)), out)
    gate = RateGate(sleep)
    todo: list[str] = []
    for key, digest in digests.items():
        child = _child_path(out, key, digest)
        if _already_done(child, digest):
            report.skipped[key] = child
        else:
            todo.append(key)

    def one(key: str) -> Path:
        child = _child_path(out, key, digests[key])
        child.parent.mkdir(parents=True, exist_ok=True)
        parent = corpus.path(key).resolve()
        for attempt in range(1, max_attempts + 1):
            report.attempts[key] = attempt
            gate.wait()
            child.unlink(missing_ok=True)  # an incomplete child of a killed run
            try:
                rec = redrive(
                    parent,
                    record=child,
                    url=url,
                    api_key=api_key,
                    model=model,
                    progress=False,
                    name=f"corpus:{digests[key]}",
                    **changed,
                )
            except Exception as exc:
                if _is_429(exc) and attempt < max_attempts:
                    delay = min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                    gate.hold(delay * (1.0 + 0.25 * random.random()))
                    continue
                if child.exists():
                    failed = child.with_name(child.name + ".failed")
                    os.replace(child, failed)
                raise
            reset = exhausted_limit(rec)
            if reset:
                gate.hold(reset)
            return child
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    bar: Any = None
    if progress and todo:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc="re-driving recordings", unit="recording")
        except ImportError:  # tqdm is optional: no bar
            bar = None
    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="rtnb-redrive") as pool:
            futures = {pool.submit(one, key): key for key in todo}
            for future in as_completed(futures):
                key = futures[future]
                try:
                    report.redriven[key] = future.result()
                except Exception as exc:  # one failure must not stop the batch: report it
                    report.failed[key] = f"{type(exc).__name__}: {exc}"
                if bar is not None:
                    bar.update(1)
                    if report.failed:
                        bar.set_postfix(failed=len(report.failed))
    finally:
        if bar is not None:
            bar.close()
        if server is not None:
            server.stop()
    report.waited_s = gate.waited_s
    report.seconds = time.perf_counter() - t0
    children = sorted(report.children.values())
    result = Corpus(children, cache=corpus.cache, root=out)
    result.report = report
    return result
