"""The README's promise: on a fresh machine, its first command sets up and runs the demo.

The second command (the test suite) is what `.ci/run` runs, in a fresh virtual environment of a
clean clone; this test checks that `.ci/run` really runs that exact command, and runs the first
command from a clean clone in a new virtual environment, offline from the model's point of view
(no API key; only the package registry is reached, to install).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _two_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)
    assert len(commands) == 2, f"the README's 'Two commands' section has {len(commands)} commands"
    return [c.strip() for c in commands]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert _two_commands()[1] in ci.splitlines()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_first_command_from_a_clean_clone(tmp_path: Path) -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("the repository has no commit to clone yet")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_OPENAI_"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        ["bash", "-c", _two_commands()[0]],
        cwd=clone, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "local backend" in out
    assert "get_weather" in out  # the demo's tool call shows in the printed summary
    recordings = list((clone / "recordings").glob("*.arrow"))
    assert recordings, "the demo wrote no recording under recordings/"
