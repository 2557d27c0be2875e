"""A real JupyterLab on loopback, Debian's chromium driven by Playwright, and a kernel client.

Shared by the end-to-end test (tests/widget/test_browser_e2e.py) and the benchmark
(benchmarks/bench_widget.py). Everything runs on 127.0.0.1; the fake microphone speaks a WAV.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.request import urlopen

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
FAKE_WAV = (REPO / "tests/fixtures/audio/realtime_whats_the_weather_pcm16_24khz_mono.wav").resolve()
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    f"--use-file-for-fake-audio-capture={FAKE_WAV}",
]


#: Chromium's WebRTC host candidates are mDNS names (``<uuid>.local``) unless told otherwise; the
#: loopback tests give the local server's ICE agent plain addresses it reaches without mDNS.
WEBRTC_ARGS = ("--disable-features=WebRtcHideLocalIpsWithMdns",)


def unavailable(reason: str) -> None:
    """Skip a browser test whose parts are missing, except in CI, where ``.ci/run`` installs
    them: there a missing browser must fail the run, not quietly skip its proof."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    if not FAKE_WAV.exists():
        return f"fixture {FAKE_WAV} is missing"
    for mod in ("playwright", "jupyterlab", "jupyter_client"):
        try:
            __import__(mod)
        except ImportError:
            return f"{mod} is not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def notebook(cells: list[str]) -> dict[str, Any]:
    return {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "source": c,
                "outputs": [],
                "execution_count": None,
            }
            for c in cells
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    runtime_dir: Path
    proc: subprocess.Popen[bytes]
    kernels: list[Any] = field(default_factory=list)

    def api(self, path: str) -> Any:
        with urlopen(f"{self.url}{path}?token={self.token}", timeout=10) as r:
            return json.loads(r.read())

    def kernel_client(self, timeout: float = 60) -> Any:
        """A jupyter_client BlockingKernelClient on the (single) running kernel."""
        from jupyter_client import BlockingKernelClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ks = self.api("/api/kernels")
            if ks:
                cf = self.runtime_dir / f"kernel-{ks[0]['id']}.json"
                if cf.exists():
                    kc = BlockingKernelClient(connection_file=str(cf))
                    kc.load_connection_file()
                    kc.start_channels()
                    kc.wait_for_ready(timeout=30)
                    self.kernels.append(kc)
                    return kc
            time.sleep(0.2)
        raise TimeoutError("no kernel appeared")


def run(kc: Any, code: str, timeout: float = 60) -> str:
    """Execute code in the kernel (as a second client); return its stdout. Raises on error."""
    out: list[str] = []
    errors: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        t = msg["msg_type"]
        if t == "stream":
            out.append(msg["content"]["text"])
        elif t == "error":
            errors.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, output_hook=hook, timeout=timeout, allow_stdin=False)
    if reply["content"]["status"] != "ok" or errors:
        raise RuntimeError(f"kernel error running {code!r}:\n" + "\n".join(errors))
    return "".join(out)


#: Host name the insecure-context tests open JupyterLab at: chromium maps it to 127.0.0.1
#: (``--host-resolver-rules``), and a page served over plain http from a name that is not
#: localhost is not a secure context, so getUserMedia is unavailable, as on a remote server.
INSECURE_HOST = "rtnb.test"

#: JupyterLab user settings for every test lab: no "Jupyter news" toast (it covers the corner of
#: screenshots and asks for a click), no update check (never touch the internet).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


@contextmanager
def jupyterlab(
    tmp: Path,
    nb_cells: list[str],
    env: dict[str, str],
    notebooks: dict[str, list[str]] | None = None,
) -> Iterator[Lab]:
    """Start JupyterLab on loopback serving ``e2e.ipynb`` (and any other ``notebooks``)."""
    root = tmp / "lab"
    root.mkdir()
    (root / "e2e.ipynb").write_text(json.dumps(notebook(nb_cells)))
    for name, cells in (notebooks or {}).items():
        (root / name).write_text(json.dumps(notebook(cells)))
    settings = tmp / "user-settings"
    for rel, values in LAB_SETTINGS.items():
        f = settings / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    runtime = tmp / "runtime"
    runtime.mkdir()
    token = secrets.token_hex(16)
    port = free_port()
    full_env = {
        **os.environ,
        **env,
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True", "--ServerApp.disable_check_xsrf=True",
        f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        f"--ServerApp.local_hostnames=['localhost', '{INSECURE_HOST}']",
        "--allow-root",
    ]  # fmt: skip
    log = open(tmp / "jupyterlab.log", "wb")  # noqa: SIM115  # closed below
    proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, runtime, proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                lab.api("/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "JupyterLab did not start:\n" + (tmp / "jupyterlab.log").read_text()[-3000:]
                    ) from None
                time.sleep(0.3)
        yield lab
    finally:
        for kc in lab.kernels:
            kc.stop_channels()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(runtime, ignore_errors=True)


@dataclass
class WsTap:
    """Every kernel WebSocket frame the page sent or received (for the secret scan)."""

    frames: list[bytes] = field(default_factory=list)
    #: per frame: True if the page received it (False: the page sent it)
    received: list[bool] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        def on_ws(ws: Any) -> None:
            ws.on("framesent", lambda payload: self._add(payload, False))
            ws.on("framereceived", lambda payload: self._add(payload, True))

        page.on("websocket", on_ws)

    def _add(self, payload: Any, received: bool = False) -> None:
        self.frames.append(payload.encode() if isinstance(payload, str) else bytes(payload))
        self.received.append(received)

    def bytes_received(self) -> int:
        return sum(len(f) for f, r in zip(self.frames, self.received, strict=True) if r)

    def contains(self, needle: str) -> bool:
        n = needle.encode()
        return any(n in f for f in self.frames)


def open_notebook(
    pw: Any,
    lab: Lab,
    tap: WsTap | None = None,
    *,
    name: str = "e2e.ipynb",
    insecure: bool = False,
    run_all: bool = True,
    extra_args: tuple[str, ...] = (),
    height: int = 900,
    fake_wav: Path | None = None,
) -> tuple[Any, Any]:
    """Launch chromium, open notebook ``name``, run all cells; returns (browser, page).

    ``insecure``: open JupyterLab at ``http://rtnb.test:PORT`` instead of 127.0.0.1, so the page
    is not a secure context (no microphone API), as when a notebook server is reached remotely.
    ``extra_args``: more chromium switches (the WebRTC tests' :data:`WEBRTC_ARGS`);
    ``fake_wav``: what the fake microphone says instead of :data:`FAKE_WAV` (in a loop).
    """
    args = [*CHROMIUM_ARGS, *extra_args]
    if fake_wav is not None:
        args = [a for a in args if not a.startswith("--use-file-for-fake-audio-capture=")]
        args.append(f"--use-file-for-fake-audio-capture={fake_wav}")
    base = lab.url
    if insecure:
        args.append(f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1")
        base = lab.url.replace("127.0.0.1", INSECURE_HOST)
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
    context = browser.new_context(viewport={"width": 1200, "height": height})
    if not insecure:  # chromium refuses to grant anything to an insecure origin
        context.grant_permissions(["microphone"], origin=base)
    page = context.new_page()
    if tap is not None:
        tap.attach(page)
    # ?reset: a fresh layout, not the workspace a previous browser saved (with its notebook
    # open and current, so "run all" would run that one).
    page.goto(f"{base}/lab/tree/{name}?reset&token={lab.token}")
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
        timeout=90_000,
    )
    page.wait_for_timeout(1000)
    if run_all:
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    return browser, page


def run_cell(page: Any, index: int) -> None:
    """Select cell ``index`` of the current notebook and run it (as the user would)."""
    page.evaluate(
        """(i) => { const nb = window.jupyterapp.shell.currentWidget.content;
                   nb.activeCellIndex = i;
                   return window.jupyterapp.commands.execute('notebook:run-cell'); }""",
        index,
    )


def synthetic_recording(path: Path, minutes: float, truncate_every: int = 0) -> Path:
    """Write a synthetic session of ``minutes`` minutes (``realtime_nb.testing.synthetic``) to ``path``.

    ``truncate_every``: every n-th assistant item is cut 1.2 s into its audio (a client
    ``conversation.item.truncate`` and the server's ``conversation.item.truncated``), as when the
    user interrupts; 0 for none.
    """
    from realtime_nb.storage.recording import Recorder, make_meta
    from realtime_nb.testing.synthetic import synthetic_session

    rec = Recorder(path, meta=make_meta(model="gpt-realtime"))
    first_delta: dict[str, int] = {}
    due: list[tuple[int, str]] = []  # (t_ns, item_id)
    for f in synthetic_session(minutes):
        while due and due[0][0] <= f.t_ns:
            t_ns, item = due.pop(0)
            cut = {"item_id": item, "content_index": 0, "audio_end_ms": 1200}
            rec.append("client", {"type": "conversation.item.truncate", **cut}, t_ns=t_ns)
            rec.append(
                "server", {"type": "conversation.item.truncated", **cut}, t_ns=t_ns + 5_000_000
            )
        d = f.data
        if truncate_every and d.get("type") == "response.output_audio.delta":
            item = str(d.get("item_id"))
            if item not in first_delta:
                first_delta[item] = f.t_ns
                if len(first_delta) % truncate_every == 0:
                    due.append((f.t_ns + 1_200_000_000, item))
        rec.append(f.source, d, raw=f.raw, t_ns=f.t_ns)
    rec.close()
    return path
