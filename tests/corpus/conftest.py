"""The small corpus the corpus tests share: the demo conversation, a scripted caller and two real
recordings with a tool call (OpenAI and xAI), built once per test session in a temporary folder.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from realtime_nb.corpus import Corpus
from realtime_nb.corpus._cache import CACHE_ENV
from realtime_nb.storage.recording import Recording
from tests.conftest import SESSIONS

#: The two real sessions with a tool call that re-drive (text turns naming a city).
TOOL_SESSIONS = {
    "openai_tool.arrow": SESSIONS / "test_openai_ws" / "test_tool_call_round.yaml",
    "xai_tool.arrow": SESSIONS / "test_xai_ws" / "test_tool_call_round.yaml",
}
#: What the changed instructions make the local backend say first (its rules responder obeys
#: 'Start every answer with "..."').
GREETING = "Bonjour"
NEW_INSTRUCTIONS = f'You are a weather assistant. Start every answer with "{GREETING}".'


def build_base(folder: Path) -> Path:
    """Record the demo, a scripted call and import the tool sessions into ``folder``."""
    from realtime_nb.corpus import scripted_call
    from realtime_nb.frontdoor.demo import run_demo

    folder.mkdir(parents=True, exist_ok=True)
    assert run_demo(record_dir=folder / "demo", out=io.StringIO()) == 0
    scripted_call(["Hello there, how are you today?"], record=folder / "scripted.arrow")
    for name, cassette in TOOL_SESSIONS.items():
        Recording.import_file(cassette, save_to=folder / name)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Corpus caches of these tests go to their temporary folder, never the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("corpus-cache")))
        yield


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_base(tmp_path_factory.mktemp("corpus") / "base")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def base(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus(f"{base_dir}/**/*.arrow", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def redriven(base: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """The base corpus re-driven on the local backend with the new instructions."""
    out = tmp_path_factory.mktemp("redrive")
    return base.redrive(instructions=NEW_INSTRUCTIONS, record=out, concurrency=2, progress=False)
