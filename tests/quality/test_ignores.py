"""Every mypy ignore comment names its error code and says why, in a comment after it
(CONTRIBUTING.md, "Conventions").

realtime_nb/client/ is left to its owner's rewrite for now.
"""

from __future__ import annotations

import re

from tests.conftest import REPO

#: A ``type: ignore`` with its error code and then a comment giving the reason.
_WITH_REASON = re.compile(r"#\s*type:\s*ignore\[[\w\-, ]+\]\s+#\s*\S")
_IGNORE = re.compile(r"#\s*type:\s*ignore\b")
_FOLDERS = ("realtime_nb", "tests", "benchmarks", "tools")
_LEFT_OUT = (REPO / "realtime_nb" / "client",)


def test_every_type_ignore_has_a_code_and_a_reason() -> None:
    bare = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for folder in _FOLDERS
        for path in sorted((REPO / folder).rglob("*.py"))
        if not any(path.is_relative_to(d) for d in _LEFT_OUT)
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _IGNORE.search(line) and not _WITH_REASON.search(line)
    ]
    assert not bare, "add `  # why` after each:\n" + "\n".join(bare)
