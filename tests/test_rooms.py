"""The rooms of the code and what each may import (docs/ARCHITECTURE.md): a module that
reaches into a room it should not is a failing test, not a review comment."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# room -> the rooms its modules may import from (its own included)
ALLOWED = {
    "schemas": {"schemas"},
    "transforms.core": {"schemas", "transforms.core"},
    "transforms.dedup": {"schemas", "transforms.core", "transforms.dedup"},
    "transforms.storage": {"schemas", "transforms.core", "transforms.dedup", "transforms.storage"},
    "transforms.ingest": {"schemas", "transforms.core", "transforms.dedup", "transforms.storage"},
    "transforms.batch": {
        "schemas",
        "transforms.core",
        "transforms.dedup",
        "transforms.storage",
        "transforms.ingest",
        "transforms.batch",
    },
    "transforms.streaming": {
        "schemas",
        "transforms.core",
        "transforms.dedup",
        "transforms.storage",
        "transforms.ingest",
        "transforms.streaming",
    },
}
OURS = ("schemas", "transforms", "pipelines", "tools")


def _room(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "transforms" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def _modules(room: str) -> list[Path]:
    path = ROOT / Path(*room.split("."))
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in OURS}


@pytest.mark.parametrize("room", list(ALLOWED))
def test_a_room_imports_only_from_the_rooms_below_it(room: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _modules(room)
        for name in _imports(path)
        if _room(name) not in ALLOWED[room] and name not in ("transforms",)
    }
    assert not wrong, sorted(wrong)


def test_the_core_runs_without_beam() -> None:
    """The pure rooms never load Beam: they are tested, benchmarked and reused without it."""
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for room in ("transforms.core", "transforms.dedup")
        for path in _modules(room)
        if path.name != "__init__.py"
    ]
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint('apache_beam' in sys.modules)"
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert ran.stdout.strip() == "False"
