"""The pseudonymisation key reaches workers by name (secret or file), never inside the job."""

from __future__ import annotations

import base64
import bz2
from pathlib import Path

import pytest
from apache_beam.internal import pickler

from pipelines.options import IngestOptions, pseudonym_key_source
from tests.samples import PORTAL_EVENT, TEST_KEY, run_of
from transforms.core.privacy import Pseudonymiser
from transforms.core.rawblock import RawBlock
from transforms.ingest import IngestEvents
from transforms.storage.keys import PseudonymKey

SECRET = "projects/moi-payments/secrets/pseudonym-key/versions/latest"


def _options(*argv: str) -> IngestOptions:
    return IngestOptions(list(argv))


def test_a_key_comes_from_exactly_one_place() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        PseudonymKey(secret=SECRET, value=TEST_KEY)


def test_a_secret_must_name_a_secret_version() -> None:
    with pytest.raises(ValueError, match="versions/VERSION"):
        PseudonymKey(secret="projects/p/secrets/s")


def test_describing_a_key_never_shows_it() -> None:
    assert TEST_KEY.decode() not in PseudonymKey(value=TEST_KEY).describe()
    assert PseudonymKey(secret=SECRET).describe() == f"Secret Manager {SECRET}"


def test_a_key_file_is_read_without_surrounding_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(TEST_KEY + b"\n")
    assert PseudonymKey(file=str(path)).resolve() == TEST_KEY


def _shipped(key: PseudonymKey | bytes) -> bytes:
    """The ingest step's DoFn as Beam serialises it into the job (base64 of bz2 of a pickle)."""
    return bz2.decompress(base64.b64decode(pickler.dumps(IngestEvents(key, run_of())._fn)))


def test_the_shipped_ingest_step_holds_the_key_files_name_not_the_key(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(TEST_KEY)
    shipped = _shipped(PseudonymKey(file=str(path)))
    assert TEST_KEY not in shipped
    assert str(path).encode() in shipped


def test_a_key_given_directly_is_shipped_with_the_job() -> None:
    assert TEST_KEY in _shipped(TEST_KEY)


def test_the_ingest_step_reads_the_key_when_a_worker_sets_it_up(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(TEST_KEY)
    fn = pickler.loads(pickler.dumps(IngestEvents(PseudonymKey(file=str(path)), run_of())._fn))
    path.write_bytes(TEST_KEY[::-1])  # what the worker reads is what counts
    fn.setup()
    [accepted, *_] = list(fn.process(RawBlock("f", [PORTAL_EVENT], line_numbers=[1])))
    payer = accepted[1].table()["payer_key"][0].as_py()
    assert payer == Pseudonymiser(TEST_KEY[::-1])("850101234")


def test_on_dataflow_a_key_from_the_environment_is_refused() -> None:
    with pytest.raises(SystemExit, match="--pseudonym_key_secret"):
        pseudonym_key_source(_options(), "DataflowRunner", {"PAYMENTS_PSEUDONYM_KEY": "k" * 40})


def test_on_dataflow_a_secret_is_passed_by_name() -> None:
    source = pseudonym_key_source(_options("--pseudonym_key_secret", SECRET), "DataflowRunner", {})
    assert source == PseudonymKey(secret=SECRET)
    assert not source.in_graph


def test_locally_the_environment_key_is_used() -> None:
    source = pseudonym_key_source(_options(), None, {"PAYMENTS_PSEUDONYM_KEY": TEST_KEY.decode()})
    assert source.resolve() == TEST_KEY


def test_a_weak_environment_key_is_refused_before_the_run() -> None:
    with pytest.raises(SystemExit, match="at least"):
        pseudonym_key_source(_options(), None, {"PAYMENTS_PSEUDONYM_KEY": "short"})


def test_a_missing_key_file_is_refused_before_the_run(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="pseudonymisation key"):
        pseudonym_key_source(_options("--pseudonym_key_file", str(tmp_path / "nope")), None, {})


def test_a_secret_and_a_key_file_together_are_refused() -> None:
    options = _options("--pseudonym_key_secret", SECRET, "--pseudonym_key_file", "k")
    with pytest.raises(SystemExit, match="not both"):
        pseudonym_key_source(options, None, {})


def test_no_key_at_all_says_how_to_make_one() -> None:
    with pytest.raises(SystemExit, match=r"secrets\.token_hex"):
        pseudonym_key_source(_options(), None, {})
