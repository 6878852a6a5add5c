"""The Cloud Storage calls the product makes itself, through google-cloud-storage: the small
whole objects of the commit protocol (run manifests, stats, `_SUCCESS`), listing a folder,
deleting objects and a run's staging folder.

Data files stay on Beam's FileSystems (`transforms/storage/files.py`), which streams them. These are
the calls where Beam's file abstraction is wrong or wasteful on GCS: a folder there is only a
name prefix, so `FileSystems.exists` never finds one (a run's `_staging/<run_id>/` was never
removed), and a two-line marker needs no resumable upload.

The client follows the environment like any Google client: application default credentials,
or anonymously the server that `STORAGE_EMULATOR_HOST` names.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections.abc import Iterable, Iterator

from google.api_core.exceptions import NotFound
from google.cloud import storage

SCHEME = "gs://"
# The most calls GCS takes in one batch request.
BATCH_SIZE = 100

_lock = threading.Lock()
_clients: dict[tuple[int, str | None], storage.Client] = {}


def is_gcs(path: str) -> bool:
    return path.startswith(SCHEME)


def split(uri: str) -> tuple[str, str]:
    """gs://bucket/some/name -> ("bucket", "some/name")."""
    bucket, _, name = uri.removeprefix(SCHEME).partition("/")
    if not is_gcs(uri) or not bucket:
        raise ValueError(f"not a gs://bucket/... URI: {uri!r}")
    return bucket, name


def client() -> storage.Client:
    """This process's client, made on first use. One is safe to share between threads, not
    across a fork, and a new one follows a changed `STORAGE_EMULATOR_HOST`."""
    key = (os.getpid(), os.environ.get("STORAGE_EMULATOR_HOST"))
    with _lock:
        if key not in _clients:
            # Objects need no project; without `None` the client refuses to start where no
            # default project is configured.
            _clients[key] = storage.Client(project=None)
        return _clients[key]


def write_bytes(uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    """Write one whole object (it appears complete or not at all)."""
    bucket, name = split(uri)
    client().bucket(bucket).blob(name).upload_from_string(data, content_type=content_type)


def read_bytes(uri: str) -> bytes:
    bucket, name = split(uri)
    data: bytes = client().bucket(bucket).blob(name).download_as_bytes()
    return data


def fingerprint(uri: str) -> str:
    """What identifies an object's content: its CRC32C (the store computes it on every
    write), else its generation (which any rewrite changes)."""
    bucket, name = split(uri)
    blob = client().bucket(bucket).get_blob(name)
    if blob is None:
        raise FileNotFoundError(uri)
    return f"crc32c:{blob.crc32c}" if blob.crc32c else f"generation:{blob.generation}"


def exists(uri: str) -> bool:
    """Whether an object of exactly this name exists (a folder never does: see delete_prefix)."""
    bucket, name = split(uri)
    return bool(client().bucket(bucket).blob(name).exists())


def _folder(directory: str) -> tuple[str, str]:
    """(bucket, name prefix ending in "/") of a folder: without the "/", folder `run1` would
    also hold `run10/...`."""
    return split(directory.rstrip("/") + "/")


def literal_prefix(pattern: str) -> str:
    """The start of a glob before its first wildcard: no name without it can match. Listing by
    it asks GCS for the few objects that can match, not a whole folder (rejected/ holds a
    streaming run's pane files beside each batch input's own)."""
    cut = next((i for i, char in enumerate(pattern) if char in "*?["), len(pattern))
    return pattern[:cut] if "/" not in pattern[:cut] else ""


def list_files(directory: str, pattern: str) -> list[str]:
    """gs:// URIs of the objects directly in a folder whose names match a glob, sorted; none
    when the folder does not exist."""
    bucket, prefix = _folder(directory)
    blobs = client().list_blobs(bucket, prefix=prefix + literal_prefix(pattern), delimiter="/")
    return sorted(
        f"{SCHEME}{bucket}/{blob.name}"
        for blob in blobs
        if fnmatch.fnmatchcase(blob.name[len(prefix) :], pattern)
    )


def list_versions(directory: str, pattern: str) -> dict[str, tuple[int, int]]:
    """{gs:// URI: (size, generation)} of the objects directly in a folder matching a glob:
    an object rewritten under the same name has a new generation."""
    bucket, prefix = _folder(directory)
    blobs = client().list_blobs(bucket, prefix=prefix + literal_prefix(pattern), delimiter="/")
    return {
        f"{SCHEME}{bucket}/{blob.name}": (int(blob.size or 0), int(blob.generation or 0))
        for blob in blobs
        if fnmatch.fnmatchcase(blob.name[len(prefix) :], pattern)
    }


def list_tree(directory: str, pattern: str) -> list[str]:
    """gs:// URIs of the objects anywhere under a folder whose own names match a glob."""
    bucket, prefix = _folder(directory)
    return sorted(
        f"{SCHEME}{bucket}/{blob.name}"
        for blob in client().list_blobs(bucket, prefix=prefix)
        if fnmatch.fnmatchcase(blob.name.rsplit("/", 1)[-1], pattern)
    )


def _chunks(names: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(names), BATCH_SIZE):
        yield names[start : start + BATCH_SIZE]


def _delete_names(bucket_name: str, names: list[str]) -> None:
    """Delete objects of one bucket, up to BATCH_SIZE per request."""
    gcs = client()
    bucket = gcs.bucket(bucket_name)
    for chunk in _chunks(names):
        try:
            with gcs.batch():
                for name in chunk:
                    bucket.delete_blob(name)
        except NotFound:
            # A batch reports only its last failure. Some objects were gone already (a retried
            # step deleting again): delete the chunk one by one, so that any other failure
            # still surfaces and missing objects are skipped.
            bucket.delete_blobs(chunk, on_error=lambda _blob: None)


def delete(uris: Iterable[str]) -> None:
    """Delete objects; one that is already gone is not an error."""
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        bucket, name = split(uri)
        by_bucket.setdefault(bucket, []).append(name)
    for bucket, names in sorted(by_bucket.items()):
        _delete_names(bucket, names)


def delete_prefix(directory: str) -> int:
    """Delete every object under a folder (nothing if there is none); returns how many."""
    bucket, prefix = _folder(directory)
    names = [blob.name for blob in client().list_blobs(bucket, prefix=prefix)]
    _delete_names(bucket, names)
    return len(names)
