"""How the front end's files reach the browser (realtime_nb/widget/_sources.py), and hot reload."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import traitlets

from realtime_nb.widget import RealtimeWidget, ReplayWidget, worklet_source
from realtime_nb.widget._sources import (
    ENTRY,
    OWN_ESM,
    WIDGET_DIR,
    WORKLET,
    SourceWatcher,
    module_sources,
    ship,
    text,
)
from tests.widget.test_widget import FakeSession


def _js_files() -> set[str]:
    return {p.name for p in WIDGET_DIR.glob("*.js")}


def test_every_js_file_of_the_folder_is_shipped() -> None:
    # The entry point is the _esm, the worklet goes as _worklet_js, every other one in _modules:
    # a new module needs no list updated anywhere.
    assert set(module_sources()) | {ENTRY, WORKLET, *OWN_ESM} == _js_files()
    assert not set(OWN_ESM) & set(module_sources())
    assert ENTRY not in module_sources() and WORKLET not in module_sources()
    assert "audio.js" in module_sources()  # the worklet's helpers are an ES module as well


def test_the_live_widget_ships_its_modules_the_entry_and_the_worklet() -> None:
    w = RealtimeWidget(FakeSession())  # type: ignore[arg-type]  # a fake with the Session's interface
    try:
        state = w.get_state()
        assert state["_esm"] == (WIDGET_DIR / ENTRY).read_text("utf-8")
        assert state["_main"] == "widget.js"
        assert state["_modules"] == module_sources()
        assert state["_main"] in state["_modules"]
        assert state["_worklet_js"] == worklet_source()
        assert state["_css"] == (WIDGET_DIR / "widget.css").read_text("utf-8")
    finally:
        w.close()


def test_the_replay_widget_ships_its_modules_and_both_style_sheets(tmp_path: Path) -> None:
    w = ReplayWidget(tmp_path / "missing.arrow")
    try:
        state = w.get_state()
        assert state["_esm"] == (WIDGET_DIR / ENTRY).read_text("utf-8")
        assert state["_main"] == "replay.js"
        assert state["_modules"] == module_sources()
        css = state["_css"]
        assert (WIDGET_DIR / "widget.css").read_text("utf-8") in css
        assert (WIDGET_DIR / "replay.css").read_text("utf-8") in css
    finally:
        w.close()


class _Traits(traitlets.HasTraits):
    _modules = traitlets.Dict()
    _worklet_js = traitlets.Unicode("")
    _css = traitlets.Unicode("")


def _bump(path: Path, content: str) -> None:
    """Write and move the mtime on, as an editor's save does (filesystems may tick coarsely)."""
    st = path.stat()
    path.write_text(content, "utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_a_change_to_any_module_or_style_sheet_is_sent_again(tmp_path: Path) -> None:
    folder = tmp_path / "widget"
    shutil.copytree(WIDGET_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    t = _Traits()
    producers: dict[str, Any] = {
        "_modules": lambda: module_sources(folder),
        "_worklet_js": lambda: worklet_source(folder),
        "_css": text("widget.css", "replay.css", folder=folder),
    }
    for name, produce in producers.items():
        setattr(t, name, produce())
    watcher = SourceWatcher(folder, interval_s=60)
    watcher.add(t, producers)
    changes: list[str] = []
    t.observe(lambda change: changes.append(change["name"]), names=list(producers))
    assert not watcher.poll()

    ui = folder / "ui.js"
    _bump(ui, ui.read_text("utf-8") + "\n// edited\n")
    assert watcher.poll()
    assert t._modules["ui.js"].endswith("// edited\n")
    assert changes == ["_modules"]  # unchanged values are not sent again

    _bump(folder / "audio.js", (folder / "audio.js").read_text("utf-8") + "\n// tuned\n")
    assert watcher.poll()
    assert t._worklet_js.count("// tuned") == 1 and t._modules["audio.js"].endswith("// tuned\n")

    _bump(folder / "replay.css", ".rtnb-new { color: red }\n")
    assert watcher.poll()
    assert t._css.endswith(".rtnb-new { color: red }\n")

    (folder / "newmodule.js").write_text("// @ts-check\nexport const x = 1;\n", "utf-8")
    assert watcher.poll()
    assert "newmodule.js" in t._modules
    assert not watcher.poll()


def test_ship_without_hmr_sets_the_traits_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYWIDGET_HMR", raising=False)
    t = _Traits()
    ship(t, _modules=module_sources)
    assert t._modules == module_sources()
