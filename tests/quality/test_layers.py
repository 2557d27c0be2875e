"""The layering of realtime_nb, enforced: no module imports a layer above its own.

Every ``import`` in every module is checked, including the ones inside functions; imports under
``if TYPE_CHECKING:`` are for type checkers only and may point anywhere. The one exception is the
short list of notebook conveniences below: methods of a lower layer that hand a call to the layer
that owns the feature (``rec.play()`` is the replay widget's job), importing it when called.
CONTRIBUTING.md ("Layers") has the map and the rule.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

PKG = REPO / "realtime_nb"

#: Each subpackage's rank: a module may import its own subpackage and any of lower rank. Layers
#: of the same rank (core and runtime; storage and local; debugging and testing; widget and
#: corpus) are independent of each other.
RANKS = {
    "core": 0,
    "runtime": 0,
    "storage": 1,
    "local": 1,
    "client": 2,
    "debugging": 3,
    "testing": 3,
    "widget": 4,
    "corpus": 4,
    "frontdoor": 5,
}

#: (module, function) pairs that may import upward, at call time: the notebook conveniences.
CONVENIENCES = {
    ("storage.recording", "Recording.redrive"): "debugging",
    ("storage.recording", "Recording.replay_data"): "debugging",
    ("storage.recording", "Recording.metrics"): "debugging",
    ("storage.recording", "Recording.play"): "widget",
    ("storage.recording", "Recording.summary"): "debugging",
    ("storage.recording", "Recording.describe"): "debugging",
    ("storage.recording", "Recording._repr_html_"): "debugging",
    ("storage.recording", "ItemView._repr_html_"): "debugging",
    # The notebook rendering of a recording or an item: HTML plus a small widget whose players
    # fetch an item's audio when pressed (the audio is never inlined in the output).
    ("storage.recording", "Recording._repr_mimebundle_"): "widget",
    ("storage.recording", "ItemView._repr_mimebundle_"): "widget",
    ("client.session", "Session.widget"): "widget",
}


def _layer(module: str) -> str | None:
    """``realtime_nb.storage.recording`` -> ``storage``; the package root has no layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "realtime_nb" else None


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, absolute module imported, enclosing function qualname or "") of every import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, scope)
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, [*scope, child.name])
                continue
            where = ".".join(scope)
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name, where) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join([*base, *([child.module] if child.module else [])])
                else:
                    target = child.module or ""
                if child.module is None:  # "from . import a, b": the names are modules
                    found.extend((child.lineno, f"{target}.{a.name}", where) for a in child.names)
                else:
                    found.append((child.lineno, target, where))
            visit(child, scope)

    visit(tree, [])
    return found


def _violations() -> list[str]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        module = _module_name(path)
        own = _layer(module)
        if own is None or own not in RANKS:
            continue  # the package root (__init__) re-exports every layer
        short = module.split(".", 1)[1]
        for line, target, where in _imports(path):
            layer = _layer(target)
            if layer is None or layer == own or layer not in RANKS:
                continue
            if RANKS[layer] < RANKS[own]:
                continue
            if CONVENIENCES.get((short, where)) == layer:
                continue
            what = "a layer above" if RANKS[layer] > RANKS[own] else "an independent layer"
            bad.append(
                f"{path.relative_to(REPO)}:{line}: {own} imports {target} ({what}: {layer})"
                + (f" in {where}" if where else "")
            )
    return bad


def test_every_subpackage_has_a_rank() -> None:
    subpackages = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert subpackages == set(RANKS), "give each subpackage a rank in RANKS (and CONTRIBUTING.md)"


def test_the_package_root_holds_no_module_of_its_own() -> None:
    """Every module lives in its layer; the root only re-exports (and says the version)."""
    assert sorted(p.name for p in PKG.glob("*.py")) == ["__init__.py"]


def test_no_import_points_up_a_layer() -> None:
    assert _violations() == []


def test_the_checker_sees_imports_inside_functions() -> None:
    """The test above would catch a lazy upward import (and lets the listed conveniences pass)."""
    found = _imports(PKG / "storage" / "recording.py")
    lazy = {(target, where) for _, target, where in found if where}
    assert ("realtime_nb.widget", "Recording.play") in lazy
    assert any(t.startswith("realtime_nb.debugging") for t, _ in lazy)


def test_conveniences_are_still_there() -> None:
    """A convenience that no longer exists should leave the list too."""
    present = {
        (_module_name(p).split(".", 1)[1], where)
        for p in PKG.rglob("*.py")
        if _layer(_module_name(p)) in RANKS
        for _, _, where in _imports(p)
    }
    missing = [key for key in CONVENIENCES if key not in present]
    assert not missing, missing


def test_tests_read_nothing_outside_the_repository() -> None:
    """A user's clone has nothing beside it: the tests' data lives in tests/fixtures."""
    outside = re.compile(r"""\.\./shared|["']shared["']|parents\[\d\]\.parent""")
    offenders = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in sorted((REPO / "tests").rglob("*.py"))
        if path.name != "test_layers.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if outside.search(line)
    ]
    assert not offenders, "\n".join(offenders)
