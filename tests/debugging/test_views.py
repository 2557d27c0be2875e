"""One latency everywhere, plots, and HTML/text views that read well (and stay small), on the
project's demo recording, a freshly made one, the real sessions in tests/fixtures and a synthetic
10-minute session."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from realtime_nb.core.pricing import LOCAL_MODEL
from realtime_nb.debugging.diff import diff
from realtime_nb.debugging.inspection import RECORDING_CLASS
from realtime_nb.debugging.metrics import metrics
from realtime_nb.frontdoor.cli import main as cli_main
from realtime_nb.storage.recording import Recorder, Recording, make_meta
from realtime_nb.widget.clip import WIDGET_VIEW, RecordingView, recording_bundle, view_data

from ..conftest import REPO

DEMO_RECORDING = REPO / "recordings" / "demo.arrow"

#: The issue's budget for a recording's notebook output (HTML plus the widget's state).
MAX_OUTPUT_BYTES = 100_000
#: Real sessions whose turns call tools (no timestamps in these cassettes: latencies are 0).
TOOL_FIXTURES = [
    "test_openai_ws/test_tool_call_round.yaml",
    "test_azure_ws/test_spoken_turn_transcribed_drives_a_tool_and_answers_in_audio.yaml",
    "test_xai_ws/test_tool_call_round.yaml",
]


@pytest.fixture(scope="module")
def demo() -> Recording:
    return Recording.open(DEMO_RECORDING)


@pytest.fixture(scope="module")
def fresh_demo(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """The demo made now, against the local backend as it is today."""
    from realtime_nb.frontdoor.demo import make_demo_recording

    return Recording.open(make_demo_recording(tmp_path_factory.mktemp("demo") / "demo.arrow"))


def _bars(fig: Any) -> list[str]:
    (ax,) = fig.axes
    return sorted(p.get_gid() for p in ax.patches if p.get_gid())


def _state_bytes(view: RecordingView) -> int:
    state = view.get_state()
    return len(json.dumps({k: v for k, v in state.items() if not isinstance(v, bytes)}))


@pytest.mark.parametrize("which", ["demo", "fresh_demo"])
def test_every_turn_has_one_latency_in_every_view(
    which: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    rec: Recording = request.getfixturevalue(which)
    m = metrics(rec)
    lat = [t.latency_ms for t in m.turns]
    assert lat
    assert all(x is not None and x > 0 for x in lat)
    # The demo's turn calls a tool: its latency runs to the first audio after the tool round.
    assert m.turns[0].tool_rounds == 1
    assert m.turns[0].first_audio_s is not None
    assert m.turns[0].response_created_s is not None
    assert m.turns[0].first_audio_s > m.turns[0].response_created_s
    s = rec.summary()
    assert s["turn_latency_ms"] == [round(x, 1) for x in lat if x is not None]
    assert s["latency_ms_median"] == round(m.latency.p50 or 0, 1)
    d = diff(rec, rec)
    assert [t.latency_a_ms for t in d.turns] == lat
    assert f"latency {lat[0]:.0f} ms" in m.text().replace("  ", " ") or f"{lat[0]:.0f}" in m.text()
    assert rec.path is not None
    assert cli_main(["inspect", str(rec.path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"latency {lat[0]:.0f} ms" in out
    assert _bars(m.plot_latency()) == [f"turn-{t.index}" for t in m.turns]


def test_the_local_backend_recording_costs_nothing(fresh_demo: Recording) -> None:
    m = metrics(fresh_demo)
    assert m.model == LOCAL_MODEL
    assert m.cost_usd == 0.0
    assert all(t.cost_usd == 0.0 for t in m.turns)
    assert fresh_demo.summary()["cost_usd"] == 0.0
    assert "cost $0.0000" in fresh_demo.describe()


@pytest.mark.parametrize("name", TOOL_FIXTURES)
def test_a_bar_per_turn_on_real_sessions_with_tool_calls(name: str) -> None:
    rec = Recording.import_file(REPO / "tests" / "fixtures" / "sessions" / name)
    m = metrics(rec)
    assert any(t.tool_rounds for t in m.turns)
    assert _bars(m.plot_latency()) == [f"turn-{t.index}" for t in m.turns]
    assert m.plot_timeline()._repr_png_().startswith(b"\x89PNG")


def test_plots_are_figures_outside_pyplot(demo: Recording) -> None:
    from matplotlib.figure import Figure

    fig = metrics(demo).plot_latency()
    assert isinstance(fig, Figure)
    assert fig._repr_png_().startswith(b"\x89PNG")
    import matplotlib.pyplot as plt

    assert fig.number not in plt.get_fignums() if hasattr(fig, "number") else True
    assert plt.get_fignums() == []  # nothing left in pyplot's global state
    tl = metrics(demo).plot_timeline()
    (ax,) = tl.axes
    labels = [t.get_text() for t in ax.texts]
    assert any("get_weather" in t for t in labels)  # the tool call, labelled
    assert any(t.strip().startswith("r0") for t in labels)  # the responses, labelled
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "tools",
        "responses",
        "assistant",
        "user",
    ]


def test_html_views_keep_mathjax_off_and_text_left(demo: Recording) -> None:
    views = {
        "recording": demo._repr_html_(),
        "item": demo.item(demo.state.items[0].id)._repr_html_(),
        "metrics": metrics(demo)._repr_html_(),
        "diff": diff(demo, demo)._repr_html_(),
    }
    for name, html in views.items():
        root = re.search(r"<div class='([^']*)'", html)
        assert root is not None, name
        classes = root.group(1).split()
        assert {"rtnb", "tex2jax_ignore", "mathjax_ignore"} <= set(classes), name
        assert "text-align:left !important" in html, name
        assert "var(--jp-content-font-color1" in html, name
    assert RECORDING_CLASS in views["recording"]
    assert "$0.0000" in views["recording"]  # the cost as text (the local backend is free)


def test_terminal_reprs_print_the_text_form(demo: Recording) -> None:
    from IPython.lib.pretty import pretty

    d = diff(demo, demo)
    assert pretty(d) == d.text() == str(d)
    assert len(pretty(d)) < 2000
    assert pretty(demo) == demo.describe() == str(demo)
    m = metrics(demo)
    assert pretty(m) == m.text()
    item = demo.item(demo.state.items[0].id)
    assert pretty(item).startswith("user ")


def _synthetic(path: Path, minutes: float) -> Recording:
    from realtime_nb.testing.synthetic import synthetic_session

    with Recorder(path, meta=make_meta(model="gpt-realtime")) as recorder:
        for f in synthetic_session(minutes):
            recorder.append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
    return Recording.open(path)


def test_a_recordings_notebook_output_stays_small(demo: Recording, tmp_path: Path) -> None:
    long = _synthetic(tmp_path / "long.arrow", minutes=10)
    assert long.duration_s > 590
    for rec in (demo, long):
        html = rec._repr_html_()
        assert "data:audio" not in html and "base64" not in html
        view = RecordingView(rec, html)
        total = len(html.encode()) + _state_bytes(view)
        assert total < MAX_OUTPUT_BYTES, (rec.path, total)
        # Each item with audio has a player placeholder with its duration from the reducer.
        with_audio = [i for i in rec.state.items if i.audio_part() is not None]
        assert html.count("class='rtnb-clip'") == len(with_audio)
        assert "▶ 0:0" in html or "▶ 0:1" in html
    bundle = recording_bundle(demo)
    assert WIDGET_VIEW not in bundle  # no kernel here: the HTML alone
    assert set(demo._repr_mimebundle_()) == {"text/html"}


def test_a_player_fetches_its_items_audio(demo: Recording) -> None:
    view = RecordingView(demo, demo._repr_html_())
    sent: list[tuple[dict[str, Any], list[bytes] | None]] = []
    view.send = lambda msg, buffers=None: sent.append((msg, buffers))  # type: ignore[method-assign]  # see what the comm would carry
    answer = next(i for i in demo.state.items if i.role == "assistant")
    view._on_msg(view, {"type": "get_clip", "req": 7, "item_id": answer.id}, [])
    (msg, buffers), *_ = sent
    assert msg["type"] == "clip" and msg["req"] == 7 and msg["rate"] == 24_000
    assert buffers is not None
    assert len(buffers[0]) == 2 * msg["samples"]
    assert msg["samples"] / 24_000 == pytest.approx(answer.output_audio_ms / 1000, abs=0.01)
    view._on_msg(view, {"type": "get_clip", "req": 8, "item_id": "nope"}, [])
    view._on_msg(view, {"type": "play_all", "req": 9}, [])
    errors = [m for m, _ in sent[1:]]
    assert [e["type"] for e in errors] == ["error", "error"]
    assert "no item 'nope'" in errors[0]["text"]
    assert errors[1]["text"] == "unknown message type 'play_all'; accepted: get_clip"


def test_without_a_kernel_the_exported_page_reads_the_html(demo: Recording) -> None:
    """nbconvert (no widget state saved) falls back to the text/html of the same output."""
    import nbformat
    from nbconvert import HTMLExporter

    html = demo._repr_html_()
    view = RecordingView(demo, html)
    data = {"text/html": html, WIDGET_VIEW: view_data(view)}
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("rec")
    cell.outputs = [nbformat.v4.new_output("execute_result", data=data, execution_count=1)]
    nb.cells = [cell]
    page, _ = HTMLExporter().from_notebook_node(nb)
    user = demo.state.items[0].text
    assert user.startswith("With the weather like in")
    assert user in page
    assert "rtnb-clip" in page


@pytest.mark.slow
def test_in_a_kernel_a_recording_shows_a_small_view_with_players(tmp_path: Path) -> None:
    """A real kernel (nbclient): the output holds the HTML and a widget view, no audio, and
    output plus saved widget state stay under the budget, for the demo and 10 minutes."""
    import os
    import sys

    import nbformat
    from nbclient import NotebookClient

    long = _synthetic(tmp_path / "long.arrow", minutes=10)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(f"import realtime_nb as rt\nrt.Recording.open({str(p)!r})")
        for p in (DEMO_RECORDING, long.path)
    ]
    env = {k: v for k, v in os.environ.items() if "API_KEY" not in k}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )  # fmt: skip
    client.execute(env=env)
    states = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    for cell in nb.cells:
        (out,) = cell.outputs
        data = out["data"]
        assert {"text/html", WIDGET_VIEW, "text/plain"} <= set(data), sys.executable
        assert "data:audio" not in data["text/html"]
        model = states[data[WIDGET_VIEW]["model_id"]]
        size = len(json.dumps(out)) + len(json.dumps(model))
        assert size < MAX_OUTPUT_BYTES, size
        assert "rtnb-clip" in model["state"]["html"]
        # The text form is the summary, not the widget's repr.
        assert "RecordingView" not in data["text/plain"]
        assert "items:" in data["text/plain"]
