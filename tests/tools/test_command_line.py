"""The tools' option names: dashes in --help, underscores (the pipelines' spelling) accepted
(the one rule is `pipelines.cli.respelled`, used by every command's `cli.Parser`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import cli
from pipelines.cli import respelled
from tools import generate, replay

KNOWN = ["--out-of-order", "--work-dir", "--seed"]


def _parser() -> cli.Parser:
    parser = cli.Parser(prog="tool")
    parser.add_argument("--out-of-order", type=float, default=0.1)
    parser.add_argument("--work-dir")
    return parser


def test_an_option_spelled_with_underscores_is_read_as_its_dashed_name() -> None:
    assert respelled(["--out_of_order", "0.2"], KNOWN) == ["--out-of-order", "0.2"]


def test_an_option_joined_to_its_value_is_respelled_with_the_value_kept() -> None:
    assert respelled(["--work_dir=/tmp/a_b"], KNOWN) == ["--work-dir=/tmp/a_b"]


def test_values_and_arguments_after_a_double_dash_are_left_as_they_are() -> None:
    argv = ["--seed", "7", "a_b", "--", "--work_dir"]
    assert respelled(argv, KNOWN) == argv


def test_the_parser_takes_both_spellings_of_an_option() -> None:
    parser = _parser()
    assert parser.parse(["--out_of_order", "0.3"]).out_of_order == 0.3
    assert parser.parse(["--out-of-order", "0.4"]).out_of_order == 0.4


def test_help_lists_each_option_in_one_spelling_and_names_the_other() -> None:
    text = _parser().format_help()
    assert "--out-of-order OUT_OF_ORDER" in text
    assert "--out_of_order OUT_OF_ORDER" not in text
    assert "--out_of_order for --out-of-order" in " ".join(text.split())


def test_a_misspelled_option_is_refused_naming_the_dashed_spelling(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit, match="did you mean --out-of-order"):
        _parser().parse(["--out_of_ordr", "0.2"])
    assert capsys.readouterr().err.strip().endswith("did you mean --out-of-order?")


def test_generate_takes_its_rates_spelled_with_underscores(tmp_path: Path) -> None:
    config, _ = generate._parse_args(["--out", str(tmp_path), "--invalid_rate", "0.5"])
    assert config.invalid_rate == 0.5


def test_replay_takes_its_options_spelled_with_underscores(tmp_path: Path) -> None:
    args = replay.parse_args(
        ["--topic", "projects/p/topics/t", "--out_of_order", "0.3", "--work_dir", str(tmp_path)]
    )
    assert (args.out_of_order, args.work_dir) == (0.3, str(tmp_path))
