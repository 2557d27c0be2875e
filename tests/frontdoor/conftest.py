"""Fixtures for the front door: no API key anywhere, a real IPython shell with the extension."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_RECORDING = REPO / "recordings" / "demo.arrow"

#: Variables that would send the magic, the demo or a notebook to a real service.
KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
)


@pytest.fixture(autouse=True)
def no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every front-door test runs as on a machine without a key: the offline path."""
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ip(tmp_path: Path) -> Iterator[Any]:
    """A real ``InteractiveShell`` with ``%load_ext realtime_nb``, recording into ``tmp_path``
    and the local backend in fast mode; the extension is unloaded (sessions closed) after."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.reset(new_session=False)
    # %config writes into the shell's config too: start every test from the defaults.
    shell.config.pop("RealtimeMagics", None)
    shell.run_line_magic("load_ext", "realtime_nb")
    shell.run_line_magic("config", f"RealtimeMagics.record = {str(tmp_path / 'rec')!r}")
    shell.run_line_magic("config", "RealtimeMagics.fast = True")
    try:
        yield shell
    finally:
        shell.run_line_magic("unload_ext", "realtime_nb")
        shell.reset(new_session=False)
        shell.config.pop("RealtimeMagics", None)
