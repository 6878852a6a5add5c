"""One Beam version, pinned in pyproject.toml, and the same everywhere deploy/ builds or names."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
WORKER_DOCKERFILE = DEPLOY / "images" / "worker.Dockerfile"
LAUNCHER_DOCKERFILE = DEPLOY / "images" / "launcher.Dockerfile"
# Every way a Beam version can be written down in deploy/.
VERSION_MENTIONS = (
    re.compile(r"beam_python3\.\d+_sdk:(?P<version>[^\s\"'`)]+)"),
    re.compile(r"apache-beam(?:\[gcp\])?==(?P<version>[^\s\"'`)]+)"),
    re.compile(r"BEAM_VERSION=(?P<version>[0-9][^\s\"'`,]*)"),
)


def pinned_beam() -> str:
    (version,) = re.findall(
        r'^\s*"apache-beam\[gcp\]==([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M
    )
    return str(version)


def deploy_text_files() -> list[Path]:
    return [
        p
        for p in sorted(DEPLOY.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]


def from_lines(dockerfile: Path) -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M)


def test_beam_is_pinned_to_one_exact_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned_beam())


def test_every_beam_version_written_in_deploy_is_the_pinned_one() -> None:
    found = {
        f"{path.relative_to(ROOT)}: {match.group(0)}": match.group("version")
        for path in deploy_text_files()
        for pattern in VERSION_MENTIONS
        for match in pattern.finditer(path.read_text())
    }
    assert found, "deploy/ names no Beam version at all"
    wrong = {where: v for where, v in found.items() if v not in (pinned_beam(), "${BEAM_VERSION}")}
    assert wrong == {}


def test_worker_image_is_beams_python_sdk_at_the_built_version() -> None:
    assert from_lines(WORKER_DOCKERFILE) == ["apache/beam_python3.11_sdk:${BEAM_VERSION}"]
    # No default: a build that is not told the version fails instead of guessing one.
    assert re.search(r"^ARG BEAM_VERSION$", WORKER_DOCKERFILE.read_text(), re.M)


def test_every_image_build_is_given_the_beam_version() -> None:
    config = yaml.safe_load((DEPLOY / "cloudbuild.yaml").read_text())
    builds = [step["args"] for step in config["steps"] if step["args"][0] == "build"]
    assert len(builds) == 3
    for args in builds:
        assert "--build-arg=BEAM_VERSION=${_BEAM_VERSION}" in args


def test_build_script_passes_the_pinned_version_to_cloud_build() -> None:
    env = {
        "PATH": os.environ["PATH"],
        "PROJECT": "payments-test",
        "REGION": "me-central2",
        "BUCKET": "payments-test-dataflow",
        "REPOSITORY": "payments",
        "TAG": "t1",
        "DRY_RUN": "1",
    }
    built = subprocess.run(
        ["bash", str(DEPLOY / "build_templates.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    (submit,) = [
        c for c in map(shlex.split, built.stdout.splitlines()) if c[1:3] == ["builds", "submit"]
    ]
    assert (
        f"--substitutions=_BEAM_VERSION={pinned_beam()},_IMAGE_PREFIX=me-central2-docker.pkg.dev/payments-test/payments,_TAG=t1"
        in submit
    )


def test_launcher_image_is_googles_python_launcher_running_the_entry_point() -> None:
    text = LAUNCHER_DOCKERFILE.read_text()
    assert from_lines(LAUNCHER_DOCKERFILE) == [
        "gcr.io/dataflow-templates-base/python311-template-launcher-base:${LAUNCHER_TAG}"
    ]
    assert "ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/deploy/flex/main.py" in text
    assert "COPY deploy/flex/main.py deploy/flex/main.py" in text
    assert (DEPLOY / "flex" / "main.py").is_file()


def test_launcher_and_worker_images_run_the_same_python() -> None:
    (launcher,) = re.findall(r"python(\d)(\d+)-template-launcher", LAUNCHER_DOCKERFILE.read_text())
    (worker,) = re.findall(r"beam_python(\d)\.(\d+)_sdk", WORKER_DOCKERFILE.read_text())
    assert launcher == worker
