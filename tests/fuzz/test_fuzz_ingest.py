"""The fuzz target, time-boxed: coverage-guided random bytes never escape or leak."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris installs on CPython 3.11 only (dev extras)")

TARGET = Path(__file__).with_name("fuzz_ingest.py")
ROOT = TARGET.parents[2]
SECONDS = int(os.environ.get("FUZZ_SECONDS", "45"))


@pytest.mark.slow
def test_fuzzing_process_block_finds_no_escape_and_no_leak(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            str(corpus),
            f"-max_total_time={SECONDS}",
            "-rss_limit_mb=4096",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done" in done.stderr
