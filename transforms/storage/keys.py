"""Where the pseudonymisation key comes from, resolved where it is used.

The key turns CPR numbers into pseudonyms; anyone holding it can test a CPR against them. So
on Dataflow it must not travel inside the job graph (which is stored with the job and shown
to anyone who can view it), nor live in an image or the repository: the graph carries only
the *name* of a Secret Manager secret version (or of a key file), and each worker reads the
key in `DoFn.setup`. A key given directly (`value`) is for local runs and tests.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

SECRET_VERSION = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")


@dataclass(frozen=True)
class PseudonymKey:
    """Exactly one of: a Secret Manager secret version, a key file, or the key itself."""

    secret: str | None = None  # projects/P/secrets/S/versions/V (or .../versions/latest)
    file: str | None = None  # a local path or gs:// URI
    value: bytes | None = None

    def __post_init__(self) -> None:
        given = [x for x in (self.secret, self.file, self.value) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of a secret, a key file or a key")
        if self.secret is not None and not SECRET_VERSION.match(self.secret):
            raise ValueError(
                f"{self.secret!r} is not a secret version name: expected "
                "projects/PROJECT/secrets/NAME/versions/VERSION (VERSION may be 'latest')"
            )

    @property
    def in_graph(self) -> bool:
        """Whether the key itself (not only its name) would be shipped with the job."""
        return self.value is not None

    def describe(self) -> str:
        """Where the key comes from, for logs (never the key)."""
        if self.secret is not None:
            return f"Secret Manager {self.secret}"
        if self.file is not None:
            return f"key file {self.file}"
        return "a key given directly"

    def resolve(self) -> bytes:
        """The key bytes (surrounding whitespace stripped). Called on the worker."""
        if self.value is not None:
            return self.value
        if self.file is not None:
            from apache_beam.io.filesystems import FileSystems

            with FileSystems.open(self.file) as handle:
                data: bytes = handle.read()
            return data.strip()
        assert self.secret is not None
        return _access_secret(self.secret).strip()


def _access_secret(name: str) -> bytes:
    """One secret version's payload, with the worker's own credentials."""
    # Imported by name: a static import makes mypy treat the whole google.cloud namespace as
    # this one typed package and lose google.cloud.storage and pubsub_v1.
    secretmanager = importlib.import_module("google.cloud.secretmanager")
    client = secretmanager.SecretManagerServiceClient()
    data: bytes = client.access_secret_version(name=name).payload.data
    return data
