"""Cloud Composer 2 (Airflow 2, Google provider) DAG: every night at 02:00 Bahrain time,
launch the batch Flex Template on the previous Bahrain day's landing folder, wait for the job,
then check its run manifest: it reconciles, quarantined no input as incomplete, and no channel
failed its quality gate.

The job runs on Dataflow after the launcher exits, so the batch command's exit statuses (3, 5,
7) never reach Airflow: `check_manifest` reads the same facts from the manifest instead.

Deploy this file and payments_schedule.py to the environment's dags/ folder (deploy/README.md). All
settings come from one Airflow Variable, `payments_config` (JSON; keys in
payments_config.example.json), read when a task runs, never while the DAG file is parsed.
Re-run a day: trigger with {"day": "YYYY-MM-DD"}; runs are serialised (max_active_runs=1)
because each rewrites the aggregate files of the months it touches.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pendulum
from airflow import DAG
from airflow.exceptions import AirflowFailException
from airflow.models.param import Param
from airflow.operators.python import PythonOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator
from payments_schedule import (
    batch_job_name,
    day_to_process,
    landing_day_prefix,
    landing_glob,
    manifest_problems,
    newest_run_of,
    run_alarms,
    run_id_floor,
)

CONFIG = "var.json.payments_config"
DAY = "payments_day(data_interval_end, params.day)"


def check_manifest(**context: Any) -> None:
    """Fail unless the newest batch run over the day committed (_SUCCESS), reconciles, read
    every input whole and passed its quality gates."""
    import google.cloud.storage as storage
    from airflow.models import Variable

    config = Variable.get("payments_config", deserialize_json=True)
    day = day_to_process(context["data_interval_end"], context["params"].get("day"))
    bucket_name, _, prefix = config["lake"].removeprefix("gs://").rstrip("/").partition("/")
    runs = f"{prefix}/runs/" if prefix else "runs/"
    bucket = storage.Client(project=config["project"]).bucket(bucket_name)
    since = runs + run_id_floor(context["data_interval_end"])
    blobs = bucket.client.list_blobs(
        bucket, prefix=runs, start_offset=since, match_glob="**/manifest.json"
    )
    manifests = [json.loads(blob.download_as_bytes()) for blob in blobs]
    manifest = newest_run_of(manifests, landing_day_prefix(config["landing"], day))
    if manifest is None:
        raise RuntimeError(f"no run manifest under gs://{bucket_name}/{runs} for {day}")
    if not bucket.blob(f"{runs}{manifest['run_id']}/_SUCCESS").exists():
        raise RuntimeError(f"run {manifest['run_id']} has no _SUCCESS: it did not commit")
    problems = manifest_problems(manifest)
    if problems:
        # A retry would launch nothing new: a person has to look (deploy/README.md).
        raise AirflowFailException(
            f"run {manifest['run_id']} for {day} does not reconcile: " + "; ".join(problems)
        )
    alarms = run_alarms(manifest)
    if alarms:
        # Committed and accounted for, but a retry would read the same files: a person has to
        # get an input delivered again or look at a channel (deploy/README.md).
        raise AirflowFailException(
            f"run {manifest['run_id']} for {day} committed, but: " + "; ".join(alarms)
        )


with DAG(
    dag_id="payments_nightly_batch",
    description="Nightly batch of the previous Bahrain day's payment events",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="Asia/Bahrain"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=15),
        "retry_exponential_backoff": True,
    },
    params={
        "day": Param(
            None,
            type=["null", "string"],
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            description="Bahrain day to process (YYYY-MM-DD); empty: the previous day",
        )
    },
    user_defined_macros={
        "payments_day": day_to_process,
        "landing_glob": landing_glob,
        "batch_job_name": batch_job_name,
    },
    tags=["payments", "dataflow"],
) as dag:
    launch = DataflowStartFlexTemplateOperator(
        task_id="launch_batch",
        project_id=f"{{{{ {CONFIG}.project }}}}",
        location=f"{{{{ {CONFIG}.region }}}}",
        body={
            "launchParameter": {
                "jobName": f"{{{{ batch_job_name({DAY}) }}}}",
                "containerSpecGcsPath": f"{{{{ {CONFIG}.batch_template }}}}",
                "parameters": {
                    "input": f"{{{{ landing_glob({CONFIG}.landing, {DAY}) }}}}",
                    "output": f"{{{{ {CONFIG}.lake }}}}",
                    "pseudonym_key_secret": f"{{{{ {CONFIG}.pseudonym_key_secret }}}}",
                    "sdk_container_image": f"{{{{ {CONFIG}.worker_image }}}}",
                    "sdk_location": "container",
                },
                "environment": {
                    "serviceAccountEmail": f"{{{{ {CONFIG}.batch_service_account }}}}",
                    "stagingLocation": f"{{{{ {CONFIG}.staging_location }}}}",
                    "tempLocation": f"{{{{ {CONFIG}.temp_location }}}}",
                    "maxWorkers": 10,
                    "additionalUserLabels": {"pipeline": "payments-batch"},
                },
            }
        },
        # One job name per day (no random suffix): Dataflow refuses a second active job of
        # that name, so a retry cannot race a still-running attempt.
        append_job_name=False,
        wait_until_finished=True,
        execution_timeout=timedelta(hours=4),
    )
    check = PythonOperator(
        task_id="check_manifest",
        python_callable=check_manifest,
        retries=3,
        retry_delay=timedelta(minutes=2),
        retry_exponential_backoff=False,
    )
    launch >> check
