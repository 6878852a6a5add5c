"""The documents a newcomer reads agree with the code and with the team's contract."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEAM_CONTRACT = ROOT.parent / "shared" / "contract.md"


@pytest.mark.skipif(not TEAM_CONTRACT.exists(), reason="no team contract beside this clone")
def test_the_repositorys_contract_is_the_teams_contract() -> None:
    assert (ROOT / "docs" / "contract.md").read_text() == TEAM_CONTRACT.read_text()


def test_the_architecture_page_names_every_room_of_transforms() -> None:
    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    rooms = [p.name for p in (ROOT / "transforms").iterdir() if (p / "__init__.py").exists()]
    assert rooms
    for room in rooms:
        assert f"  {room}/" in page, room
