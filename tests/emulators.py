"""Real emulator servers for tests (Cloud Storage: gcp-storage-emulator; Pub/Sub: gcloud's),
started as subprocesses, and the test-only settings that point clients at them.

Everything that bends authentication for an emulator lives here and never in the product:
the product's own Cloud Storage client follows `STORAGE_EMULATOR_HOST` like any Google client,
and only Beam's gs:// filesystem needs telling (see `make_beam_gcs_anonymous`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow.fs as pafs
import pytest
from apache_beam.internal.gcp import auth as beam_auth
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

GCS_EMULATOR = "gcp-storage-emulator"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 30.0
PUBSUB_STARTUP_SECONDS = 60.0


@dataclass(frozen=True)
class GcsEmulator:
    """A running gcp-storage-emulator with one bucket."""

    port: int
    bucket: str
    host: str = "127.0.0.1"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, *parts: str) -> str:
        """gs:// URI of a path in the bucket."""
        return "/".join([f"gs://{self.bucket}", *(p.strip("/") for p in parts if p)])

    def env(self) -> dict[str, str]:
        """What a process needs to use the emulator: the endpoint every Google storage client
        honours, and no probe of a GCE metadata server that is not there."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "NO_GCE_CHECK": "true"}

    def client(self) -> storage.Client:
        """A client of the test's own, independent of the product's and of the environment."""
        return storage.Client(
            project="emulator-tests",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint},
        )

    def arrow_filesystem(self) -> pafs.GcsFileSystem:
        """pyarrow's own GCS client (C++), an independent reader of what the pipeline wrote;
        its paths are "bucket/name", without gs://."""
        return pafs.GcsFileSystem(
            anonymous=True, endpoint_override=f"{self.host}:{self.port}", scheme="http"
        )


def emulator_binary() -> str | None:
    """The emulator's command: beside this Python (a venv not on PATH) or on PATH."""
    beside = Path(sys.executable).parent / GCS_EMULATOR
    return str(beside) if beside.exists() else shutil.which(GCS_EMULATOR)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _log_tail(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-2000:]


def _wait_until_serving(
    process: subprocess.Popen[bytes], emulator: GcsEmulator, log: IO[bytes]
) -> None:
    """Wait until the emulator answers for its bucket (the port opens before the bucket
    exists)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    bucket_url = f"{emulator.endpoint}/storage/v1/b/{emulator.bucket}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{GCS_EMULATOR} exited with {process.returncode}:\n{_log_tail(log)}"
            )
        try:
            with urllib.request.urlopen(bucket_url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(
        f"{GCS_EMULATOR} did not serve within {STARTUP_SECONDS} s:\n{_log_tail(log)}"
    )


def _stop(process: subprocess.Popen[bytes], grace_seconds: float = 5.0) -> None:
    """Stop the emulator's whole process group (it may start children of its own): politely,
    then for good if it is still there after `grace_seconds`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(grace_seconds)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def gcs_emulator(bucket: str) -> Iterator[GcsEmulator]:
    """Start `gcp-storage-emulator` in memory on a free port with `bucket` created; yields it,
    stops it at exit. Skips the test when the emulator is not installed."""
    binary = emulator_binary()
    if binary is None:
        pytest.skip(
            f"{GCS_EMULATOR} is not installed: `pip install gcp-storage-emulator` to run the "
            "Cloud Storage tests"
        )
    emulator = GcsEmulator(free_port(), bucket)
    command = [
        binary,
        "start",
        f"--host={emulator.host}",
        f"--port={emulator.port}",
        "--in-memory",
        f"--default-bucket={bucket}",
    ]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_until_serving(process, emulator, log)
            yield emulator
        finally:
            _stop(process)


def _port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


@contextmanager
def pubsub_emulator() -> Iterator[str]:
    """Start gcloud's Pub/Sub emulator on a free port; yields its "host:port" (the value of
    PUBSUB_EMULATOR_HOST), stops it at exit. Skips the test, saying why, when gcloud or its
    emulator component is absent or the emulator does not come up within a minute."""
    if shutil.which("gcloud") is None:
        pytest.skip("gcloud (with its Pub/Sub emulator) is not installed on this machine")
    port = free_port()
    host = f"127.0.0.1:{port}"
    process = subprocess.Popen(
        ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port={host}"],
        env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + PUBSUB_STARTUP_SECONDS
        while not _port_open("127.0.0.1", port):
            if process.poll() is not None:
                pytest.skip("the Pub/Sub emulator did not start (is its gcloud component there?)")
            if time.monotonic() > deadline:
                pytest.skip(
                    f"the Pub/Sub emulator did not come up within {PUBSUB_STARTUP_SECONDS:.0f} s"
                )
            time.sleep(0.5)
        yield host
    finally:
        # The JVM under gcloud takes a while to wind down on SIGTERM.
        _stop(process, grace_seconds=30.0)


def _no_credentials(_options: Any) -> None:
    return None


def make_beam_gcs_anonymous() -> None:
    """Make Beam's gs:// filesystem connect anonymously at once, for this whole process.

    With no credentials at all Beam retries discovery for ~25 s before it connects anonymously
    anyway; `--no_auth` does not reach its GCS client. Beam's own tests replace this same
    function (`apache_beam/io/gcp/gcsio_test.py`); with None, Beam builds
    `storage.Client.create_anonymous_client()`, which follows STORAGE_EMULATOR_HOST.
    """
    beam_auth.get_service_credentials = _no_credentials


def use_gcs_emulator(emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point this test's clients at the emulator (undone after the test): the environment
    for every client, anonymous access for Beam's gs:// filesystem."""
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(beam_auth, "get_service_credentials", _no_credentials)


def pipeline_command(module: str, *args: str, prelude: str = "") -> list[str]:
    """`python -m MODULE ARGS` (a module with a `main()`) as a subprocess command, with Beam's
    GCS access made anonymous first, then `prelude` (Python source: e.g. to kill the run at a
    chosen step). Run it with cwd=PROJECT_ROOT and the emulators' environment."""
    code = "\n".join(
        [
            "import sys",
            "from tests.emulators import make_beam_gcs_anonymous",
            "make_beam_gcs_anonymous()",
            prelude,
            f"from {module} import main",
            "sys.exit(main())",
        ]
    )
    return [sys.executable, "-c", code, *args]


def batch_command(*args: str, prelude: str = "") -> list[str]:
    """`python -m pipelines.batch ARGS` with anonymous Beam GCS access (`pipeline_command`)."""
    return pipeline_command("pipelines.batch", *args, prelude=prelude)


def streaming_command(*args: str) -> list[str]:
    """`python -m pipelines.streaming ARGS` with anonymous Beam GCS access
    (`pipeline_command`)."""
    return pipeline_command("pipelines.streaming", *args)


def upload_tree(client: storage.Client, local: Path, uri: str) -> list[str]:
    """Upload every file under a local folder to gs://bucket/prefix, keeping relative paths;
    returns the gs:// URIs written."""
    bucket_name, _, prefix = uri.removeprefix("gs://").partition("/")
    bucket = client.bucket(bucket_name)
    written = []
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        name = "/".join([prefix.strip("/"), path.relative_to(local).as_posix()]).lstrip("/")
        bucket.blob(name).upload_from_filename(str(path))
        written.append(f"gs://{bucket_name}/{name}")
    return written


def object_names(client: storage.Client, uri: str) -> list[str]:
    """Names of every object under gs://bucket/prefix, relative to the prefix, sorted."""
    bucket_name, _, prefix = uri.removeprefix("gs://").partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    return sorted(b.name[len(prefix) :] for b in client.list_blobs(bucket_name, prefix=prefix))
