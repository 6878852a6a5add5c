"""Command-line options shared by the pipelines, as Beam PipelineOptions (same flags locally
and on Dataflow), plus the pseudonymisation key lookup."""

from __future__ import annotations

import argparse
import os
from datetime import date
from typing import Any

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, TestOptions

from transforms.batch.read import DEFAULT_BLOCK_EVENTS, DEFAULT_RANGE_BYTES
from transforms.core.compaction import DEFAULT_MAX_FILES, DEFAULT_TARGET_FILE_MB
from transforms.core.gates import DEFAULT_ERROR_RATIO, DEFAULT_MIN_EVENTS, DEFAULT_WARN_RATIO
from transforms.core.privacy import Pseudonymiser
from transforms.core.validate import DEFAULT_MAX_EVENT_BYTES
from transforms.storage.keys import PseudonymKey
from transforms.storage.lease import DEFAULT_TTL_SECONDS

KEY_ENV = "PAYMENTS_PSEUDONYM_KEY"


def true_or_false(text: str) -> bool:
    """A boolean option's value as a Flex Template passes it (`--flag=true`)."""
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return text.lower() == "true"


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
            help=f"file holding the secret HMAC key that pseudonymises CPR numbers; without it "
            f"(and without --pseudonym_key_secret) the key is read from the {KEY_ENV} "
            "environment variable. Keep it stable: a new key gives every payer a new pseudonym",
        )
        parser.add_argument(
            "--pseudonym_key_secret",
            help="Secret Manager secret version holding the key "
            "(projects/P/secrets/S/versions/V): each worker reads it when it starts, so the "
            "key never travels with the job. Required on Dataflow",
        )
        parser.add_argument(
            "--max_event_bytes",
            type=int,
            default=DEFAULT_MAX_EVENT_BYTES,
            help="events larger than this are rejected as LINE_TOO_LONG (default %(default)s)",
        )

        def ratio(text: str) -> float:
            value = float(text)
            if not 0 <= value <= 1:
                raise argparse.ArgumentTypeError(f"{text!r} is not a ratio from 0 to 1")
            return value

        def count(text: str) -> int:
            value = int(text)
            if value < 0:
                raise argparse.ArgumentTypeError(f"{text!r} is not a count >= 0")
            return value

        parser.add_argument(
            "--reference_validation",
            type=true_or_false,
            nargs="?",
            const=True,
            default=False,
            metavar="true|false",
            help="validate and normalise every event one at a time through the schema of "
            "record (pydantic), without the bulk path that takes the everyday lines a block at "
            "a time; the output is the same (tests prove it), only slower: a switch to rule "
            "the bulk path out (default %(default)s)",
        )
        parser.add_argument(
            "--gate_warn_ratio",
            type=ratio,
            default=DEFAULT_WARN_RATIO,
            help="quality gate: a channel whose share of rejected events is above this warns "
            "(default %(default)s)",
        )
        parser.add_argument(
            "--gate_error_ratio",
            type=ratio,
            default=DEFAULT_ERROR_RATIO,
            help="quality gate: a channel whose share of rejected events is above this fails "
            "(batch: exit status 5, the run still commits; streaming: logged and counted, "
            "never stopped; default %(default)s)",
        )
        parser.add_argument(
            "--gate_min_events",
            type=count,
            default=DEFAULT_MIN_EVENTS,
            help="quality gate: a channel with fewer events than this fails only when all of "
            "them are rejected (default %(default)s)",
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

        parser.add_argument(
            "--no_compact",
            type=true_or_false,
            nargs="?",
            const=True,
            default=False,
            metavar="true|false",
            help="do not compact afterwards: by default, once the run has committed, the job "
            "rewrites the payments partitions it wrote to and yesterday's (streaming) "
            "partitions into one file each, as pipelines.compact would (default %(default)s)",
        )


class LeaseOptions(PipelineOptions):  # type: ignore[misc]
    """How a run that holds the output root's writer lease for its whole duration (the batch
    pipeline, compaction) waits for it and keeps it."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        def seconds(text: str) -> float:
            value = float(text)
            if not value >= 0:
                raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
            return value

        def positive_seconds(text: str) -> float:
            value = float(text)
            if not 0 < value < float("inf"):
                raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds > 0")
            return value

        parser.add_argument(
            "--wait_for_lease",
            type=seconds,
            default=0.0,
            metavar="SECONDS",
            help="when another writer holds the output root (another batch or compaction "
            "run), wait up to this long for it to finish instead of exiting at once with "
            "status 6 (default %(default)s)",
        )
        parser.add_argument(
            "--lease_ttl_seconds",
            type=positive_seconds,
            default=DEFAULT_TTL_SECONDS,
            help="the output root's writer lease expires this long after the run's last "
            "heartbeat (renewed every quarter of it), so another writer can take over from a "
            "killed run (default %(default)s)",
        )


class CompactOptions(PipelineOptions):  # type: ignore[misc]
    """Options of the compaction pipeline (pipelines/compact.py)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        def at_least_one(text: str) -> int:
            value = int(text)
            if value < 1:
                raise argparse.ArgumentTypeError(f"{text!r} is not a count >= 1")
            return value

        def day(text: str) -> date:
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from None

        parser.add_argument(
            "--max_files",
            type=at_least_one,
            default=DEFAULT_MAX_FILES,
            help="rewrite a partition holding more committed files than this (and more than "
            "its size needs, see --target_file_mb) (default %(default)s)",
        )
        parser.add_argument(
            "--partitions",
            help="only these partitions, comma-separated: "
            "channel=portal/event_date=2017-06-30,channel=kiosk/event_date=2017-06-30",
        )
        parser.add_argument(
            "--since",
            type=day,
            metavar="YYYY-MM-DD",
            help="only partitions of this Bahrain day and later",
        )
        parser.add_argument(
            "--target_file_mb",
            type=at_least_one,
            default=DEFAULT_TARGET_FILE_MB,
            help="size of the files a partition is rewritten into: one file per this many MB "
            "of its current files (default %(default)s)",
        )


def pseudonym_key_source(
    options: IngestOptions, runner: str | None, environ: Any = os.environ
) -> PseudonymKey:
    """Where workers get the key: a secret, a key file (checked here, read by the workers), or
    for local runs the environment. A clear error when there is none, and on Dataflow when
    the key itself would travel inside the job graph."""
    secret, key_file = options.pseudonym_key_secret, options.pseudonym_key_file
    if secret and key_file:
        raise SystemExit("error: give --pseudonym_key_secret or --pseudonym_key_file, not both")
    try:
        if secret:
            return PseudonymKey(secret=secret)
        if key_file:
            source = PseudonymKey(file=key_file)
            Pseudonymiser(source.resolve())  # fail here, not on every worker
            return source
    except (ValueError, OSError) as error:
        raise SystemExit(f"error: pseudonymisation key: {error}") from error
    if runner == "DataflowRunner":
        raise SystemExit(
            "error: on Dataflow the key must come from --pseudonym_key_secret (or "
            "--pseudonym_key_file): a key from the environment would be stored in the job graph"
        )
    value = environ.get(KEY_ENV)
    if not value:
        raise SystemExit(
            f"error: no pseudonymisation key. Set {KEY_ENV}, or pass --pseudonym_key_file or "
            f"--pseudonym_key_secret. For a local try: "
            f"export {KEY_ENV}=$(python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    try:
        Pseudonymiser(str(value).encode())
    except ValueError as error:
        raise SystemExit(f"error: {KEY_ENV}: {error}") from error
    return PseudonymKey(value=str(value).encode())


def runs_elsewhere_later(options: PipelineOptions) -> bool:
    """Whether running the pipeline here only built or submitted the job (a template launch
    or a dry run), so its results are not there yet."""
    cloud = options.view_as(GoogleCloudOptions)
    return bool(cloud.template_location) or bool(options.view_as(TestOptions).dry_run)
