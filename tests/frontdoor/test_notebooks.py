"""The notebooks run top to bottom with a real kernel, no API key and no network."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import DEMO_RECORDING, KEY_VARIABLES, REPO

NOTEBOOKS = (
    "quickstart.ipynb",
    "tools.ipynb",
    "replay_and_diff.ipynb",
    "regression_testing.ipynb",
)
#: Per-cell limit: the slowest cell (a spoken turn on the local backend) takes ~2 s.
CELL_TIMEOUT_S = 120


def kernel_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_saved_clean(name: str) -> None:
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: saved with outputs"
            assert cell.execution_count is None


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_without_errors(tmp_path: Path, name: str) -> None:
    # A copy of the layout the notebooks expect (../recordings/demo.arrow), so that what they
    # record lands in tmp_path and not in the repository.
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "recordings").mkdir()
    shutil.copy(REPO / "notebooks" / name, tmp_path / "notebooks" / name)
    shutil.copy(DEMO_RECORDING, tmp_path / "recordings" / "demo.arrow")
    nb = nbformat.read(tmp_path / "notebooks" / name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path / "notebooks")}},
    )
    client.execute(env=kernel_env())  # raises CellExecutionError on the first error
    problems = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            # Error outputs, and tracebacks printed to stderr (a failing callback, a thread).
            text = out.get("text", "") if out.get("name") == "stderr" else ""
            if out.output_type == "error" or "Traceback" in text:
                problems.append(f"cell {i}: {out.get('ename') or text[:300]}")
    assert not problems, "\n".join(problems)
