"""Shared test fixtures: paths of the real-world data in tests/fixtures, and the no-secrets guard."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: The real-world data the tests use, copied into the repository from the project's shared
#: fixtures (MIT, attribution in tests/fixtures/README.md): a clone needs nothing beside it.
FIXTURES = REPO / "tests" / "fixtures"
SESSIONS = FIXTURES / "sessions"
AUDIO = FIXTURES / "audio"
SPEC = FIXTURES / "spec"
WEATHER_WAV = AUDIO / "realtime_whats_the_weather_pcm16_24khz_mono.wav"
DESCRIPTION_WAV = AUDIO / "realtime_api_description_pcm16_24khz_mono.wav"

#: The API key every test that needs one uses. The session-end check below fails the run if it,
#: or anything shaped like an OpenAI key or ephemeral secret, is in any file the tests wrote.
TEST_API_KEY = "sk-test-realtimeNB-" + "k3y" * 8
TEST_EPHEMERAL_KEY = "ek_testrealtimenb" + "9" * 16
_SECRET_BYTES = re.compile(rb"sk-(?:proj-|test-)?[A-Za-z0-9_\-]{16,}|ek_[A-Za-z0-9]{16,}")
#: Folders the tests create but whose files are third-party code (a fresh virtual environment
#: for the README test, a git clone): not written by realtime_nb, not scanned.
_NOT_OURS = {"venv", ".venv", "site-packages", ".git", "node_modules"}


def cassettes(pattern: str = "*/*.yaml") -> list[Path]:
    return sorted(SESSIONS.glob(pattern))


@pytest.fixture(scope="session")
def api_key() -> str:
    return TEST_API_KEY


def _written_files(session: pytest.Session) -> list[Path]:
    roots = []
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        with contextlib.suppress(OSError, ValueError):
            roots.append(factory.getbasetemp())
    roots.append(REPO / "recordings")
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            tracked = _tracked_in_checkouts(root)
            files.extend(
                p
                for p in root.rglob("*")
                if p.is_file()
                and not p.is_symlink()
                and not _NOT_OURS & set(p.parts)
                and p not in tracked
            )
    return files


def _tracked_in_checkouts(root: Path) -> set[Path]:
    """Files of git checkouts the tests made (the README test clones this repository): they are
    the repository's own sources, which define the test keys, not output of the tests. What the
    tests wrote inside a checkout (its recordings/) is still scanned."""
    import subprocess

    tracked: set[Path] = set()
    for git_dir in root.rglob(".git"):
        checkout = git_dir.parent
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=checkout, capture_output=True, check=False
        ).stdout
        tracked.update(checkout / name for name in out.decode().split("\0") if name)
    return tracked


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Grep the bytes of every file the suite wrote for secrets; fail the run if one is found."""
    leaks = []
    for path in _written_files(session):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for m in _SECRET_BYTES.finditer(data):
            leaks.append(f"{path}: {m.group()[:12]!r}...")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leaks:
        if reporter is not None:
            reporter.write_line("SECRETS FOUND IN FILES WRITTEN BY THE TESTS:", red=True)
            for leak in leaks[:20]:
                reporter.write_line("  " + leak, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line(
            f"no secrets in {len(_written_files(session))} files written by the tests"
        )
