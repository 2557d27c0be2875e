"""RecordingView: a recording's (or an item's) HTML in a notebook, with players that fetch their
audio when pressed.

``Recording._repr_mimebundle_`` returns one in a running kernel, beside the same HTML as
``text/html`` for pages without a kernel. The HTML (from
:mod:`realtime_nb.debugging.inspection`) carries no audio, only placeholders
(``button.rtnb-clip[data-item][data-duration]``) with each clip's duration from the reducer;
``clip.js`` enables them, and a press asks the kernel for that item's audio.

Message catalogue
=================

Browser -> kernel
    ``get_clip`` ``{req, item_id}``: the audio of one item.
Kernel -> browser
    ``clip`` ``{req, item_id, rate, samples}`` + ``[pcm16]``: PCM16 LE mono at ``rate`` Hz, as it
    was heard (cut where it was truncated).
    ``error`` ``{req, text}``: the request could not be answered, in plain words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anywidget
import numpy as np
import traitlets

if TYPE_CHECKING:
    from ..core.reducer import Item
    from ..storage.recording import Recording

__all__ = [
    "CLIP_JS",
    "MAX_CLIP_S",
    "WIDGET_VIEW",
    "RecordingView",
    "in_kernel",
    "recording_bundle",
    "view_data",
]

#: The front end: one plain ES module, no imports.
CLIP_JS: Final = Path(__file__).parent / "clip.js"
#: Longest clip sent in one message: a message of this size (48 KB/s of PCM16 at 24 kHz, ~29 MB)
#: still goes through the comm; a longer item (a 20-minute monologue) is cut with a note.
MAX_CLIP_S: Final = 600.0
#: Full scale of PCM16.
_PCM16_MAX: Final = 32767


def in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (a widget can be shown), not a terminal IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the notebook extras
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class RecordingView(anywidget.AnyWidget):
    """HTML with audio players that load on demand (see the module docstring).

    ``RecordingView(recording, html)``: ``html`` is the view's markup with ``button.rtnb-clip``
    placeholders for items of ``recording``.
    """

    _esm = CLIP_JS

    html = traitlets.Unicode("").tag(sync=True)

    def __init__(self, recording: Recording, html: str, **kwargs: Any) -> None:
        super().__init__(html=html, **kwargs)
        self._recording = recording
        #: what the kernel sent: clips and their audio bytes (tests)
        self.sent_stats: dict[str, int] = {"clips": 0, "audio_bytes": 0, "errors": 0}
        self.on_msg(self._on_msg)

    def _on_msg(self, _widget: Any, content: Any, buffers: Sequence[Any] | None) -> None:
        if not isinstance(content, Mapping):
            return
        req = content.get("req")
        if content.get("type") != "get_clip":
            self._error(req, f"unknown message type {content.get('type')!r}; accepted: get_clip")
            return
        item_id = content.get("item_id")
        if not isinstance(item_id, str):
            self._error(req, "get_clip needs an item_id (a string)")
            return
        try:
            msg, pcm = self.clip(item_id)
        except KeyError as exc:
            self._error(req, str(exc.args[0]) if exc.args else f"no item {item_id!r}")
            return
        self.sent_stats["clips"] += 1
        self.sent_stats["audio_bytes"] += len(pcm)
        self.send({"type": "clip", "req": req, **msg}, buffers=[pcm])

    def clip(self, item_id: str) -> tuple[dict[str, Any], bytes]:
        """One item's audio as heard: ``({item_id, rate, samples}, PCM16 LE bytes)``.

        Raises:
            KeyError: no such item (the message lists known ids).
        """
        rec = self._recording
        item = rec.state.item(item_id)
        part = item.audio_part()
        st = rec.state
        fmt = (
            st.input_format if part is not None and part.type == "input_audio" else st.output_format
        )
        samples = rec.item_audio(item_id, heard=True)[: int(MAX_CLIP_S * fmt.rate)]
        pcm = (np.clip(samples, -1.0, 1.0) * _PCM16_MAX).astype("<i2").tobytes()
        return {"item_id": item_id, "rate": fmt.rate, "samples": len(samples)}, pcm

    def _error(self, req: Any, text: str) -> None:
        self.sent_stats["errors"] += 1
        self.send({"type": "error", "req": req, "text": text})


#: The MIME type of a widget view in a notebook output.
WIDGET_VIEW: Final = "application/vnd.jupyter.widget-view+json"


def recording_bundle(recording: Recording, item: Item | None = None) -> dict[str, Any]:
    """The notebook output of a recording (or one of its items): ``text/html`` always (what a
    page without a kernel shows), and in a running kernel a :class:`RecordingView` of the same
    HTML whose players work."""
    from ..debugging.inspection import item_html, recording_html

    html = recording_html(recording) if item is None else item_html(recording, item)
    bundle: dict[str, Any] = {"text/html": html}
    if in_kernel():
        view = RecordingView(recording, html)
        # Only the view: the widget's own text/plain is its repr, with the whole HTML in it.
        bundle[WIDGET_VIEW] = view_data(view)
    return bundle


def view_data(view: RecordingView) -> dict[str, Any]:
    """The ``application/vnd.jupyter.widget-view+json`` data of a view (the widget's bundle is
    ``(data, metadata)`` or ``data``, depending on the anywidget version)."""
    bundle: Any = view._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    if not isinstance(data, Mapping) or WIDGET_VIEW not in data:
        raise RuntimeError(f"the widget gave no {WIDGET_VIEW} to display (got {data!r:.200})")
    return dict(data[WIDGET_VIEW])
