"""Local file operations of the commit protocol: moves that finish what a retry started."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from apache_beam.io.filesystem import BeamIOError

from transforms.storage.files import fingerprint, list_files, list_versions, replace


def _staged(tmp_path: Path, *names: str) -> tuple[list[str], list[str]]:
    staged, final = [], []
    for name in names:
        (tmp_path / "staging").mkdir(exist_ok=True)
        (tmp_path / "staging" / name).write_text(name)
        staged.append(str(tmp_path / "staging" / name))
        final.append(str(tmp_path / "out" / "part" / name))
    return staged, final


def test_moving_staged_files_puts_each_at_its_final_name(tmp_path: Path) -> None:
    staged, final = _staged(tmp_path, "a", "b")
    replace(staged, final)
    assert [Path(f).read_text() for f in final] == ["a", "b"]
    assert not any(Path(s).exists() for s in staged)


def test_moving_again_after_a_partial_move_finishes_it(tmp_path: Path) -> None:
    staged, final = _staged(tmp_path, "a", "b")
    replace(staged[:1], final[:1])  # the first attempt moved one file, then failed
    replace(staged, final)
    assert [Path(f).read_text() for f in final] == ["a", "b"]


def test_moving_a_file_that_is_neither_staged_nor_published_is_an_error(tmp_path: Path) -> None:
    staged, final = _staged(tmp_path, "a")
    Path(staged[0]).unlink()
    with pytest.raises(BeamIOError):
        replace(staged, final)


def test_a_local_files_fingerprint_follows_its_content_not_its_size(tmp_path: Path) -> None:
    first, again, other = (tmp_path / name for name in ("a", "b", "c"))
    first.write_bytes(b'{"n": 1}\n')
    again.write_bytes(b'{"n": 1}\n')
    other.write_bytes(b'{"n": 2}\n')
    assert fingerprint(str(first)) == fingerprint(str(again)) != fingerprint(str(other))


def test_a_local_file_rewritten_under_its_name_is_listed_with_a_new_version(
    tmp_path: Path,
) -> None:
    path = tmp_path / "part-a-00000.parquet"
    path.write_bytes(b"one")
    (tmp_path / "notes.txt").write_bytes(b"x")
    [(listed, (size, _version))] = list_versions(str(tmp_path)).items()
    os.utime(path, ns=(0, 0))
    before = list_versions(str(tmp_path))[str(path)][1]
    path.write_bytes(b"two")
    assert listed == str(path)
    assert size == 3
    assert list_versions(str(tmp_path))[str(path)][1] != before


def test_listing_the_versions_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert list_versions(str(tmp_path / "nothing")) == {}


def test_a_local_listing_holds_the_files_of_the_folder_itself_that_match_sorted(
    tmp_path: Path,
) -> None:
    for name in ("b.parquet", "a.parquet", ".hidden.parquet", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "deeper").mkdir()
    (tmp_path / "deeper" / "c.parquet").write_bytes(b"x")
    (tmp_path / "folder.parquet").mkdir()
    expected = [str(tmp_path / n) for n in (".hidden.parquet", "a.parquet", "b.parquet")]
    assert list_files(str(tmp_path)) == expected


def test_listing_a_missing_local_folder_is_empty(tmp_path: Path) -> None:
    assert list_files(str(tmp_path / "nothing")) == []
