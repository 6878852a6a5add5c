"""Where everything lands under one output root (contract.md): the only place paths are built.

The root may be a local folder or `gs://bucket/prefix`; paths are joined with "/" so the same
strings work for both, through Beam's FileSystems.
"""

from __future__ import annotations

import re
import uuid
from datetime import date

from schemas.enums import MONTHLY_AGGREGATES
from schemas.run import RUN_ID_PATTERN

PAYMENTS = "payments"
REJECTED = "rejected"
AGGREGATES = "aggregates"
RUNS = "runs"
# Staged files live outside every dataset folder: a reader globbing payments/**/*.parquet can
# never see a half-written file.
STAGING = "_staging"
SUCCESS_MARKER = "_SUCCESS"
MANIFEST = "manifest.json"
# One writer at a time per root (transforms/storage/lease.py): the lease, outside every
# dataset folder, and the mark left in a run's folder when another writer took its expired
# lease over.
LEASE_DIR = "_lease"
LEASE_FILE = "writer.json"
LEASE_REVOKED = "_LEASE_REVOKED.json"

# The aggregate kinds a batch run versions per month (schemas/enums.py names every kind).
AGGREGATE_KINDS: tuple[str, ...] = tuple(kind.value for kind in MONTHLY_AGGREGATES)
_PART = re.compile(r"part-(?P<key>[0-9a-f]+)-(?P<index>\d{5})\.parquet$")


def join(root: str, *parts: str) -> str:
    """Join path parts under a root with "/" (valid for local paths and gs:// URIs)."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])


def partition_path(channel: str, event_date: date) -> str:
    """Hive partition of a (channel, Bahrain day), relative to a dataset folder."""
    return f"channel={channel}/event_date={event_date.isoformat()}"


def payments_dir(root: str, channel: str, event_date: date) -> str:
    return join(root, PAYMENTS, partition_path(channel, event_date))


def channel_dir(root: str, channel: str) -> str:
    """The payments folder of every day of a channel."""
    return join(root, PAYMENTS, f"channel={channel}")


def event_date_of(path: str) -> date:
    """The Bahrain day of a payments file, from its partition folder (`partition_path`)."""
    folder = path.rstrip("/").rsplit("/", 2)[-2]
    return date.fromisoformat(folder.removeprefix("event_date="))


def aggregate_dir(root: str, kind: str, month: str) -> str:
    """The folder of a kind's aggregates for a month ("YYYY-MM")."""
    if kind not in AGGREGATE_KINDS:
        raise ValueError(f"unknown aggregate kind {kind!r}")
    return join(root, AGGREGATES, kind, f"month={month}")


# Before versions, a month had one file of this name; it is read as version 0.
UNVERSIONED_AGGREGATE = "aggregate.parquet"
_AGGREGATE_VERSION = re.compile(
    rf"aggregate-v(?P<version>\d{{6}})-(?P<run>{RUN_ID_PATTERN})\.parquet$"
)


def aggregate_path(root: str, kind: str, month: str, version: int, run_id: str) -> str:
    """One version of a month's aggregate file, as the run `run_id` wrote it.

    A month's file is never rewritten in place: each run that changes the month writes the
    next version (its whole month) under a new name, and the version readers of committed runs
    see is the newest whose run committed (`transforms.storage.committed`). A run killed before its
    commit leaves a version no committed reader takes, and the earlier one is still there.
    """
    return join(aggregate_dir(root, kind, month), f"aggregate-v{version:06d}-{run_id}.parquet")


def aggregate_version_of(file_name: str) -> tuple[int, str | None] | None:
    """(version, run id) of an aggregate file name; (0, None) for the unversioned name of
    earlier releases; None for a file no batch run named."""
    if file_name.endswith("/" + UNVERSIONED_AGGREGATE) or file_name == UNVERSIONED_AGGREGATE:
        return 0, None
    match = _AGGREGATE_VERSION.search(file_name)
    return (int(match.group("version")), match.group("run")) if match else None


def success_marker(root: str, run_id: str) -> str:
    return join(run_dir(root, run_id), SUCCESS_MARKER)


def part_name(input_key: str, index: int) -> str:
    """Data file name. It is derived from the input, so re-running the same input overwrites
    the same files instead of adding copies."""
    return f"part-{input_key}-{index:05d}.parquet"


def part_glob(input_key: str) -> str:
    """A glob of every data file `part_name` names for this input."""
    return f"part-{input_key}-*.parquet"


def input_key_of(file_name: str) -> str | None:
    """The input key a data file was written for, or None for a file this product did not name."""
    match = _PART.search(file_name)
    return match.group("key") if match else None


_PANE_PART = re.compile(rf"part-(?P<run>{RUN_ID_PATTERN})-[0-9a-f]{{12}}\.parquet$")


def pane_part_name(run_id: str) -> str:
    """Data file name of one streaming pane: unique, and naming the run that wrote it."""
    return f"part-{run_id}-{uuid.uuid4().hex[:12]}.parquet"


def rolled_part_name(run_id: str, opened: float) -> str:
    """Data file name of a streaming run's payments file of a partition, which takes the
    panes of the run for up to an hour (`transforms.streaming.rolling`): a pane file name
    (`run_of_pane_part` reads its run) whose first 8 hex digits are the second it was opened
    (`rolled_opened_at`), so the writer tells from a listing alone whether it is still open."""
    return f"part-{run_id}-{int(opened):08x}{uuid.uuid4().hex[:4]}.parquet"


def rolled_opened_at(file_name: str) -> int | None:
    """The second (epoch) a rolled payments file was opened, from its name; None for a name
    that is no pane file. Meaningful only for files `rolled_part_name` named: the writer asks
    it of its own run's files alone."""
    match = _PANE_PART.search(file_name)
    return int(file_name[match.end("run") + 1 : match.end("run") + 9], 16) if match else None


def pane_stats_path(root: str, run_id: str) -> str:
    """A new stats file of a streaming run: the run's stats are the sum over them all."""
    return join(run_dir(root, run_id), f"stats-{uuid.uuid4().hex[:12]}.json")


def run_of_pane_part(file_name: str) -> str | None:
    """The streaming run that wrote a data file, or None for a file no streaming run named."""
    match = _PANE_PART.search(file_name)
    return match.group("run") if match else None


_COMPACTED_PART = re.compile(rf"compact-(?P<run>{RUN_ID_PATTERN})-\d{{5}}\.parquet$")


def compacted_part_name(run_id: str, index: int) -> str:
    """Data file name of a partition rewritten by the compaction run `run_id`: it names the
    run, so a reader can tell whether that run committed (`transforms.storage.committed`),
    and matches neither a batch part (`part_name`) nor a streaming pane (`pane_part_name`)."""
    return f"compact-{run_id}-{index:05d}.parquet"


def run_of_compacted_part(file_name: str) -> str | None:
    """The compaction run that wrote a data file, or None for a file no compaction named."""
    match = _COMPACTED_PART.search(file_name)
    return match.group("run") if match else None


def partition_of(path: str) -> tuple[str, date]:
    """(channel, Bahrain day) of a payments file, from its partition folders."""
    channel_folder, day_folder = path.rstrip("/").rsplit("/", 3)[-3:-1]
    return channel_folder.removeprefix("channel="), date.fromisoformat(
        day_folder.removeprefix("event_date=")
    )


def root_of_partition(directory: str) -> str:
    """The output root of a payments partition folder (`payments_dir`)."""
    return directory.rstrip("/").rsplit("/", 3)[0]


def rejected_dir(root: str) -> str:
    return join(root, REJECTED)


def rejected_path(root: str, input_key: str, index: int = 0) -> str:
    """The input's `index`-th rejected file (a batch run writes as many as its rows need)."""
    return join(rejected_dir(root), part_name(input_key, index))


def is_rejected_file_of(root: str, input_key: str, path: str) -> bool:
    """Whether `path` is one of the rejected files a batch run of this input writes."""
    directory, _, name = path.rpartition("/")
    return directory == rejected_dir(root) and input_key_of(name) == input_key


def run_dir(root: str, run_id: str) -> str:
    return join(root, RUNS, run_id)


def staging_dir(root: str, run_id: str) -> str:
    return join(root, STAGING, run_id)


def lease_dir(root: str) -> str:
    return join(root, LEASE_DIR)


def lease_path(root: str) -> str:
    """The writer lease of an output root: who may publish under it now."""
    return join(root, LEASE_DIR, LEASE_FILE)


def lease_revoked_marker(root: str, run_id: str) -> str:
    """Left for a run whose lease another writer took over: that run may no longer publish."""
    return join(run_dir(root, run_id), LEASE_REVOKED)


def fragment_path(root: str, run_id: str, channel: str, event_date: str, name: str) -> str:
    """A run's intermediate Arrow file of one block's rows for one partition (batch only)."""
    return join(
        staging_dir(root, run_id),
        "fragments",
        f"channel={channel}/event_date={event_date}",
        f"{name}.arrows",
    )


def fragment_index_path(root: str, run_id: str, channel: str, name: str) -> str:
    """A run's intermediate Arrow file of the fingerprints of the fragments one bundle wrote for
    one channel (batch only): what the event index reads instead of the fragments."""
    return join(staging_dir(root, run_id), "fragment-index", f"channel={channel}", f"{name}.arrows")


def rejected_fragment_path(root: str, run_id: str, name: str) -> str:
    """A run's intermediate Arrow file of one block's rejected rows (batch only)."""
    return join(staging_dir(root, run_id), "rejected-fragments", f"{name}.arrows")


def staged(root: str, run_id: str, final_path: str) -> str:
    """Staging twin of a final path: same relative path, under this run's staging folder."""
    relative = final_path[len(root.rstrip("/")) + 1 :]
    return join(staging_dir(root, run_id), relative)
