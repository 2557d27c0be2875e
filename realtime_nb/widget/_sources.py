"""How the front end's files reach the browser, and how they hot-reload.

anywidget ships one ES module per widget (``_esm``) and, with ``ANYWIDGET_HMR=1``, watches that file.
Both widgets' ``_esm`` is ``loader.js``. Every other module in this folder travels as the
``_modules`` trait (``{file name: source}``) and ``_main`` names the one that renders; the loader
imports them from Blob URLs, so the browser needs no HTTP route for package files and there is no
build step. ``worklet.js`` is the exception: it is not an ES module but the AudioWorklet's script,
sent as ``_worklet_js`` with ``audio.js`` inlined in front of it (:func:`worklet_source`).

A module imported from a Python-supplied source is not a file anywidget watches, so with
``ANYWIDGET_HMR=1`` one thread (:class:`SourceWatcher`) looks at this folder's ``.js`` and ``.css``
files and, when one changes, gives every live widget its sources again: the loader then renders
every view again from them.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

__all__ = [
    "ENTRY",
    "OWN_ESM",
    "WIDGET_DIR",
    "WORKLET",
    "SourceWatcher",
    "module_sources",
    "ship",
    "text",
    "worklet_source",
]

logger = logging.getLogger(__name__)

WIDGET_DIR: Final = Path(__file__).parent
#: The anywidget entry point (``_esm``) of both widgets; it loads the rest.
ENTRY: Final = "loader.js"
#: The AudioWorklet's script: runs in the AudioWorkletGlobalScope, shipped as ``_worklet_js``.
WORKLET: Final = "worklet.js"
#: Modules that are a whole widget's ``_esm`` of their own (``clip.js``: RecordingView's players),
#: not part of the two views the loader renders: never shipped in ``_modules``.
OWN_ESM: Final = ("clip.js",)
#: How often the hot-reload thread looks at the files: an edit shows within half a second, and a
#: stat of twenty files costs microseconds.
HMR_POLL_S: Final = 0.5

#: A trait's current value, recomputed from the files when they change.
Producer = Callable[[], object]


def module_sources(folder: Path = WIDGET_DIR) -> dict[str, str]:
    """Every ES module of the front end but the entry point: ``{file name: source}``."""
    return {
        p.name: p.read_text("utf-8")
        for p in sorted(folder.glob("*.js"))
        if p.name not in (ENTRY, WORKLET, *OWN_ESM)
    }


def worklet_source(folder: Path = WIDGET_DIR) -> str:
    """The AudioWorklet module: ``audio.js`` without its ``export`` keywords, then ``worklet.js``.

    A worklet loaded from a Blob URL cannot import a sibling module, so the pure helpers are
    inlined in front of the processors that use them.
    """
    audio = re.sub(r"^export\s+", "", (folder / "audio.js").read_text("utf-8"), flags=re.M)
    return audio + "\n" + (folder / WORKLET).read_text("utf-8")


def text(*names: str, folder: Path = WIDGET_DIR) -> Producer:
    """A producer of these files' text, joined by newlines (``_esm``, ``_css``)."""
    return lambda: "\n".join((folder / n).read_text("utf-8") for n in names)


def hmr_enabled() -> bool:
    """Whether anywidget's hot reload is on (``ANYWIDGET_HMR=1``, as anywidget reads it)."""
    return os.environ.get("ANYWIDGET_HMR") == "1"


class SourceWatcher:
    """Polls a folder's ``.js`` and ``.css`` files; on a change, re-sets the traits it was given.

    Widgets are held weakly: a widget that is garbage-collected drops out; a closed one (no comm)
    is skipped.
    """

    def __init__(self, folder: Path = WIDGET_DIR, interval_s: float = HMR_POLL_S) -> None:
        self.folder = folder
        self.interval_s = interval_s
        self._widgets: weakref.WeakKeyDictionary[Any, dict[str, Producer]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _stat(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for p in sorted([*self.folder.glob("*.js"), *self.folder.glob("*.css")]):
            st = p.stat()
            out[p.name] = (st.st_mtime_ns, st.st_size)
        return out

    def add(self, widget: Any, producers: Mapping[str, Producer]) -> None:
        """Re-set ``widget``'s traits from ``producers`` whenever a file changes."""
        with self._lock:
            self._widgets[widget] = dict(producers)

    def poll(self) -> bool:
        """Look once; if any file changed, re-set every widget's traits. Returns whether one did."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        with self._lock:
            widgets = list(self._widgets.items())
        for widget, producers in widgets:
            if getattr(widget, "comm", True) is None:  # closed
                continue
            for name, produce in producers.items():
                try:
                    # Equal values are not sent again (traitlets compares old and new).
                    setattr(widget, name, produce())
                except Exception:  # a file mid-save, say: the next change sends it
                    logger.exception("realtime_nb: hot reload of %s failed", name)
        return True

    def start(self) -> None:
        """Poll on a daemon thread (once; later calls do nothing)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="realtime-nb-hmr", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (tests)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except OSError:  # a file renamed away mid-save: look again next time
                continue


_watcher: SourceWatcher | None = None
_watcher_lock = threading.Lock()


def ship(widget: Any, **producers: Producer) -> None:
    """Set each named trait of ``widget`` to its producer's value; with ``ANYWIDGET_HMR=1``, again
    whenever a file of the front end changes.

    ``ship(self, _modules=module_sources, _esm=text(ENTRY))``. anywidget already hot-reloads
    ``_esm`` and ``_css`` when they are file paths and ``watchfiles`` is installed; passing them
    here as well makes that work without ``watchfiles`` and for a ``_css`` joined from two files.
    """
    global _watcher
    for name, produce in producers.items():
        setattr(widget, name, produce())
    if not hmr_enabled():
        return
    with _watcher_lock:
        if _watcher is None:
            _watcher = SourceWatcher()
            _watcher.start()
        _watcher.add(widget, producers)
