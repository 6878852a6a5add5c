"""The whole of H1 2017, generated and ingested, reproduces the published figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipelines.helpers import make_landing, run_batch
from tools.calibration import compare


@pytest.mark.slow
@pytest.mark.usefixtures("key_env")
def test_h1_2017_run_reproduces_published_counts_and_amounts_within_2_percent(
    tmp_path: Path,
) -> None:
    from tools.generate import PROFILES

    config = PROFILES["h1-2017"]
    make_landing(tmp_path, **{f: getattr(config, f) for f in config.__dataclass_fields__})
    manifest = run_batch(str(tmp_path / "landing" / "*" / "*.jsonl"), tmp_path / "out")
    assert manifest["reconciles"]
    for channel, count, measured_count, published, measured_bhd, deviation in compare(
        str(tmp_path / "out")
    ):
        assert deviation <= 0.02, (channel, count, measured_count, published, measured_bhd)
