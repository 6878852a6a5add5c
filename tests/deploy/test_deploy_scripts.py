"""The build and launch scripts, run with DRY_RUN=1: they print the gcloud/bq commands they
would run, which are checked here without a cloud account."""

from __future__ import annotations

import os
import shlex
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deploy.schedule.payments_schedule import previous_bahrain_day

DEPLOY = Path(__file__).parents[2] / "deploy"
SCRIPTS = ["build_templates.sh", "run_batch.sh", "run_streaming.sh", "create_bigquery_tables.sh"]
WORKER_IMAGE = "me-central2-docker.pkg.dev/payments-test/payments/payments-worker:t1"
SETTINGS = {
    "PROJECT": "payments-test",
    "REGION": "me-central2",
    "BUCKET": "payments-test-dataflow",
    "REPOSITORY": "payments",
    "TAG": "t1",
    "LANDING": "gs://payments-test-landing",
    "LAKE": "gs://payments-test-lake/payments-v1",
    "SUBSCRIPTION": "projects/payments-test/subscriptions/payments-ingest",
    "SERVICE_ACCOUNT": "payments-batch@payments-test.iam.gserviceaccount.com",
    "PSEUDONYM_KEY_SECRET": "projects/payments-test/secrets/pseudonym-key/versions/1",
    "DATASET": "payments",
}


def script(name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEPLOY / name), *args],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def dry_run(name: str, *args: str, **env: str) -> list[list[str]]:
    """The commands a script would run, each split as the shell would."""
    done = script(name, *args, **{**SETTINGS, "DRY_RUN": "1", **env})
    assert done.returncode == 0, done.stderr
    return [
        shlex.split(line) for line in done.stdout.splitlines() if line.startswith(("gcloud", "bq"))
    ]


def flag_values(command: list[str], flag: str) -> list[str]:
    return [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{flag}=")]


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_is_valid_bash(name: str) -> None:
    subprocess.run(["bash", "-n", str(DEPLOY / name)], check=True)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_stops_on_the_first_error(name: str) -> None:
    code = [line for line in (DEPLOY / name).read_text().splitlines() if line and line[0] != "#"]
    assert code[0] == "set -euo pipefail"


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_prints_its_usage_on_help(name: str) -> None:
    done = script(name, "--help")
    assert done.returncode == 0
    assert done.stdout.startswith(f"usage: deploy/{name}")


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_refuses_to_run_without_its_settings(name: str) -> None:
    done = script(name)
    assert done.returncode == 2
    assert "usage:" in done.stderr
    assert "missing environment: PROJECT" in done.stderr


def test_build_makes_both_templates_from_their_metadata() -> None:
    builds = [c for c in dry_run("build_templates.sh") if c[1:3] == ["dataflow", "flex-template"]]
    assert [c[4] for c in builds] == [
        "gs://payments-test-dataflow/templates/payments-batch-t1.json",
        "gs://payments-test-dataflow/templates/payments-streaming-t1.json",
    ]
    for command, pipeline in zip(builds, ("batch", "streaming"), strict=True):
        assert flag_values(command, "metadata-file") == [
            str(DEPLOY / "templates" / pipeline / "metadata.json")
        ]
        assert flag_values(command, "image") == [
            f"me-central2-docker.pkg.dev/payments-test/payments/payments-launcher-{pipeline}:t1"
        ]


def test_batch_launch_reads_the_days_landing_folder() -> None:
    (command,) = dry_run("run_batch.sh", "2017-06-30")
    assert command[:5] == ["gcloud", "dataflow", "flex-template", "run", "payments-batch-20170630"]
    assert flag_values(command, "template-file-gcs-location") == [
        "gs://payments-test-dataflow/templates/payments-batch-t1.json"
    ]
    assert flag_values(command, "parameters") == [
        "input=gs://payments-test-landing/2017-06-30/*.jsonl*",
        "output=gs://payments-test-lake/payments-v1",
        f"pseudonym_key_secret={SETTINGS['PSEUDONYM_KEY_SECRET']}",
        f"sdk_container_image={WORKER_IMAGE}",
        "sdk_location=container",
    ]


def test_batch_backfill_launches_each_day_of_the_range_in_order() -> None:
    commands = dry_run("run_batch.sh", "2017-06-29", "2017-07-01")
    assert [c[4] for c in commands] == [
        "payments-batch-20170629",
        "payments-batch-20170630",
        "payments-batch-20170701",
    ]


@pytest.mark.parametrize("days", [["2017-06-31"], ["30-06-2017"], ["2017-07-01", "2017-06-30"]])
def test_batch_launch_refuses_bad_days(days: list[str]) -> None:
    done = script("run_batch.sh", *days, **SETTINGS, DRY_RUN="1")
    assert done.returncode == 2
    assert done.stdout == ""


def test_streaming_launch_reads_the_subscription_with_streaming_engine() -> None:
    (command,) = dry_run("run_streaming.sh")
    assert command[4] == "payments-streaming"
    assert "--enable-streaming-engine" in command
    assert "--update" not in command
    assert f"input_subscription={SETTINGS['SUBSCRIPTION']}" in flag_values(command, "parameters")
    assert f"sdk_container_image={WORKER_IMAGE}" in flag_values(command, "parameters")


def test_streaming_update_maps_renamed_steps() -> None:
    (command,) = dry_run("run_streaming.sh", "--update", TRANSFORM_NAME_MAPPINGS="OldStep=NewStep")
    assert "--update" in command
    assert flag_values(command, "transform-name-mappings") == ["OldStep=NewStep"]


def test_streaming_refuses_name_mappings_without_update() -> None:
    done = script("run_streaming.sh", **SETTINGS, DRY_RUN="1", TRANSFORM_NAME_MAPPINGS="A=B")
    assert done.returncode == 2


def test_bigquery_script_fills_in_every_placeholder() -> None:
    done = script("create_bigquery_tables.sh", **SETTINGS, DRY_RUN="1")
    sql, _, command = done.stdout.rpartition("\nbq ")
    assert done.returncode == 0, done.stderr
    assert shlex.split(command)[:2] == ["query", "--project_id=payments-test"]
    assert "${" not in sql
    assert "`payments-test.payments.payments`" in sql
    assert "'gs://payments-test-lake/payments-v1/payments/*'" in sql


@pytest.mark.parametrize(
    "instant",
    [
        datetime(2017, 7, 1, 20, 59, 59, tzinfo=timezone.utc),
        datetime(2017, 7, 1, 21, 0, 0, tzinfo=timezone.utc),
        datetime(2017, 12, 31, 23, 0, 0, tzinfo=timezone.utc),
        datetime(2024, 2, 29, 0, 0, 0, tzinfo=timezone.utc),
    ],
)
def test_shell_previous_bahrain_day_agrees_with_the_schedule(instant: datetime) -> None:
    done = subprocess.run(
        [
            "bash",
            "-c",
            f'source "{DEPLOY / "lib.sh"}"; previous_bahrain_day {int(instant.timestamp())}',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == previous_bahrain_day(instant).isoformat()
