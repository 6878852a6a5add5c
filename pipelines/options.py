"""Command-line options shared by the pipelines, as Beam PipelineOptions (same flags locally
and on Dataflow), plus the pseudonymisation key lookup."""

from __future__ import annotations

import argparse
import os
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.read import DEFAULT_BLOCK_EVENTS, DEFAULT_RANGE_BYTES
from transforms.validate import DEFAULT_MAX_EVENT_BYTES

KEY_ENV = "PAYMENTS_PSEUDONYM_KEY"


class IngestOptions(PipelineOptions):  # type: ignore[misc]
    """Options every ingestion pipeline takes. Each options class is a direct subclass of
    PipelineOptions with its own flags: Beam registers only direct subclasses, and two
    classes declaring the same flag collide once both modules are imported."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--output",
            help="output root: a local folder or gs://bucket/prefix (payments/, rejected/, "
            "aggregates/ and runs/ are created under it)",
        )
        parser.add_argument(
            "--pseudonym_key_file",
            help=f"file holding the secret HMAC key that pseudonymises CPR numbers; default: "
            f"the {KEY_ENV} environment variable. Keep it stable: a new key gives every payer "
            "a new pseudonym",
        )
        parser.add_argument(
            "--max_event_bytes",
            type=int,
            default=DEFAULT_MAX_EVENT_BYTES,
            help="events larger than this are rejected as LINE_TOO_LONG (default %(default)s)",
        )


class BatchOptions(PipelineOptions):  # type: ignore[misc]
    """Options of the nightly batch pipeline."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--input",
            help="newline-delimited JSON files (.jsonl, optionally .gz): a path, a glob such as "
            "'landing/2017-06-30/*.jsonl*', or several separated by commas; local or gs://",
        )
        parser.add_argument(
            "--range_bytes",
            type=int,
            default=DEFAULT_RANGE_BYTES,
            help="uncompressed files larger than this are split into byte ranges read in "
            "parallel (default %(default)s)",
        )
        parser.add_argument(
            "--block_events",
            type=int,
            default=DEFAULT_BLOCK_EVENTS,
            help="events validated together as one block (default %(default)s)",
        )


def resolve_pseudonym_key(key_file: str | None, environ: Any = os.environ) -> bytes:
    """The HMAC key from a file or the environment; a clear error when there is none."""
    if key_file:
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(key_file) as handle:
            key: bytes = handle.read().strip()
        return key
    value = environ.get(KEY_ENV)
    if value:
        return str(value).encode()
    raise SystemExit(
        f"error: no pseudonymisation key. Set {KEY_ENV} or pass --pseudonym_key_file. For a "
        f"local try: export {KEY_ENV}=$(python -c 'import secrets; print(secrets.token_hex(32))')"
    )
