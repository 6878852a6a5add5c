"""transforms.storage.files on gs://, against a real GCS emulator server: the commit protocol's
small objects, listings and deletes through google-cloud-storage, data files through Beam,
everything checked with a client of the test's own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import layout
from schemas.run import Run
from tests.emulators import GcsEmulator, gcs_emulator, object_names, use_gcs_emulator
from tests.samples import run_of
from transforms.batch.commit import commit_run
from transforms.storage import gcs
from transforms.storage.committed import committed_files
from transforms.storage.files import (
    delete,
    delete_tree,
    exists,
    fingerprint,
    list_files,
    list_tree,
    list_versions,
    read_text,
    replace,
    write_parquet,
    write_text,
)
from transforms.storage.partitions import StagedFile

BUCKET = "storage-tests"


@pytest.fixture(scope="module")
def emulator() -> Iterator[GcsEmulator]:
    with gcs_emulator(BUCKET) as running:
        yield running


@pytest.fixture
def root(emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh gs:// folder of this test's own, with every client pointed at the emulator."""
    use_gcs_emulator(emulator, monkeypatch)
    return emulator.url(uuid.uuid4().hex[:12])


def _put(emulator: GcsEmulator, uri: str, data: bytes = b"x") -> None:
    _, name = gcs.split(uri)
    emulator.client().bucket(emulator.bucket).blob(name).upload_from_string(data)


def _get(emulator: GcsEmulator, uri: str) -> bytes:
    _, name = gcs.split(uri)
    data: bytes = emulator.client().bucket(emulator.bucket).blob(name).download_as_bytes()
    return data


def test_a_uri_without_a_bucket_is_refused() -> None:
    with pytest.raises(ValueError, match="not a gs://bucket"):
        gcs.split("gs:///runs/manifest.json")


def test_a_local_path_is_not_taken_for_a_gcs_object() -> None:
    with pytest.raises(ValueError, match="not a gs://bucket"):
        gcs.split("/tmp/out/runs/manifest.json")


def test_a_manifest_written_to_gcs_reads_back_whole(emulator: GcsEmulator, root: str) -> None:
    text = json.dumps({"run_id": "r1", "reconciles": True}, indent=2)
    write_text(layout.join(root, "runs/r1/manifest.json"), text)
    assert _get(emulator, layout.join(root, "runs/r1/manifest.json")).decode() == text
    assert read_text(layout.join(root, "runs/r1/manifest.json")) == text


def test_a_manifest_on_gcs_is_stored_as_json(emulator: GcsEmulator, root: str) -> None:
    write_text(layout.join(root, "runs/r1/manifest.json"), "{}")
    _, name = gcs.split(layout.join(root, "runs/r1/manifest.json"))
    blob = emulator.client().bucket(emulator.bucket).get_blob(name)
    assert blob.content_type == "application/json"


def test_an_empty_success_marker_is_written_to_gcs(emulator: GcsEmulator, root: str) -> None:
    write_text(layout.join(root, "runs/r1/_SUCCESS"), "")
    assert object_names(emulator.client(), root) == ["runs/r1/_SUCCESS"]


def test_exists_tells_a_gcs_object_from_a_missing_one(emulator: GcsEmulator, root: str) -> None:
    _put(emulator, layout.join(root, "rejected/part-a-00000.parquet"))
    assert exists(layout.join(root, "rejected/part-a-00000.parquet"))
    assert not exists(layout.join(root, "rejected/part-b-00000.parquet"))


def test_listing_a_gcs_folder_returns_its_matching_files_and_not_those_below_it(
    emulator: GcsEmulator, root: str
) -> None:
    partition = layout.join(root, "payments/channel=portal/event_date=2017-06-30")
    for name in ("part-b-00000.parquet", "part-a-00000.parquet", "notes.txt", "x/y.parquet"):
        _put(emulator, layout.join(partition, name))
    assert list_files(partition) == [
        layout.join(partition, "part-a-00000.parquet"),
        layout.join(partition, "part-b-00000.parquet"),
    ]


def test_listing_a_gcs_folder_by_a_glob_with_a_literal_start_finds_what_it_matches(
    emulator: GcsEmulator, root: str
) -> None:
    rejected = layout.rejected_dir(root)
    for name in ("part-ab-00000.parquet", "part-ab-00001.parquet", "part-abc-00000.parquet"):
        _put(emulator, layout.join(rejected, name))
    _put(emulator, layout.join(rejected, "part-ab-00002.parquet/nested.parquet"))
    assert list_files(rejected, layout.part_glob("ab")) == [
        layout.join(rejected, "part-ab-00000.parquet"),
        layout.join(rejected, "part-ab-00001.parquet"),
    ]


@pytest.mark.parametrize(
    ("pattern", "start"),
    [
        ("part-ab-*.parquet", "part-ab-"),
        ("*.parquet", ""),
        ("a?c", "a"),
        ("[ab]x", ""),
        ("x/*.parquet", ""),
        ("plain.json", "plain.json"),
    ],
)
def test_a_listing_asks_gcs_only_for_names_starting_as_its_glob_does(
    pattern: str, start: str
) -> None:
    assert gcs.literal_prefix(pattern) == start


def test_listing_a_gcs_folder_leaves_out_a_sibling_whose_name_extends_it(
    emulator: GcsEmulator, root: str
) -> None:
    _put(emulator, layout.join(root, "payments/event_date=2017-06-3/part-a-00000.parquet"))
    _put(emulator, layout.join(root, "payments/event_date=2017-06-30/part-b-00000.parquet"))
    assert list_files(layout.join(root, "payments/event_date=2017-06-3")) == [
        layout.join(root, "payments/event_date=2017-06-3/part-a-00000.parquet")
    ]


def test_a_gcs_object_rewritten_under_its_name_is_listed_with_a_new_version(
    emulator: GcsEmulator, root: str
) -> None:
    partition = layout.join(root, "payments/channel=portal/event_date=2017-06-30")
    path = layout.join(partition, "part-a-00000.parquet")
    _put(emulator, path, b"one")
    _put(emulator, layout.join(partition, "notes.txt"))
    [(listed, (size, version))] = list_versions(partition).items()
    _put(emulator, path, b"two")
    assert listed == path
    assert size == 3
    assert list_versions(partition)[path][1] != version


@pytest.mark.usefixtures("emulator")
def test_listing_a_gcs_folder_that_does_not_exist_is_empty(root: str) -> None:
    assert list_files(layout.join(root, "payments/channel=kiosk")) == []


def test_deleting_gcs_objects_skips_those_already_gone(emulator: GcsEmulator, root: str) -> None:
    _put(emulator, layout.join(root, "a.parquet"))
    _put(emulator, layout.join(root, "b.parquet"))
    delete([layout.join(root, "a.parquet"), layout.join(root, "gone.parquet")])
    assert object_names(emulator.client(), root) == ["b.parquet"]


def test_deleting_more_gcs_objects_than_one_batch_takes_deletes_them_all(
    emulator: GcsEmulator, root: str
) -> None:
    uris = [layout.join(root, f"f{n:03d}") for n in range(gcs.BATCH_SIZE + 5)]
    for uri in uris:
        _put(emulator, uri)
    delete(uris)
    assert object_names(emulator.client(), root) == []


def test_deleting_a_gcs_folder_removes_everything_under_it_and_nothing_beside_it(
    emulator: GcsEmulator, root: str
) -> None:
    for name in ("_staging/run1/fragments/a.arrows", "_staging/run1/payments/p.parquet"):
        _put(emulator, layout.join(root, name))
    _put(emulator, layout.join(root, "_staging/run10/fragments/b.arrows"))
    delete_tree(layout.join(root, "_staging/run1"))
    assert object_names(emulator.client(), root) == ["_staging/run10/fragments/b.arrows"]


@pytest.mark.usefixtures("emulator")
def test_deleting_a_gcs_folder_that_does_not_exist_is_not_an_error(root: str) -> None:
    delete_tree(layout.join(root, "_staging/never-ran"))


def test_replacing_on_gcs_moves_staged_objects_to_their_final_names(
    emulator: GcsEmulator, root: str
) -> None:
    staged = layout.join(root, "_staging/r1/rejected/part-a-00000.parquet")
    final = layout.join(root, "rejected/part-a-00000.parquet")
    _put(emulator, staged, b"new")
    _put(emulator, final, b"old")
    replace([staged], [final])
    assert _get(emulator, final) == b"new"
    assert object_names(emulator.client(), root) == ["rejected/part-a-00000.parquet"]


def test_replacing_on_gcs_again_after_a_partial_move_finishes_it(
    emulator: GcsEmulator, root: str
) -> None:
    staged = [layout.join(root, f"_staging/r1/rejected/part-{n}-00000.parquet") for n in "ab"]
    final = [layout.join(root, f"rejected/part-{n}-00000.parquet") for n in "ab"]
    for path in staged:
        _put(emulator, path, path.encode())
    replace(staged[:1], final[:1])  # a first attempt that moved one object, then failed
    replace(staged, final)
    assert [_get(emulator, f) for f in final] == [s.encode() for s in staged]
    assert object_names(emulator.client(), root) == [
        "rejected/part-a-00000.parquet",
        "rejected/part-b-00000.parquet",
    ]


def test_parquet_written_to_gcs_is_read_back_by_pyarrows_own_gcs_client(
    emulator: GcsEmulator, root: str
) -> None:
    table = pa.table({"event_id": ["e1", "e2"], "amount": [1, 2]})
    write_parquet(table, layout.join(root, "payments/part-a-00000.parquet"))
    path = layout.join(root, "payments/part-a-00000.parquet").removeprefix("gs://")
    assert pq.read_table(path, filesystem=emulator.arrow_filesystem()).equals(table)


def _info(root: str) -> Run:
    return run_of("r1", root, input_key="abc", inputs=(("in.jsonl", 3),))


def _staged_run(emulator: GcsEmulator, root: str) -> list[StagedFile]:
    """A run that staged one payments file and left a fragment behind."""
    final = layout.join(
        root, "payments/channel=portal/event_date=2017-06-30/part-abc-00000.parquet"
    )
    staged = layout.staged(root, "r1", final)
    _put(emulator, staged, b"rows")
    _put(emulator, layout.fragment_path(root, "r1", "portal", "2017-06-30", "f1"), b"frag")
    return [StagedFile(staged, final)]


STATS: dict[str, Any] = {"read:portal": 1, "accepted:portal": 1}


def test_committing_on_gcs_publishes_the_staged_file_then_manifest_and_marker(
    emulator: GcsEmulator, root: str
) -> None:
    commit_run(_info(root), STATS, _staged_run(emulator, root), [])
    assert object_names(emulator.client(), root) == [
        "payments/channel=portal/event_date=2017-06-30/part-abc-00000.parquet",
        "runs/r1/_SUCCESS",
        "runs/r1/manifest.json",
    ]
    manifest = json.loads(_get(emulator, layout.join(root, "runs/r1/manifest.json")))
    assert manifest["reconciles"]


def test_committing_on_gcs_removes_the_runs_staging_folder(
    emulator: GcsEmulator, root: str
) -> None:
    commit_run(_info(root), STATS, _staged_run(emulator, root), [])
    assert object_names(emulator.client(), layout.join(root, "_staging")) == []


def test_committing_on_gcs_removes_the_files_the_input_no_longer_writes(
    emulator: GcsEmulator, root: str
) -> None:
    superseded = layout.join(
        root, "payments/channel=portal/event_date=2017-06-29/part-abc-00000.parquet"
    )
    old_rejected = layout.rejected_path(root, "abc")
    _put(emulator, superseded)
    _put(emulator, old_rejected)
    manifest = commit_run(_info(root), STATS, _staged_run(emulator, root), [superseded])
    assert not exists(superseded)
    assert not exists(old_rejected)
    assert manifest["files_removed"] == sorted([superseded, old_rejected])


def test_listing_a_tree_finds_matching_files_at_any_depth(emulator: GcsEmulator, root: str) -> None:
    for name in ["a/x.parquet", "a/b/y.parquet", "a/b/z.json", "ab/w.parquet"]:
        _put(emulator, f"{root}/{name}")
    assert list_tree(f"{root}/a") == [f"{root}/a/b/y.parquet", f"{root}/a/x.parquet"]


def test_committed_files_on_gcs_leave_out_what_no_committed_manifest_lists(
    emulator: GcsEmulator, root: str
) -> None:
    kept = f"{root}/payments/channel=portal/event_date=2017-06-30/part-0123abcd-00000.parquet"
    orphan = f"{root}/payments/channel=portal/event_date=2017-06-30/part-feedface-00000.parquet"
    for uri in (kept, orphan):
        _put(emulator, uri)
    manifest = {"output_root": root, "files_written": [kept]}
    _put(emulator, f"{root}/runs/r1/manifest.json", json.dumps(manifest).encode())
    _put(emulator, f"{root}/runs/r1/_SUCCESS", b"")
    assert committed_files(root) == [kept]


def test_an_objects_fingerprint_follows_its_content_not_its_size(
    emulator: GcsEmulator, root: str
) -> None:
    first, again, other = f"{root}/a.jsonl", f"{root}/b.jsonl", f"{root}/c.jsonl"
    _put(emulator, first, b'{"n": 1}\n')
    _put(emulator, again, b'{"n": 1}\n')
    _put(emulator, other, b'{"n": 2}\n')
    assert fingerprint(first) == fingerprint(again) != fingerprint(other)
