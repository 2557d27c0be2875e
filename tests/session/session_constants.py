"""Constants shared by the session tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

#: The key every live test uses: the local server requires it, so it is really sent.
KEY = "sk-test-realtime-nb-" + "S3CR3TK3Y" * 3
FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
WAV = FIXTURES / "audio" / "realtime_whats_the_weather_pcm16_24khz_mono.wav"
