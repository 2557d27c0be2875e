"""Lint, format, types and the JavaScript unit tests, as part of the one test command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_lint() -> None:
    r = _run(sys.executable, "-m", "ruff", "check", "realtime_nb", "tests", "benchmarks", "tools")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format() -> None:
    r = _run(
        sys.executable,
        "-m",
        "ruff",
        "format",
        "--check",
        "realtime_nb",
        "tests",
        "benchmarks",
        "tools",
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict() -> None:
    r = _run(sys.executable, "-m", "mypy", "realtime_nb")
    assert r.returncode == 0, r.stdout + r.stderr


def test_javascript_unit_tests() -> None:
    if shutil.which("node") is None:
        if os.environ.get("CI"):  # the CI machine has Node.js: its absence must fail, not skip
            pytest.fail("Node.js is not installed; the widget's JavaScript tests need it")
        pytest.skip("Node.js is not installed")
    r = _run("node", "--test", "tests/js/")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "# fail 0" in r.stdout


def test_typescript_checks_the_front_end() -> None:
    """``tsc --noEmit -p jsconfig.json``: every front-end module against its JSDoc types (strict)."""
    tsc = REPO / "node_modules" / ".bin" / "tsc"
    if not tsc.exists() or shutil.which("node") is None:
        why = "TypeScript is not installed (run `npm ci` at the repository root; it needs Node.js)"
        if os.environ.get("CI"):  # .ci/run installs it: its absence must fail, not skip
            pytest.fail(why)
        pytest.skip(why)
    r = _run(str(tsc), "--noEmit", "-p", "jsconfig.json")
    assert r.returncode == 0, r.stdout + r.stderr
