"""The Flex Template entry point runs the pipeline its image is built for, arguments untouched."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from deploy.flex.main import PIPELINE_ENV, launch
from pipelines import batch, streaming

ARGS = [
    "--input=gs://landing/2017-06-30/*.jsonl*",
    "--output=gs://lake/payments-v1",
    "--pseudonym_key_secret=projects/payments-prod/secrets/pseudonym-key/versions/3",
]


class PipelineMain:
    """Stands in for a pipeline's main(argv): records its calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> int:
        self.calls.append(list(argv))
        return 3


@pytest.mark.parametrize("name", ["batch", "streaming"])
def test_launcher_runs_the_configured_pipeline_with_all_arguments(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline_main = PipelineMain()
    monkeypatch.setattr({"batch": batch, "streaming": streaming}[name], "main", pipeline_main)
    assert launch(ARGS, {PIPELINE_ENV: name}) == 3
    assert pipeline_main.calls == [ARGS]


@pytest.mark.parametrize("configured", [{}, {PIPELINE_ENV: "replay"}])
def test_launcher_refuses_an_unknown_pipeline(configured: dict[str, str]) -> None:
    with pytest.raises(SystemExit, match=PIPELINE_ENV):
        launch(ARGS, configured)
