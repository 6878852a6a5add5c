"""The README's recipes run as written, from a fresh shell: its command blocks are read out of
README.md and the cheap ones run verbatim (in a scratch folder beside a link to the
repository's .venv, with only HOME and PATH set). The calibration recipe (minutes) is run by
tests/pipelines/test_calibration.py; the streaming one runs until stopped, so only its replay
command is checked here."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tools import replay

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
VENV = ROOT / ".venv"
needs_venv = pytest.mark.skipif(
    not (VENV / "bin" / "python").exists(),
    reason="the recipes run the repository's .venv/bin/python (bash scripts/test makes it)",
)


def blocks(heading: str, language: str) -> list[str]:
    """The fenced blocks in `language` of the README section under `heading`."""
    section = README.split(f"\n{heading}\n", 1)[1]
    section = re.split(r"\n#{2,4} ", section, maxsplit=1)[0]  # not a "# comment" in a block
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def run_in(folder: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a command in `folder` as from a fresh shell: only HOME and PATH."""
    env = {"HOME": os.environ.get("HOME", str(folder)), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def scratch(tmp: Path) -> Path:
    """A folder where `.venv/bin/python` is the repository's (the recipes' relative paths)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / ".venv").symlink_to(VENV)
    return tmp


@pytest.fixture(scope="module")
def batch_recipe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """'Running the batch job', run as written: its folder and its output."""
    folder = scratch(tmp_path_factory.mktemp("readme") / "batch")
    (recipe,) = blocks("## Running the batch job", "bash")
    ran = run_in(folder, ["bash", "-e", "-c", recipe])
    return folder, f"exit status {ran.returncode}\n{ran.stderr[-3000:]}"


@pytest.fixture(scope="module")
def query_folder(batch_recipe: tuple[Path, str]) -> Path:
    """A folder whose sample/out is the batch recipe's output, as after scripts/sample."""
    folder, _ = batch_recipe
    (folder / "sample").mkdir(exist_ok=True)
    (folder / "sample" / "out").symlink_to(folder / "out")
    return folder


def test_the_commands_run_the_venvs_python() -> None:
    bare = [line for line in README.splitlines() if re.search(r"(?<!/bin/)python -m ", line)]
    assert bare == []


def test_the_recipes_outputs_are_ignored_by_git() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    commands = "\n".join(re.findall(r"```bash\n(.*?)```", README, re.S))
    folders = {
        path.strip("'\"").rstrip("/").split("/")[0]
        for path in re.findall(r"--out(?:put)? (\S+)", commands)
        if "://" not in path and path != "OUT"
    }
    assert folders >= {"out", "landing", "h1", "stream-out"}
    ran = subprocess.run(
        ["git", "check-ignore", "--no-index", *(f"{f}/x" for f in sorted(folders)), "sample/x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert sorted(ran.stdout.split()) == sorted([*(f"{f}/x" for f in folders), "sample/x"])


@needs_venv
def test_the_batch_recipe_runs_as_written(batch_recipe: tuple[Path, str]) -> None:
    folder, outcome = batch_recipe
    assert outcome.startswith("exit status 0"), outcome
    assert list((folder / "out" / "runs").glob("*/_SUCCESS"))


@needs_venv
@pytest.mark.parametrize("number", [0, 1])
def test_the_query_recipes_run_as_written(query_folder: Path, number: int) -> None:
    recipe = blocks("### Query it", "python")[number]
    ran = run_in(query_folder, [".venv/bin/python", "-c", recipe])
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "portal" in ran.stdout


@needs_venv
def test_the_rejected_query_runs_when_nothing_was_rejected(
    query_folder: Path, tmp_path: Path
) -> None:
    folder = scratch(tmp_path / "none-rejected")
    shutil.copytree(query_folder / "out", folder / "sample" / "out")
    shutil.rmtree(folder / "sample" / "out" / "rejected", ignore_errors=True)
    ran = run_in(folder, [".venv/bin/python", "-c", blocks("### Query it", "python")[0]])
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "nothing rejected" in ran.stdout


@needs_venv
@pytest.mark.slow
def test_the_cloud_storage_recipe_runs_as_written(tmp_path: Path) -> None:
    """Slow: Beam's GCS client waits ~25 s for credentials there are none of."""
    (recipe,) = blocks("### On Cloud Storage", "bash")
    ran = run_in(scratch(tmp_path), ["bash", "-e", "-c", recipe])
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "committed payments files from 1 committed runs" in ran.stderr
    listed = [line for line in ran.stdout.splitlines() if line.startswith("gs://demo/out/")]
    assert len(listed) == 3  # `tools.committed … | head -3`


def test_the_streaming_recipes_replay_command_is_accepted_and_lasts_several_panes() -> None:
    (recipe,) = blocks("## Streaming locally", "bash")
    (line,) = [c for c in recipe.replace("\\\n", " ").splitlines() if "tools.replay" in c]
    words = shlex.split(line, comments=True)
    command = words[words.index("tools.replay") + 1 :]
    args = replay.parse_args(command)
    assert 2_000 / args.rate >= 3 * 60  # a day of ~2,200 messages: at least three 60 s panes
