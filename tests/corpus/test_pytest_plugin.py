"""The corpus pytest plugin, run by pytester: one test id per recording, re-driven on the local
backend, a failure printing the turn diff."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.slow

TEST_FILE = """
import pytest
from realtime_nb.corpus import no_errors, not_said, said, tool_called

NEW = 'Start every answer with "Bonjour".'

@pytest.mark.corpus("regressions/*.arrow", instructions=NEW)
def test_greets(corpus_case):
    result = corpus_case.expect(said("Bonjour"), no_errors())
    assert result.passed

@pytest.mark.corpus("regressions/*.arrow", instructions=NEW)
def test_never_greets(corpus_case):
    corpus_case.expect(not_said("Bonjour"), tool_called("get_weather"))
"""


def test_one_test_per_recording_and_failures_print_the_turn_diff(
    pytester: pytest.Pytester, base_dir: Path
) -> None:
    folder = pytester.path / "regressions"
    folder.mkdir()
    for name in ("openai_tool.arrow", "xai_tool.arrow"):
        shutil.copy(base_dir / name, folder / name)
    pytester.makepyfile(test_regressions=TEST_FILE)
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_greets?openai_tool.arrow? PASSED*",
            "*test_greets?xai_tool.arrow? PASSED*",
            "*test_never_greets?openai_tool.arrow? FAILED*",
            "*test_never_greets?xai_tool.arrow? FAILED*",
        ]
    )
    out = result.stdout.str()
    assert "openai_tool.arrow: checks failed" in out
    assert "FAIL openai_tool.redrive-0.arrow turn 0: not_said(Bonjour): said 'Bonjour'" in out
    # The turn diff: the recorded answer against the re-driven one, and the tool call.
    assert "answer (parent): It is foggy and 12 degrees in London." in out
    assert "answer (new):    Bonjour" in out
    assert "tool call 0: get_weather" in out


def test_a_marker_without_the_fixture_or_recordings_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_bad="""
import pytest

@pytest.mark.corpus("nowhere/*.arrow")
def test_empty(corpus_case):
    pass
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*test_empty: the corpus 'nowhere/[*].arrow' has no recordings"])
