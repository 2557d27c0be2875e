"""pytest plugin: one test per recording of a regression corpus, re-driven and checked.

Registered as its own ``pytest11`` entry point (``realtime_nb_corpus``), so the testing layer's
plugin never imports the corpus. A regression set is a folder of recordings in your repository::

    import pytest
    from realtime_nb.corpus import said, no_errors, tool_called

    @pytest.mark.corpus("regressions/*.arrow", instructions=NEW_PROMPT)
    def test_new_prompt(corpus_case):
        corpus_case.expect(no_errors(), tool_called("get_weather"))

Each recording is a test id (its path under the pattern's folder, relative paths being relative
to the test file). ``corpus_case.expect(...)`` re-drives the recording with the marker's settings
(against the offline local backend, or the real API with ``--corpus-backend=openai`` and
``OPENAI_API_KEY``), runs the checks on the new recording, compared with the recorded one, and
fails with the failing checks and each failing turn's diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    from ..local import LocalServer
    from ..storage.recording import Recording
    from .checks import Check
    from .evaluate import Evaluation

__all__ = ["CorpusCase"]

#: Backends ``--corpus-backend`` accepts.
BACKENDS: Final = ("local", "openai")
_OPTION: Final = "--corpus-backend"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("realtime_nb corpus")
    group.addoption(
        _OPTION,
        choices=BACKENDS,
        default="local",
        help="where @pytest.mark.corpus tests re-drive their recordings: the offline local backend "
        "(default) or the OpenAI API (needs OPENAI_API_KEY; skipped without it)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "corpus(source, **settings): run the test once per recording of source (a glob, folder "
        "or files), re-driven with settings; the test takes the corpus_case fixture",
    )


def _resolve(source: Any, base: Path) -> Any:
    if isinstance(source, (str, Path)):
        p = Path(source)
        return str(p if p.is_absolute() else base / p)
    return [p if Path(p).is_absolute() else base / p for p in source]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("corpus")
    if marker is None:
        return
    if "corpus_case" not in metafunc.fixturenames:
        pytest.fail(
            f"{metafunc.definition.nodeid}: @pytest.mark.corpus needs the test to take the "
            "corpus_case fixture",
            pytrace=False,
        )
    if len(marker.args) != 1:
        pytest.fail(
            f"{metafunc.definition.nodeid}: @pytest.mark.corpus takes one source (a glob, a folder "
            f"or a list of files), got {len(marker.args)} positional arguments",
            pytrace=False,
        )
    from .corpus import Corpus

    base = Path(str(metafunc.definition.fspath)).parent
    try:
        corpus = Corpus(_resolve(marker.args[0], base), cache=False)
    except FileNotFoundError as exc:
        pytest.fail(f"{metafunc.definition.nodeid}: {exc}", pytrace=False)
    if not len(corpus):
        pytest.fail(
            f"{metafunc.definition.nodeid}: the corpus {marker.args[0]!r} has no recordings",
            pytrace=False,
        )
    params = [(str(corpus.path(k)), k, dict(marker.kwargs)) for k in corpus.keys]
    metafunc.parametrize("corpus_case", params, ids=corpus.keys, indirect=True)


_local: list[LocalServer] = []


def _local_url() -> str:
    """This test session's local backend (one for all corpus tests, stopped at the end)."""
    if not _local:
        from ..local import LocalServer

        _local.append(LocalServer("tools", fast=True).start())
    return _local[0].url


def pytest_unconfigure(config: pytest.Config) -> None:
    while _local:
        _local.pop().stop()


class CorpusCase:
    """One recording of a ``@pytest.mark.corpus`` test: :attr:`recording` (the parent),
    :meth:`redrive` and :meth:`expect`."""

    def __init__(
        self, path: Path, key: str, settings: dict[str, Any], folder: Path, backend: str
    ) -> None:
        self.path, self.key, self.settings = path, key, settings
        self.folder, self.backend = folder, backend
        self._child: Recording | None = None

    @property
    def recording(self) -> Recording:
        from ..storage.recording import Recording

        return Recording.open(self.path)

    def redrive(self, **settings: Any) -> Recording:
        """The recording re-driven with the marker's settings updated by ``settings`` (once
        per case; the new recording is in the test's temporary folder)."""
        from ..debugging.redrive import redrive

        if self._child is not None and not settings:
            return self._child
        if self.backend == "openai":
            key = os.environ.get("OPENAI_API_KEY")
            if not key:
                pytest.skip("--corpus-backend=openai needs OPENAI_API_KEY")
            where: dict[str, Any] = {"api_key": key}
        else:
            where = {"url": _local_url(), "api_key": None}
        stem = Path(self.key).name.removesuffix(".arrow")
        target = self.folder / f"{stem}.redrive-{len(list(self.folder.glob('*.arrow')))}.arrow"
        child = redrive(
            self.path, record=target, progress=False, **where, **{**self.settings, **settings}
        )
        if not settings:
            self._child = child
        return child

    def evaluate(self, *checks: Check) -> Evaluation:
        """The checks over the re-driven recording, compared with this one."""
        from .corpus import Corpus

        child = self.redrive()
        assert child.path is not None
        return Corpus([child.path], cache=False).evaluate(
            list(checks), against=Corpus([self.path], cache=False)
        )

    def expect(self, *checks: Check) -> Evaluation:
        """Fail the test (with the failing checks and turn diffs) unless every check passes."""
        if not checks:
            raise pytest.UsageError("corpus_case.expect() needs at least one check")
        result = self.evaluate(*checks)
        if not result.passed:
            pytest.fail(f"{self.key}: checks failed\n{result.text()}", pytrace=False)
        return result

    def __repr__(self) -> str:
        return f"<CorpusCase {self.key}>"


@pytest.fixture
def corpus_case(request: pytest.FixtureRequest, tmp_path: Path) -> CorpusCase:
    """The recording of this parametrized ``@pytest.mark.corpus`` test (see the module doc)."""
    param = getattr(request, "param", None)
    if param is None:
        raise pytest.UsageError(
            "corpus_case is given by @pytest.mark.corpus('recordings/*.arrow', **settings)"
        )
    path, key, settings = param
    return CorpusCase(Path(path), key, settings, tmp_path, str(request.config.getoption(_OPTION)))
