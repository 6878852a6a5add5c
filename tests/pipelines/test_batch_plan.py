"""What `batch.plan` decides before any work: the run, and how many local workers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import DirectOptions

from pipelines import batch

# The plan resolves the pseudonymisation key source: the tests' key in the environment.
pytestmark = pytest.mark.usefixtures("key_env")


@pytest.fixture(autouse=True)
def _malloc_setting_restored() -> Iterator[None]:
    """A plan with worker processes sets MALLOC_ARENA_MAX in this process for its workers."""
    before = os.environ.get("MALLOC_ARENA_MAX")
    yield
    if before is None:
        os.environ.pop("MALLOC_ARENA_MAX", None)
    else:
        os.environ["MALLOC_ARENA_MAX"] = before


def _workers(plan: batch.BatchPlan) -> tuple[int, str | None]:
    direct = plan.options.view_as(DirectOptions)
    return direct.direct_num_workers, direct.direct_running_mode


def test_a_small_input_runs_in_this_process(small: Path, tmp_path: Path) -> None:
    plan = batch.plan(["--input", str(small), "--output", str(tmp_path / "out")])
    assert _workers(plan)[0] == 1


def test_a_large_input_gets_two_worker_processes(tmp_path: Path) -> None:
    large = tmp_path / "large.jsonl"
    with large.open("wb") as handle:
        handle.truncate(batch.SMALL_INPUT_BYTES + 1)
    plan = batch.plan(["--input", str(large), "--output", str(tmp_path / "out")])
    assert _workers(plan) == (2, "multi_processing")


def test_workers_named_on_the_command_line_are_kept(small: Path, tmp_path: Path) -> None:
    argv = ["--input", str(small), "--output", str(tmp_path / "out"), "--direct_num_workers", "2"]
    assert _workers(batch.plan(argv)) == (2, "multi_processing")


def test_the_plan_names_the_run_by_its_inputs(small: Path, tmp_path: Path) -> None:
    plan = batch.plan(["--input", str(small), "--output", str(tmp_path / "out") + "/"])
    assert plan.run.inputs == ((str(small), small.stat().st_size),)
    assert plan.run.output_root == str(tmp_path / "out")
    assert plan.run.input_key == batch.plan(["--input", str(small), "--output", "x"]).run.input_key


def test_a_relative_output_and_input_are_named_absolutely(
    small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(small.parent.parent)
    plan = batch.plan(["--input", "in/portal.jsonl", "--output", "out"])
    assert plan.run.output_root == str(small.parent.parent / "out")
    assert plan.run.inputs == ((str(small), small.stat().st_size),)


def test_worker_processes_get_two_malloc_arenas(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    argv = ["--input", str(small), "--output", str(tmp_path / "out"), "--direct_num_workers", "2"]
    batch.plan(argv)
    assert os.environ["MALLOC_ARENA_MAX"] == "2"


def test_an_operators_malloc_arena_setting_is_kept(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    argv = ["--input", str(small), "--output", str(tmp_path / "out"), "--direct_num_workers", "2"]
    batch.plan(argv)
    assert os.environ["MALLOC_ARENA_MAX"] == "8"


def test_a_run_in_this_process_leaves_malloc_as_it_is(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    batch.plan(["--input", str(small), "--output", str(tmp_path / "out")])
    assert "MALLOC_ARENA_MAX" not in os.environ
