"""One writer at a time on an output root: a lease object with a heartbeat.

Two writers publishing under one root at once lose data silently: a batch run reads the
partitions it touches to leave out events already written and to recompute their aggregates,
so anything another writer publishes between that read and its commit is written twice or
dropped from the aggregates (last writer wins). Every writer therefore publishes only while
it holds `<root>/_lease/writer.json` (`schemas.layout.lease_path`):

- **Taking it** is one atomic create: locally `O_CREAT | O_EXCL`, on Cloud Storage an upload
  with `if_generation_match=0`. The object says who holds it (host, pid, run id, pipeline),
  since when, its last heartbeat and when it expires.
- **Holding it**: a daemon thread renews the heartbeat every `ttl / 4` seconds (30 s of the
  default 120), each time only if the object is still the one it last wrote (locally compared
  under a lock, then replaced by a rename; on GCS `if_generation_match=<its generation>`). A
  renewal that finds another holder marks the lease lost; the commit then refuses.
- **Refusing**: a second writer finds the object there and is refused with a one-line
  `OutputBusy` naming the holder, or polls until it is free if it was given a wait. A streaming
  pane holds the lease for well under a second, so it is always waited for a while.
- **Taking over**: a lease whose heartbeat expired, or whose holder ran on this machine and is
  gone (a killed run), is replaced atomically (a rename after re-checking under the lock; on
  GCS `if_generation_match=<the expired generation>`). A batch holder is marked first as having
  lost it (`runs/<run_id>/_LEASE_REVOKED.json`: a straggler of it, say a retried commit step,
  refuses to publish), and its `_staging/<run_id>/` is deleted afterwards.
- **Checking from elsewhere**: a batch run's commit step runs inside the pipeline, possibly in
  another process or machine than the launcher that holds the lease, so `commit_guard` checks
  the stored object against the run id (and expiry) rather than an object in memory.

Expiry compares the holder's clock (it writes `expires_at`) with the reader's: clocks must
agree to well within the TTL, which NTP-synchronised machines do by orders of magnitude.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Protocol

from google.api_core.exceptions import NotFound, PreconditionFailed

from schemas import layout
from transforms.storage import gcs
from transforms.storage.files import delete_tree, exists, read_text, write_text

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 120.0
# The heartbeat renews the lease this many times per TTL: three renewals may fail before it
# expires.
RENEWALS_PER_TTL = 4
# A streaming pane holds the lease for well under a second: whoever finds one holding it
# waits this long for it, whatever its own wait.
BRIEF_HOLD_WAIT_SECONDS = 60.0
# How long a commit step that has to take the lease itself (its launcher did not hold one:
# a template launch) waits for it before failing, which the runner retries.
COMMIT_WAIT_SECONDS = 600.0
# How long a streaming pane waits for the lease before it logs who holds it and waits again.
PANE_WAIT_SECONDS = 30.0
STREAMING = "streaming"
BATCH = "batch"
# Compaction (pipelines/compact.py) holds the lease like a batch run: for its whole duration,
# and a killed one is marked revoked and its staging deleted like a batch run's.
COMPACT = "compact"
_RUN_PIPELINES = (BATCH, COMPACT)

_SAFE_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class LeaseError(RuntimeError):
    """A writer may not publish under this output root now (one line, for the operator)."""


class OutputBusy(LeaseError):
    """Another writer holds the output root's lease."""


class LeaseLost(LeaseError):
    """This run held the lease and does not any more: it must not publish."""


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _machine() -> str:
    """This boot of this machine's process namespace: where a pid means one process. Empty
    where it cannot be told (then only expiry frees a lease of a dead process)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            boot_id = boot.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return f"{boot_id}/{namespace}"


def _running(pid: int) -> bool:
    """Whether a process of this machine is alive (a zombie, killed but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


@dataclass(frozen=True)
class Holder:
    """What the lease object says: who holds it, since when, until when."""

    run_id: str
    pipeline: str
    host: str
    pid: int
    machine: str
    token: str
    ttl_seconds: float
    acquired_at: float
    heartbeat_at: float
    expires_at: float

    @classmethod
    def new(cls, run_id: str, pipeline: str, ttl: float) -> Holder:
        now = time.time()
        return cls(
            run_id=run_id,
            pipeline=pipeline,
            host=socket.gethostname(),
            pid=os.getpid(),
            machine=_machine(),
            token=uuid.uuid4().hex,
            ttl_seconds=ttl,
            acquired_at=now,
            heartbeat_at=now,
            expires_at=now + ttl,
        )

    def renewed(self) -> Holder:
        now = time.time()
        return replace(self, heartbeat_at=now, expires_at=now + self.ttl_seconds)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "owner": {"host": self.host, "pid": self.pid, "machine": self.machine},
                "run_id": self.run_id,
                "pipeline": self.pipeline,
                "token": self.token,
                "ttl_seconds": self.ttl_seconds,
                "acquired_at": _iso(self.acquired_at),
                "heartbeat_at": _iso(self.heartbeat_at),
                "expires_at": _iso(self.expires_at),
            },
            indent=1,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Holder | None:
        """The holder an object names; None for one that is not a lease this module wrote."""
        try:
            content = json.loads(data)
            owner = content["owner"]
            return cls(
                run_id=str(content["run_id"]),
                pipeline=str(content["pipeline"]),
                host=str(owner["host"]),
                pid=int(owner["pid"]),
                machine=str(owner.get("machine", "")),
                token=str(content["token"]),
                ttl_seconds=float(content["ttl_seconds"]),
                acquired_at=_epoch(content["acquired_at"]),
                heartbeat_at=_epoch(content["heartbeat_at"]),
                expires_at=_epoch(content["expires_at"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def gone(self) -> bool:
        """Whether the holder ran on this machine (same boot, same pid namespace) and its
        process is no longer there: a killed run, whose lease need not be waited out."""
        if not self.machine or self.machine != _machine() or self.host != socket.gethostname():
            return False
        return not _running(self.pid)

    def describe(self, now: float) -> str:
        age = max(0.0, now - self.heartbeat_at)
        return (
            f"{self.pipeline} run {self.run_id} (host {self.host}, pid {self.pid}) since "
            f"{_iso(self.acquired_at)}, last heartbeat {age:.0f} s ago"
        )


# An object that is there but is no lease this module wrote (a writer that crashed while
# creating it locally, or a hand-made file): nobody can renew it, so it is taken over at once.
_UNREADABLE = Holder("", "unknown", "?", 0, "", "", 0.0, 0.0, 0.0, 0.0)


# --- where the lease object lives ---------------------------------------------------------------

Version = bytes | int  # locally the object's bytes; on GCS its generation


class _Store(Protocol):
    def read(self) -> tuple[bytes, Version] | None: ...
    def create(self, data: bytes) -> Version | None: ...
    def swap(self, expected: Version, data: bytes) -> Version | None: ...
    def remove(self, expected: Version) -> bool: ...


class _LocalStore:
    """The lease as a local file. Every operation holds an exclusive `flock` on the `_lease/`
    folder (never deleted, so every process locks the same inode) for the microseconds it
    takes; the create itself is `O_CREAT | O_EXCL` all the same."""

    def __init__(self, root: str) -> None:
        self._dir = layout.lease_dir(root)
        self._path = layout.lease_path(root)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self._dir, exist_ok=True)
        handle = os.open(self._dir, os.O_RDONLY)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)  # releases the lock

    def _current(self) -> bytes | None:
        try:
            with open(self._path, "rb") as current:
                return current.read()
        except FileNotFoundError:
            return None

    def _write(self, path: str, data: bytes, flags: int) -> None:
        handle = os.open(path, flags, 0o644)
        try:
            os.write(handle, data)
            os.fsync(handle)
        finally:
            os.close(handle)

    def read(self) -> tuple[bytes, Version] | None:
        if not os.path.isdir(self._dir):
            return None
        with self._locked():
            data = self._current()
        return None if data is None else (data, data)

    def create(self, data: bytes) -> Version | None:
        with self._locked():
            try:
                self._write(self._path, data, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return None
        return data

    def swap(self, expected: Version, data: bytes) -> Version | None:
        with self._locked():
            if self._current() != expected:
                return None
            temporary = f"{self._path}.{uuid.uuid4().hex[:8]}.tmp"
            self._write(temporary, data, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.replace(temporary, self._path)
        return data

    def remove(self, expected: Version) -> bool:
        with self._locked():
            if self._current() != expected:
                return False
            os.unlink(self._path)
        return True


class _GcsStore:
    """The lease as a Cloud Storage object; every change is conditional on its generation."""

    def __init__(self, root: str) -> None:
        self._bucket, self._name = gcs.split(layout.lease_path(root))

    def _blob(self) -> Any:
        return gcs.client().bucket(self._bucket).blob(self._name)

    def read(self) -> tuple[bytes, Version] | None:
        for _ in range(5):
            blob = gcs.client().bucket(self._bucket).get_blob(self._name)
            if blob is None:
                return None
            generation = int(blob.generation)  # the download may reset it from its headers
            try:
                data: bytes = blob.download_as_bytes(if_generation_match=generation)
            except NotFound:
                return None
            except PreconditionFailed:
                continue  # replaced between the two calls: read the new one
            return data, generation
        raise LeaseError(f"the lease gs://{self._bucket}/{self._name} keeps changing under reads")

    def _upload(self, data: bytes, generation: int) -> Version | None:
        blob = self._blob()
        try:
            blob.upload_from_string(
                data, content_type="application/json", if_generation_match=generation
            )
        except PreconditionFailed:
            # Either another writer changed it, or the client retried a request that had
            # succeeded: only the bytes tell which.
            current = self.read()
            return current[1] if current is not None and current[0] == data else None
        return int(blob.generation)

    def create(self, data: bytes) -> Version | None:
        return self._upload(data, 0)

    def swap(self, expected: Version, data: bytes) -> Version | None:
        return self._upload(data, int(expected))

    def remove(self, expected: Version) -> bool:
        try:
            self._blob().delete(if_generation_match=int(expected))
        except PreconditionFailed:
            return False
        except NotFound:
            return True  # a retried delete that had succeeded
        return True


def _store(root: str) -> _Store:
    if gcs.is_gcs(root):
        return _GcsStore(root)
    if "://" in root:
        raise ValueError(f"cannot lease {root!r}: only local folders and gs:// are supported")
    return _LocalStore(root)


def current_holder(root: str) -> Holder | None:
    """Who holds the root's lease now, if anyone."""
    found = _store(root).read()
    if found is None:
        return None
    return Holder.from_json(found[0]) or _UNREADABLE


# --- holding it ---------------------------------------------------------------------------------


class Lease:
    """The lease this process holds on an output root, with its heartbeat thread."""

    def __init__(self, root: str, store: _Store, holder: Holder, version: Version) -> None:
        self.root = root
        self.holder = holder
        self._store = store
        self._version = version
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None  # why it is no longer held, once it is not

    @property
    def run_id(self) -> str:
        return self.holder.run_id

    def renew(self) -> bool:
        """Extend the expiry if this process still holds the lease; False (and `lost` set) if
        another writer holds it now."""
        with self._lock:
            if self.lost is not None:
                return False
            renewed = self.holder.renewed()
            version = self._store.swap(self._version, renewed.to_json())
            if version is None:
                found = self._store.read()
                other = Holder.from_json(found[0]) if found else None
                if found is not None and other is not None and other.token == self.holder.token:
                    # Still its own: an earlier renewal went through but its answer was lost.
                    self.holder, self._version = other, found[1]
                    version = self._store.swap(self._version, renewed.to_json())
            if version is None:
                other = current_holder(self.root)
                now = time.time()
                self.lost = f"run {self.run_id} lost its writer lease on {self.root}: " + (
                    "now held by " + other.describe(now) if other else "nobody holds it"
                )
                log.error("%s; this run will not publish", self.lost)
                return False
            self.holder, self._version = renewed, version
            return True

    def check(self) -> None:
        """Raise LeaseLost unless the stored lease is still this process's own and unexpired."""
        with self._lock:
            if self.lost is None:
                found = self._store.read()
                now = time.time()
                if found is None or found[1] != self._version:
                    other = Holder.from_json(found[0]) if found else None
                    self.lost = f"run {self.run_id} lost its writer lease on {self.root}: " + (
                        "now held by " + other.describe(now) if other else "nobody holds it"
                    )
                elif self.holder.expired(now):
                    self.lost = (
                        f"run {self.run_id} let its writer lease on {self.root} expire (last "
                        f"heartbeat {now - self.holder.heartbeat_at:.0f} s ago): another writer "
                        "may take it over at any time"
                    )
            if self.lost is not None:
                raise LeaseLost(self.lost)

    def start_heartbeat(self) -> None:
        interval = self.holder.ttl_seconds / RENEWALS_PER_TTL
        self._thread = threading.Thread(
            target=self._beat, args=(interval,), name=f"lease-heartbeat-{self.run_id}", daemon=True
        )
        self._thread.start()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    return
            except Exception as error:  # a store that is briefly unreachable: try again
                log.warning("writer lease heartbeat failed, trying again: %s", error)

    def release(self) -> None:
        """Stop the heartbeat and delete the lease, if it is still this process's."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self.lost is None:
                self.lost = f"run {self.run_id} released its writer lease on {self.root}"
                try:
                    self._store.remove(self._version)
                except Exception:  # it expires by itself, ttl_seconds after the last heartbeat
                    log.warning("could not delete the writer lease on %s", self.root, exc_info=True)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _mark_revoked(root: str, holder: Holder, by: Holder) -> None:
    """Record in a batch holder's run folder that it lost its lease (before taking it over:
    there is never a moment when another holds it and the mark is missing)."""
    write_text(
        layout.lease_revoked_marker(root, holder.run_id),
        json.dumps(
            {
                "run_id": holder.run_id,
                "taken_over_by": by.run_id,
                "pipeline": by.pipeline,
                "at": _iso(time.time()),
                "lease": json.loads(holder.to_json()),
            },
            indent=2,
        ),
    )


def _take_over(
    root: str, store: _Store, stale: Holder, version: Version, mine: Holder
) -> Version | None:
    batch_run = stale.pipeline in _RUN_PIPELINES and bool(_SAFE_RUN_ID.match(stale.run_id))
    if batch_run:
        _mark_revoked(root, stale, mine)
    taken = store.swap(version, mine.to_json())
    if taken is None:
        return None  # renewed, released or taken by another meanwhile
    why = "its process is gone" if stale.gone() else "its heartbeat expired"
    log.warning(
        "took over the writer lease on %s from %s: %s", root, stale.describe(time.time()), why
    )
    if batch_run:
        staging = layout.staging_dir(root, stale.run_id)
        try:
            delete_tree(staging)
        except Exception:  # garbage either way: the lease is taken, the run goes on
            log.warning("could not delete %s, the dead run's staged files", staging, exc_info=True)
        else:
            log.warning("deleted %s, the staged files of the dead run", staging)
    return taken


def acquire(
    root: str,
    run_id: str,
    pipeline: str,
    *,
    ttl: float = DEFAULT_TTL_SECONDS,
    wait: float = 0.0,
    poll: float = 1.0,
    hint: str = "",
) -> Lease:
    """Take the root's writer lease for a run and start its heartbeat; poll for up to `wait`
    seconds while another writer holds it (a streaming pane's hold is always waited for up to
    BRIEF_HOLD_WAIT_SECONDS). Raises OutputBusy, naming the holder and ending with `hint`."""
    if ttl <= 0:
        raise ValueError(f"a lease TTL must be positive, got {ttl}")
    store = _store(root)
    started = time.monotonic()
    waiting_logged = False
    while True:
        mine = Holder.new(run_id, pipeline, ttl)
        version = store.create(mine.to_json())
        if version is None:
            found = store.read()
            if found is None:
                continue  # released between the two calls
            data, held = found
            other = Holder.from_json(data) or _UNREADABLE
            now = time.time()
            if other.expired(now) or other.gone():
                version = _take_over(root, store, other, held, mine)
                if version is None:
                    continue
            else:
                patience = max(wait, BRIEF_HOLD_WAIT_SECONDS if other.pipeline == STREAMING else 0)
                waited = time.monotonic() - started
                if waited >= patience:
                    gave_up = f"; gave up after waiting {waited:.0f} s" if wait > 0 else ""
                    raise OutputBusy(
                        f"output root {root} is busy: held by {other.describe(now)}{gave_up}"
                        + (f"; {hint}" if hint else "")
                    )
                if not waiting_logged:
                    log.info(
                        "waiting for the writer lease on %s, held by %s", root, other.describe(now)
                    )
                    waiting_logged = True
                time.sleep(min(poll * random.uniform(0.5, 1.0), patience - waited))
                continue
        lease = Lease(root, store, mine, version)
        lease.start_heartbeat()
        log.info("writer lease on %s taken for %s run %s (TTL %.0f s)", root, pipeline, run_id, ttl)
        return lease


def revoked(root: str, run_id: str) -> str | None:
    """Why a run may no longer publish, if another writer took its lease over."""
    marker = layout.lease_revoked_marker(root, run_id)
    if not exists(marker):
        return None
    record = json.loads(read_text(marker))
    return (
        f"run {run_id} lost its writer lease on {root}: {record.get('pipeline')} run "
        f"{record.get('taken_over_by')} took it over at {record.get('at')} (its heartbeat had "
        "stopped)"
    )


def assert_held(root: str, run_id: str) -> None:
    """Raise LeaseLost unless the root's lease names this run and has not expired: the check
    of a commit step that runs apart from the launcher holding the lease."""
    found = current_holder(root)
    now = time.time()
    if found is None:
        raise LeaseLost(f"run {run_id} does not hold the writer lease on {root}: nobody does")
    if found.run_id != run_id:
        raise LeaseLost(
            f"run {run_id} lost its writer lease on {root}: now held by {found.describe(now)}"
        )
    if found.expired(now):
        raise LeaseLost(
            f"run {run_id} let its writer lease on {root} expire (last heartbeat "
            f"{now - found.heartbeat_at:.0f} s ago): another writer may take it over at any time"
        )


@contextlib.contextmanager
def commit_guard(
    root: str, run_id: str, wait: float | None = None, pipeline: str = BATCH
) -> Iterator[Callable[[], None]]:
    """Around a batch run's commit step; yields the check to call right before each publishing
    step. Raises LeaseLost at once if the run's lease was taken over (or its heartbeat
    stopped). When the launcher holds the run's lease, the check reads it back; when nobody
    holds a lease for this run (a job launched from a template, whose launcher exits before it
    runs), the commit takes the lease itself, waiting for it up to `wait` seconds
    (COMMIT_WAIT_SECONDS), and holds it while it publishes."""
    lost = revoked(root, run_id)
    if lost is not None:
        raise LeaseLost(lost)
    holder = current_holder(root)
    if holder is not None and holder.run_id == run_id:
        assert_held(root, run_id)
        yield lambda: assert_held(root, run_id)
        return
    patience = COMMIT_WAIT_SECONDS if wait is None else wait
    with acquire(root, run_id, pipeline, wait=patience) as held:
        log.info("run %s holds the writer lease on %s for its commit only", run_id, root)
        yield held.check


_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


@contextlib.contextmanager
def pane_lease(root: str, run_id: str, wait: float = PANE_WAIT_SECONDS) -> Iterator[Lease]:
    """Hold the root's lease while a streaming pane publishes. Threads of this process queue on
    a lock first; then it waits for the lease as long as it takes, logging who holds it every
    `wait` seconds. It never gives up: the pane holds data already taken from Pub/Sub, which
    dropping (or failing, on Beam's local runner) would lose. A holder that dies is taken over
    once its heartbeat expires, so the wait ends."""
    with _process_locks_guard:
        lock = _process_locks.setdefault(root.rstrip("/"), threading.Lock())
    with lock:
        while True:
            try:
                held = acquire(root, run_id, STREAMING, wait=wait, poll=0.2)
                break
            except OutputBusy as busy:
                log.warning("a streaming pane is waiting to publish (kept, not dropped): %s", busy)
        with held:
            yield held
