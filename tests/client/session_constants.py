"""Constants shared by the session tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from ..conftest import FIXTURES, WEATHER_WAV

__all__ = ["FIXTURES", "KEY", "WAV"]

#: The key every live test uses: the local server requires it, so it is really sent.
KEY = "sk-test-realtime-nb-" + "S3CR3TK3Y" * 3
WAV = WEATHER_WAV
