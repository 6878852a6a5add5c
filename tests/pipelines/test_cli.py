"""Every entry point refuses a bad command line up front: exit status 2, one `error:` line
(the last of stderr, no traceback) that says what to do, within seconds, before Beam starts.

Each case runs the real command as a subprocess. A fixture starts its cases together (as many
at once as there are CPUs) and each test checks one case. The cases beyond the issue's list
are marked slow: each costs an interpreter start with Beam imported (about 1.5 s of CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines import batch, cli
from tests.emulators import batch_command, gcs_emulator

ROOT = Path(__file__).parents[2]
KEY = "test-pseudonym-key-0123456789abcdef"
# "Refused up front": a run that gets as far as starting Beam works for 10 s or more before it
# fails. Measured as the process's own CPU time, which other work on the machine (parallel
# cases, other test runs) does not inflate; wall time only has to show it did not hang.
UP_FRONT_CPU_SECONDS = 5.0
HANG_SECONDS = 20.0
ENTRY_POINTS = ("batch", "streaming", "generate", "replay", "committed", "calibration")
SUBSCRIPTION = "projects/demo/subscriptions/payments-ingest"


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    cpu_seconds: float

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def run(command: list[str], env: dict[str, str] | None = None) -> Ran:
    """Run a command to its end; its output, wall time and CPU time (its own and that of the
    processes it waited for, from wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PAYMENTS_PSEUDONYM_KEY": KEY, **(env or {})},
            stdout=out,
            stderr=err,
        )
        watchdog = threading.Timer(120, process.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            watchdog.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Ran(
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            seconds,
            usage.ru_utime + usage.ru_stime,
        )


# The two Beam pipelines, and the tools around them.
MODULES = {
    name: f"pipelines.{name}" if name in ("batch", "streaming") else f"tools.{name}"
    for name in ENTRY_POINTS
}


def module(name: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", MODULES[name], *map(str, args)]


def run_all(commands: dict[str, list[str]], env: dict[str, str] | None = None) -> dict[str, Ran]:
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {name: pool.submit(run, command, env) for name, command in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def assert_refused(ran: Ran, *expected: str) -> str:
    """Exit status 2, stderr ending in the one `error:` line, holding every expected text; no
    traceback; refused before any real work. Returns that line."""
    assert ran.returncode == cli.EXIT_USAGE, ran.stderr[-3000:]
    assert "Traceback" not in ran.stderr, ran.stderr[-3000:]
    line = ran.last_line
    assert line.startswith("error: "), ran.stderr[-3000:]
    assert [x for x in ran.stderr.splitlines() if x.startswith("error:")] == [line]
    for text in expected:
        assert text in line
    assert ran.cpu_seconds < UP_FRONT_CPU_SECONDS
    assert ran.seconds < HANG_SECONDS
    return line


@dataclass(frozen=True)
class Paths:
    landing: Path  # landing/2017-06-2{4,5}/{kiosk,portal}.jsonl
    day: Path
    not_gzip: Path
    a_file: Path
    empty: Path
    out: Path


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    root = tmp_path_factory.mktemp("cli")
    landing = root / "landing"
    for day in ("2017-06-24", "2017-06-25"):
        (landing / day).mkdir(parents=True)
        for channel in ("kiosk", "portal"):
            (landing / day / f"{channel}.jsonl").write_text("{}\n")
    not_gzip = root / "other" / "portal.jsonl.gz"
    not_gzip.parent.mkdir()
    not_gzip.write_text("{}\n")
    a_file = root / "a-file"
    a_file.write_text("not a folder\n")
    (root / "empty").mkdir()
    return Paths(landing, landing / "2017-06-24", not_gzip, a_file, root / "empty", root / "out")


def cases(p: Paths) -> dict[str, list[str]]:
    """Every local case by name: the command that must be refused (or, help_*, answered)."""
    one = p.day / "kiosk.jsonl"
    good = ("--input", one, "--output", p.out)
    expanded = sorted(str(f) for f in p.landing.glob("*/*.jsonl"))  # what the shell passes
    stream = ("--input_subscription", SUBSCRIPTION, "--output", p.out)
    nothing = p.landing / "nothing" / "*.jsonl"
    beam = ("--runner", "FnApiRunner", "--direct_num_workers=1")
    commands = {
        "unquoted_glob": module("batch", "--input", *expanded, "--output", p.out),
        "misspelled": module("batch", *good, "--max-evnt-bytes", "100"),
        "abbreviated": module("batch", "--input", one, "--out", p.out),
        "unknown": module("batch", *good, "--frobnicate"),
        "misspelled_beam": module("batch", *good, "--runer", "FnApiRunner"),
        "bad_beam_value": module("batch", *good, "--direct_num_workers", "two"),
        "beam_options_pass": module("batch", *beam, "--input", nothing, "--output", p.out),
        "comma_entry_missing": module(
            "batch", "--input", f"{one},{p.landing}/2017-07-*/*.jsonl", "--output", p.out
        ),
        "directory": module("batch", "--input", p.landing, "--output", p.out),
        "only_directories": module("batch", "--input", f"{p.landing}/*", "--output", p.out),
        "not_gzip": module("batch", "--input", p.not_gzip, "--output", p.out),
        "output_is_file": module("batch", "--input", one, "--output", p.a_file),
        "output_under_file": module("batch", "--input", one, "--output", p.a_file / "out"),
        "output_unwritable": module("batch", "--input", one, "--output", "/sys/payments-out"),
        "no_output": module("batch", "--input", one),
        "empty_input": module("batch", "--input", "", "--output", p.out),
        "streaming_stray": module("streaming", *stream, "extra"),
        "streaming_misspelled": module(
            "streaming", "--input-subscripton", SUBSCRIPTION, "--output", p.out
        ),
        "streaming_batch_option": module("streaming", "--input", SUBSCRIPTION, "--output", p.out),
        "streaming_topic": module(
            "streaming", "--input_subscription", "projects/demo/topics/payments", "--output", p.out
        ),
        "streaming_output_is_file": module(
            "streaming", "--input_subscription", SUBSCRIPTION, "--output", p.a_file
        ),
        "generate_other_option": module("generate", "--output", p.out),
        "generate_output_is_file": module("generate", "--out", p.a_file),
        "replay_misspelled": module(
            "replay", "--topic", "projects/demo/topics/payments", "--out-of-ordr", "0.2"
        ),
        "replay_topic": module("replay", "--topic", "payments"),
        "committed_missing": module("committed", "--output", p.out / "missing"),
        "committed_empty": module("committed", "--output", p.empty),
        "committed_positional": module("committed", p.empty),
        "calibration_missing": module("calibration", p.out / "missing"),
        "calibration_empty": module("calibration", p.empty),
    }
    commands.update({f"help_{name}": module(name, "--help") for name in ENTRY_POINTS})
    return commands


# Cases beyond the list, run by the slow tests.
MORE = {
    "unknown",
    "bad_beam_value",
    "only_directories",
    "output_under_file",
    "no_output",
    "empty_input",
    "streaming_stray",
    "streaming_batch_option",
    "streaming_topic",
    "streaming_output_is_file",
    "generate_output_is_file",
    "replay_topic",
    "committed_positional",
}


@pytest.fixture(scope="module")
def refused(paths: Paths) -> dict[str, Ran]:
    """The quick tests' cases, run at once."""
    return run_all({name: c for name, c in cases(paths).items() if name not in MORE})


@pytest.fixture(scope="module")
def refused_more(paths: Paths) -> dict[str, Ran]:
    """The slow tests' cases, run at once."""
    return run_all({name: c for name, c in cases(paths).items() if name in MORE})


# batch: options


def test_an_unquoted_glob_is_refused_with_the_glob_to_quote(
    refused: dict[str, Ran], paths: Paths
) -> None:
    line = assert_refused(refused["unquoted_glob"], "unexpected arguments")
    assert line.endswith(f"quote the glob: --input '{paths.landing}/*/*.jsonl'")


def test_a_misspelled_option_is_refused_naming_the_right_one(refused: dict[str, Ran]) -> None:
    assert_refused(refused["misspelled"], "unknown option --max-evnt-bytes", "--max_event_bytes?")


def test_an_abbreviated_option_is_refused_naming_the_full_one(refused: dict[str, Ran]) -> None:
    assert_refused(refused["abbreviated"], "--out", "did you mean --output?")


@pytest.mark.slow
def test_an_unknown_option_is_refused(refused_more: dict[str, Ran]) -> None:
    assert_refused(refused_more["unknown"], "unknown option --frobnicate")


def test_a_misspelled_beam_option_is_refused_naming_beams_own(refused: dict[str, Ran]) -> None:
    assert_refused(refused["misspelled_beam"], "unknown option --runer", "did you mean --runner?")


@pytest.mark.slow
def test_a_beam_option_is_checked_by_beams_own_definition(refused_more: dict[str, Ran]) -> None:
    assert_refused(refused_more["bad_beam_value"], "--direct_num_workers", "invalid int value")


def test_beam_options_are_accepted(refused: dict[str, Ran]) -> None:
    """The command line passes; what is refused is the input that matches nothing."""
    assert_refused(refused["beam_options_pass"], "no input file matches")


@pytest.mark.slow
def test_a_missing_output_option_is_refused(refused_more: dict[str, Ran]) -> None:
    assert_refused(refused_more["no_output"], "--output is required")


@pytest.mark.slow
def test_an_empty_input_option_is_refused(refused_more: dict[str, Ran]) -> None:
    assert_refused(refused_more["empty_input"], "--input is empty")


def test_a_refused_command_line_shows_the_usage(refused: dict[str, Ran]) -> None:
    assert "usage: python -m pipelines.batch" in refused["misspelled"].stderr


# batch: input and output paths


def test_a_comma_separated_entry_that_matches_nothing_is_named(
    refused: dict[str, Ran], paths: Paths
) -> None:
    assert_refused(
        refused["comma_entry_missing"], f"no input file matches '{paths.landing}/2017-07-*/*.jsonl'"
    )


def test_a_directory_as_input_is_refused_with_the_glob_to_use(
    refused: dict[str, Ran], paths: Paths
) -> None:
    line = assert_refused(refused["directory"], f"{paths.landing} is a directory")
    assert line.endswith(f"use --input '{paths.landing}/*/*.jsonl*'")


@pytest.mark.slow
def test_a_glob_that_matches_only_directories_is_refused(
    refused_more: dict[str, Ran], paths: Paths
) -> None:
    line = assert_refused(refused_more["only_directories"], "matches only directories")
    assert line.endswith(f"use --input '{paths.landing}/*/*.jsonl*'")


def test_a_gz_file_that_is_not_gzip_is_named(refused: dict[str, Ran], paths: Paths) -> None:
    assert_refused(refused["not_gzip"], f"{paths.not_gzip} is named .gz but is not gzip")


def test_an_output_that_is_a_file_is_refused(refused: dict[str, Ran], paths: Paths) -> None:
    assert_refused(refused["output_is_file"], f"--output {paths.a_file} is a file")


@pytest.mark.slow
def test_an_output_under_a_file_is_refused(refused_more: dict[str, Ran], paths: Paths) -> None:
    assert_refused(refused_more["output_under_file"], f"{paths.a_file} is a file, not a folder")


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs Linux's /sys (never writable)")
def test_an_output_that_cannot_be_written_is_refused(refused: dict[str, Ran]) -> None:
    assert_refused(refused["output_unwritable"], "cannot write --output /sys/payments-out")


# the other entry points


@pytest.mark.slow
def test_streaming_refuses_a_stray_argument(refused_more: dict[str, Ran]) -> None:
    assert_refused(refused_more["streaming_stray"], "unexpected argument 'extra'")


def test_streaming_refuses_a_misspelled_option(refused: dict[str, Ran]) -> None:
    assert_refused(refused["streaming_misspelled"], "did you mean --input_subscription?")


@pytest.mark.slow
def test_streaming_refuses_the_batch_input_option(refused_more: dict[str, Ran]) -> None:
    assert_refused(refused_more["streaming_batch_option"], "--input", "--input_subscription?")


@pytest.mark.slow
def test_streaming_refuses_a_topic_for_its_subscription(refused_more: dict[str, Ran]) -> None:
    assert_refused(refused_more["streaming_topic"], "is a topic, not a subscription")


@pytest.mark.slow
def test_streaming_refuses_an_output_that_is_a_file(
    refused_more: dict[str, Ran], paths: Paths
) -> None:
    assert_refused(refused_more["streaming_output_is_file"], f"--output {paths.a_file} is a file")


def test_generate_refuses_another_commands_option(refused: dict[str, Ran]) -> None:
    assert_refused(refused["generate_other_option"], "unknown option --output", "--out?")


@pytest.mark.slow
def test_generate_refuses_an_output_that_is_a_file(
    refused_more: dict[str, Ran], paths: Paths
) -> None:
    assert_refused(refused_more["generate_output_is_file"], f"--out {paths.a_file} is a file")


def test_replay_refuses_a_misspelled_option(refused: dict[str, Ran]) -> None:
    assert_refused(refused["replay_misspelled"], "--out-of-ordr", "did you mean --out-of-order?")


@pytest.mark.slow
def test_replay_refuses_a_topic_that_is_no_topic_path(refused_more: dict[str, Ran]) -> None:
    assert_refused(refused_more["replay_topic"], "projects/PROJECT/topics/NAME")


def test_committed_refuses_a_missing_folder_saying_what_to_run(
    refused: dict[str, Ran], paths: Paths
) -> None:
    assert_refused(
        refused["committed_missing"], f"{paths.out / 'missing'} does not exist", "pipelines.batch"
    )


def test_committed_refuses_a_folder_without_runs(refused: dict[str, Ran]) -> None:
    assert_refused(refused["committed_empty"], "holds no pipeline run", "pipelines.batch")


@pytest.mark.slow
def test_committed_refuses_a_folder_given_without_its_option(
    refused_more: dict[str, Ran], paths: Paths
) -> None:
    assert_refused(refused_more["committed_positional"], f"did you mean --output {paths.empty}?")


def test_calibration_refuses_a_missing_folder_saying_what_to_run(
    refused: dict[str, Ran], paths: Paths
) -> None:
    assert_refused(
        refused["calibration_missing"], f"{paths.out / 'missing'} does not exist", "pipelines.batch"
    )


def test_calibration_refuses_a_folder_without_aggregates(refused: dict[str, Ran]) -> None:
    assert_refused(refused["calibration_empty"], "holds no daily aggregates", "pipelines.batch")


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_help_works_and_lists_the_exit_statuses(refused: dict[str, Ran], name: str) -> None:
    ran = refused[f"help_{name}"]
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert f"usage: python -m {MODULES[name]}" in ran.stdout
    text = " ".join(ran.stdout.split())
    assert "Exit status: 0 " in text
    assert "2 when the command line is refused" in text


def test_the_batch_usage_line_shows_input_and_output_as_required(refused: dict[str, Ran]) -> None:
    usage = refused["help_batch"].stdout.split("\n\n")[0]
    assert "--input PATTERN" in usage
    assert "--output ROOT" in usage
    assert "[--input" not in usage
    assert "[--output" not in usage


# gs:// paths, against the Cloud Storage emulator (slow: it starts a server)

BUCKET = "cli-tests"


@pytest.fixture(scope="module")
def refused_on_gcs() -> Iterator[dict[str, Ran]]:
    """The gs:// cases, run at once against one emulator (skipped when it is not installed)."""
    with gcs_emulator(BUCKET) as emulator:
        client = emulator.client()
        client.bucket(BUCKET).blob("landing/2017-06-24/kiosk.jsonl").upload_from_string("{}\n")
        client.bucket(BUCKET).blob("lake").upload_from_string("an object, not a folder")
        landing = emulator.url("landing", "2017-06-24", "kiosk.jsonl")
        commands = {
            "output_is_object": batch_command("--input", landing, "--output", emulator.url("lake")),
            "folder_as_input": batch_command(
                "--input", emulator.url("landing"), "--output", emulator.url("out")
            ),
            "no_match": batch_command(
                "--input", emulator.url("landing", "*", "*.csv"), "--output", emulator.url("out")
            ),
        }
        yield run_all(commands, emulator.env())


@pytest.mark.slow
def test_a_gcs_output_that_is_an_object_is_refused(refused_on_gcs: dict[str, Ran]) -> None:
    assert_refused(
        refused_on_gcs["output_is_object"], f"--output gs://{BUCKET}/lake is a file (an object)"
    )


@pytest.mark.slow
def test_a_gcs_folder_as_input_is_refused_with_the_glob_to_use(
    refused_on_gcs: dict[str, Ran],
) -> None:
    assert_refused(
        refused_on_gcs["folder_as_input"],
        f"gs://{BUCKET}/landing is a directory: use --input 'gs://{BUCKET}/landing/*.jsonl*'",
    )


@pytest.mark.slow
def test_a_gcs_glob_that_matches_nothing_is_named(refused_on_gcs: dict[str, Ran]) -> None:
    assert_refused(
        refused_on_gcs["no_match"], f"no input file matches 'gs://{BUCKET}/landing/*/*.csv'"
    )


# in-process: the same refusals for callers of run()


def test_run_refuses_a_stray_argument_with_exit_status_2(
    paths: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit, match="unexpected argument") as refusal:
        batch.run(["--input", str(paths.day / "kiosk.jsonl"), "stray", "--output", str(paths.out)])
    assert refusal.value.code == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: unexpected")


def test_match_inputs_refuses_an_entry_that_matches_nothing(paths: Paths) -> None:
    with pytest.raises(SystemExit, match="no input file matches") as refusal:
        batch.match_inputs(f"{paths.day}/kiosk.jsonl,{paths.day}/none-*.jsonl")
    assert refusal.value.code == cli.EXIT_USAGE


def test_match_inputs_lists_every_entrys_files_once(paths: Paths) -> None:
    files = batch.match_inputs(f"{paths.day}/*.jsonl, {paths.day}/kiosk.jsonl")
    assert [Path(f.path).name for f in files] == ["kiosk.jsonl", "portal.jsonl"]


def test_the_suggested_glob_keeps_what_the_paths_share() -> None:
    expanded = [
        "in/2017-06-24/kiosk.jsonl",
        "in/2017-06-24/portal.jsonl.gz",
        "in/2017-06-25/x.jsonl",
    ]
    assert cli.glob_for(expanded) == "in/*/*.jsonl*"


def test_a_missing_required_option_is_reported_after_an_unknown_one() -> None:
    parser = cli.Parser(prog="p")
    parser.add_argument("--out", required=True)
    with pytest.raises(SystemExit, match="did you mean --out"):
        parser.parse(["--output", "x"])
