"""The look every HTML view of realtime_nb shares (recording, item, diff, metrics, summary, cost).

One ``<style>`` block and the root classes. What it is for:

- MathJax stays off: JupyterLab typesets ``$...$`` in HTML outputs, and ``$0.0106 → $0.0118``
  would become a formula; ``tex2jax_ignore`` (MathJax 2, classic notebook) and ``mathjax_ignore``
  (MathJax 3, JupyterLab 4, Notebook 7) on the root keep the dollars as text.
- Text is left-aligned: JupyterLab right-aligns every table cell of rendered HTML
  (``.jp-RenderedHTMLCommon td``); the rules below are more specific and ``!important``.
- Colours come from JupyterLab's CSS variables, with fallbacks for other front ends and for a
  page exported without them; highlights are translucent so they read on light and dark themes.
- Code, diffs and ids are monospace.

Pure: strings only.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["CSS", "ROOT_CLASSES", "pretty"]

#: Classes of the root element of every view: the shared style, and MathJax off.
ROOT_CLASSES: Final = "rtnb tex2jax_ignore mathjax_ignore"

CSS: Final = """<style>
div.rtnb{font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:var(--jp-content-font-size1,13px);
 color:var(--jp-content-font-color1,#222);text-align:left;line-height:1.4}
div.rtnb table{border-collapse:collapse;margin:4px 0;table-layout:auto}
div.rtnb table td,div.rtnb table th{text-align:left !important;vertical-align:top;padding:2px 8px;
 border-bottom:1px solid var(--jp-border-color2,#ddd);background:transparent}
div.rtnb table th{font-weight:600;color:var(--jp-content-font-color2,#555)}
div.rtnb table td.rtnb-num{text-align:right !important;font-variant-numeric:tabular-nums;white-space:nowrap}
div.rtnb pre,div.rtnb code,div.rtnb .rtnb-mono{font-family:var(--jp-code-font-family,ui-monospace,monospace);
 font-size:var(--jp-code-font-size,12px);text-align:left;white-space:pre-wrap}
div.rtnb pre{margin:0;padding:2px 4px;background:transparent;border:0}
div.rtnb .rtnb-muted{color:var(--jp-content-font-color2,#777)}
div.rtnb .rtnb-err{color:var(--jp-error-color1,#c00)}
div.rtnb ins,div.rtnb .rtnb-ins{text-decoration:none;background:rgba(40,170,40,.22)}
div.rtnb del,div.rtnb .rtnb-del{text-decoration:line-through;background:rgba(220,40,40,.2)}
div.rtnb pre .rtnb-del{text-decoration:none}
div.rtnb tr.rtnb-changed td{background:rgba(255,190,0,.10)}
div.rtnb h4{margin:8px 0 2px;font-size:1em}
</style>"""


def pretty(obj: Any, p: Any, cycle: bool) -> None:
    """IPython's ``_repr_pretty_``: the object's text form (``str``), not a dataclass repr."""
    p.text("..." if cycle else str(obj))
