"""Fixtures of the deploy tests: offline Dataflow jobs of both pipelines, built once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.dataflow_jobs import WORKER_IMAGE, build_batch_job, build_streaming_job


@pytest.fixture(scope="session")
def batch_job() -> Any:
    return build_batch_job([f"--sdk_container_image={WORKER_IMAGE}"])


@pytest.fixture(scope="session")
def streaming_job() -> Any:
    return build_streaming_job([f"--sdk_container_image={WORKER_IMAGE}"])


@pytest.fixture(params=["batch", "streaming"])
def pipeline_job(request: pytest.FixtureRequest) -> tuple[str, Any]:
    """(pipeline name, its job), for checks both jobs must pass."""
    name: str = request.param
    return name, request.getfixturevalue(f"{name}_job")
