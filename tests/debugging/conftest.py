"""Fixtures of the debugging-loop tests: the plugin's fixture (the entry point is not needed to
run from a checkout) and a local server shared by the module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from realtime_nb.testing.pytest_plugin import realtime_replay

__all__ = ["local_srv", "realtime_replay"]


@pytest.fixture(scope="module")
def local_srv() -> Iterator[Any]:
    from realtime_nb.local import LocalServer

    with LocalServer(fast=True) as srv:
        yield srv
