"""scripts/sample: where it writes (SAMPLE_DIR), what it passes on (generator arguments, the
key file of PSEUDONYM_KEY_FILE). Each test runs the script on a day at a small scale."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.skipif(
    not (ROOT / ".venv" / "bin" / "python").exists(),
    reason="scripts/sample runs in the repository's .venv (bash scripts/test makes it)",
)


def sample(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`bash scripts/sample ARGS` in a clean environment plus `env`."""
    clean = {"HOME": os.environ.get("HOME", str(tmp_path)), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        ["bash", "scripts/sample", *args],
        cwd=ROOT,
        env={**clean, "SAMPLE_DIR": str(tmp_path / "try"), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sample_writes_under_sample_dir_with_the_generator_arguments(tmp_path: Path) -> None:
    ran = sample(tmp_path, "--days", "1", "--scale", "0.02")
    assert ran.returncode == 0, ran.stderr[-3000:]
    totals = json.loads((tmp_path / "try" / "landing" / "_generator_totals.json").read_text())
    assert [f.split("/")[0] for f in totals["files"]] == ["2017-06-24"] * 3
    assert list((tmp_path / "try" / "out" / "runs").glob("*/_SUCCESS"))


def test_sample_reads_the_key_from_pseudonym_key_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-key"
    ran = sample(tmp_path, "--days", "1", "--scale", "0.02", PSEUDONYM_KEY_FILE=str(missing))
    assert ran.returncode != 0
    assert f"using the pseudonymisation key in {missing}" in ran.stdout
    assert ran.stderr.strip().splitlines()[-1].startswith("error: pseudonymisation key:")
    assert str(missing) in ran.stderr
