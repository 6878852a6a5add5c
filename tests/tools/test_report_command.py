"""The report's command line: what it refuses, before reading anything (exit status 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.report.command import main


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_a_period_that_is_none_is_refused_with_the_forms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--output", str(tmp_path), "--period", "2017-H3", "--out", str(tmp_path / "r")]
    assert "YYYY-H1, YYYY-H2, YYYY-Q1..YYYY-Q4 or YYYY" in _refused(argv, capsys)


def test_an_output_root_without_aggregates_is_refused_with_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--output", str(tmp_path / "nowhere"), "--period", "2017-H1"]
    err = _refused([*argv, "--out", str(tmp_path / "r")], capsys)
    assert "is not a folder" in err
    assert "pipelines.batch" in err
    err = _refused(["--output", str(tmp_path), "--period", "2017", "--out", str(tmp_path / "r")],
                   capsys)  # fmt: skip
    assert "holds no aggregates" in err
    assert not (tmp_path / "r" / "figures.json").exists()


def test_help_names_the_periods(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for words in ("--period", "--compare", "YYYY-Qn", "figures.json", "report.ar.html"):
        assert words in text
