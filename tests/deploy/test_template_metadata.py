"""The Flex Templates' metadata.json against the pipelines' real options: no drift, every
parameter documented and validated, and accepted by gcloud where it is installed."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipelines import batch, streaming

TEMPLATES = Path(__file__).parents[2] / "deploy" / "templates"
PARSERS = {"batch": batch._parser, "streaming": streaming._parser}
# The pipelines' run() refuses to start without these.
REQUIRED = {"batch": {"input", "output"}, "streaming": {"input_subscription", "output"}}
PARAMETER_KEYS = {"name", "label", "helpText", "isOptional", "regexes"}
PIPELINES = sorted(PARSERS)


def metadata(pipeline: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((TEMPLATES / pipeline / "metadata.json").read_text())
    return loaded


def parameters(pipeline: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in metadata(pipeline)["parameters"]}


def pipeline_options(pipeline: str) -> dict[str, argparse.Action]:
    """The pipeline's own options (what --help lists), by name; Beam's standard ones excluded."""
    parser = PARSERS[pipeline]()
    return {a.dest: a for a in parser._actions if not isinstance(a, argparse._HelpAction)}


def matches(parameter: dict[str, Any], value: str) -> bool:
    return all(re.search(pattern, value) for pattern in parameter["regexes"])


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_metadata_lists_exactly_the_options_the_pipeline_accepts(pipeline: str) -> None:
    assert set(parameters(pipeline)) == set(pipeline_options(pipeline))


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_parameters_are_listed_once(pipeline: str) -> None:
    names = [p["name"] for p in metadata(pipeline)["parameters"]]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_only_required_options_are_not_optional(pipeline: str) -> None:
    mandatory = {n for n, p in parameters(pipeline).items() if not p["isOptional"]}
    assert mandatory == REQUIRED[pipeline]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_parameter_has_label_help_and_validation(pipeline: str) -> None:
    for parameter in metadata(pipeline)["parameters"]:
        assert set(parameter) == PARAMETER_KEYS, parameter["name"]
        assert parameter["label"].strip(), parameter["name"]
        assert parameter["helpText"].strip(), parameter["name"]
        assert parameter["regexes"], parameter["name"]
        for pattern in parameter["regexes"]:
            re.compile(pattern)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_integer_options_accept_whole_numbers_only(pipeline: str) -> None:
    params = parameters(pipeline)
    integers = [n for n, a in pipeline_options(pipeline).items() if a.type is int]
    assert integers
    for name in integers:
        assert matches(params[name], "60"), name
        for bad in ("-1", "1.5", "6O", "", "60 "):
            assert not matches(params[name], bad), (name, bad)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_path_options_accept_cloud_storage_only(pipeline: str) -> None:
    params = parameters(pipeline)
    paths = [n for n in params if n in {"input", "output", "pseudonym_key_file"}]
    assert paths
    for name in paths:
        assert matches(params[name], "gs://payments-lake/payments-v1"), name
        for bad in ("/local/out", "s3://bucket/x", "gs://bucket/a\nb", ""):
            assert not matches(params[name], bad), (name, bad)


def test_batch_input_accepts_a_landing_day_glob() -> None:
    assert matches(parameters("batch")["input"], "gs://landing/2017-06-30/*.jsonl*")


def test_subscription_option_accepts_subscription_paths_only() -> None:
    parameter = parameters("streaming")["input_subscription"]
    assert matches(parameter, "projects/payments-prod/subscriptions/payments-ingest")
    for bad in ("projects/p/topics/payments", "payments-ingest", "projects//subscriptions/s"):
        assert not matches(parameter, bad), bad


def test_aggregates_topic_option_accepts_topic_paths_only() -> None:
    parameter = parameters("streaming")["aggregates_topic"]
    assert matches(parameter, "projects/payments-prod/topics/live-aggregates")
    for bad in ("projects/p/subscriptions/s", "live-aggregates"):
        assert not matches(parameter, bad), bad


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_secret_option_accepts_secret_versions_only(pipeline: str) -> None:
    parameter = parameters(pipeline)["pseudonym_key_secret"]
    assert matches(parameter, "projects/payments-prod/secrets/pseudonym-key/versions/3")
    for bad in ("projects/p/secrets/pseudonym-key", "pseudonym-key", "gs://b/key"):
        assert not matches(parameter, bad), bad


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_defaults_in_help_text_are_the_pipeline_defaults(pipeline: str) -> None:
    options = pipeline_options(pipeline)
    stated = {
        name: found.group(1)
        for name, p in parameters(pipeline).items()
        if (found := re.search(r"\(default (\S+)\)", p["helpText"]))
    }
    assert stated == {
        name: str(action.default)
        for name, action in options.items()
        if action.default is not None and name in stated
    }
    assert set(stated) == {n for n, a in options.items() if a.default is not None}


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud (Google Cloud CLI) not found")
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_gcloud_builds_a_template_spec_from_the_metadata(pipeline: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
    }
    image = f"me-central2-docker.pkg.dev/payments-test/payments/payments-launcher-{pipeline}:t"
    built = subprocess.run(
        [
            "gcloud",
            "dataflow",
            "flex-template",
            "build",
            f"gs://payments-test-dataflow/templates/payments-{pipeline}-t.json",
            f"--image={image}",
            "--sdk-language=PYTHON",
            f"--metadata-file={TEMPLATES / pipeline / 'metadata.json'}",
            "--project=payments-test",
            "--print-only",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    spec = json.loads(built.stdout.removeprefix("|-").strip())
    assert spec["image"] == image
    assert spec["sdkInfo"]["language"] == "PYTHON"
    assert spec["metadata"]["parameters"] == metadata(pipeline)["parameters"]
