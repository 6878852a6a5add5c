"""Fixtures shared by the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.samples import PORTAL_EVENT


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A landing file of one valid portal event, `in/portal.jsonl` under tmp_path."""
    path = tmp_path / "in" / "portal.jsonl"
    path.parent.mkdir()
    path.write_bytes(PORTAL_EVENT + b"\n")
    return path
