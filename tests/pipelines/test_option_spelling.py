"""The pipelines take every option spelled with dashes or with underscores, Beam's too: one
respelling (`pipelines.cli.respelled`) of the command line, read by our parser and by Beam's
PipelineOptions alike. What neither spelling names is still refused (exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    StandardOptions,
)

from pipelines import batch, compact, streaming
from pipelines.options import CompactOptions
from tests.deploy.dataflow_jobs import DATAFLOW_FLAGS, LAKE, SUBSCRIPTION
from tests.pipelines.helpers import make_landing

pytestmark = pytest.mark.usefixtures("key_env")


def _counts(manifest: dict[str, Any]) -> dict[str, Any]:
    return {key: manifest[key] for key in ("counts", "by_channel", "rejected_by_reason")}


def test_a_batch_run_with_dashed_options_gives_the_manifest_counts_of_underscored_ones(
    tmp_path: Path,
) -> None:
    make_landing(tmp_path, days=1, scale=0.1, seed=5)
    inputs = str(tmp_path / "landing" / "*" / "*.jsonl*")
    # 250 bytes rejects some events as too long: the counts show the option was read.
    underscored = ["--max_event_bytes", "250", "--direct_num_workers", "1", "--no_compact"]
    dashed = ["--max-event-bytes", "250", "--direct-num-workers", "1", "--no-compact"]
    with_underscores = batch.run(["--input", inputs, "--output", str(tmp_path / "a"), *underscored])
    with_dashes = batch.run(["--input", inputs, "--output", str(tmp_path / "b"), *dashed])
    assert with_underscores["rejected_by_reason"].get("LINE_TOO_LONG", 0) > 0
    assert _counts(with_dashes) == _counts(with_underscores)


def test_a_dashed_beam_option_reaches_beams_own_options(small: Path, tmp_path: Path) -> None:
    """Two workers named for a one-line input: kept, so Beam read the dashed spelling."""
    argv = ["--input", str(small), "--output", str(tmp_path / "out"), "--direct-num-workers", "2"]
    assert batch.plan(argv).options.view_as(DirectOptions).direct_num_workers == 2


def _dashed(option: str) -> str:
    name, equals, value = option.partition("=")
    return name.replace("_", "-") + equals + value


def test_the_streaming_pipeline_takes_its_options_spelled_with_dashes() -> None:
    """A Dataflow plan (a local one would hook Beam's Pub/Sub reader in this process)."""
    argv = [*map(_dashed, DATAFLOW_FLAGS), "--input-subscription", SUBSCRIPTION, "--output", LAKE]
    planned = streaming.plan([*argv, "--write-every-seconds", "7"])
    assert planned.options.view_as(StandardOptions).runner == "DataflowRunner"
    assert planned.options.view_as(GoogleCloudOptions).temp_location.startswith("gs://")
    assert planned.streaming.input_subscription == SUBSCRIPTION
    assert planned.streaming.write_every_seconds == 7


def test_the_compaction_takes_its_options_spelled_with_dashes(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    planned = compact.plan(["--output", str(tmp_path / "out"), "--max-files", "3"])
    assert planned.options.view_as(CompactOptions).max_files == 3


def test_an_unknown_dashed_option_exits_2_naming_it_and_the_closest_spelling(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--input", str(small), "--output", str(tmp_path / "out"), "--max-evnt-bytes", "300"]
    with pytest.raises(SystemExit) as refused:
        batch.plan(argv)
    assert refused.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: unknown option --max-evnt-bytes: did you mean --max_event_bytes?"
    )


def test_an_abbreviated_dashed_option_is_refused_as_an_abbreviation(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--input", str(small), "--output", str(tmp_path / "out"), "--max-event", "300"]
    with pytest.raises(SystemExit):
        batch.plan(argv)
    assert "--max-event (options cannot be abbreviated): did you mean --max_event_bytes?" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("parser", [batch._parser, streaming._parser, compact._parser])
def test_each_pipelines_help_says_both_spellings_are_accepted(parser: Any) -> None:
    text = " ".join(parser().format_help().split())
    assert "Options may also be spelled with dashes for underscores" in text
    assert "Apache Beam's options too" in text
