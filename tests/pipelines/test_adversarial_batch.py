"""The nightly batch over a landing file holding every adversarial class of issue 8: each line
accepted or rejected, the manifest reconciles, and no secret is readable under the output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.adversarial import adversarial_lines, secrets_in, write_landing
from tests.pipelines.helpers import payments, rejected, run_batch
from tests.samples import PORTAL_EVENT


@pytest.fixture(scope="module")
def adversarial_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    monkey = pytest.MonkeyPatch()
    monkey.setenv("PAYMENTS_PSEUDONYM_KEY", "test-pseudonym-key-0123456789abcdef")
    root = tmp_path_factory.mktemp("adversarial")
    landing = write_landing(root / "landing")
    manifest = run_batch(str(landing), root / "out")
    yield root / "out", manifest
    monkey.undo()


def test_every_adversarial_line_is_read_and_accounted_for(adversarial_run: Any) -> None:
    _, manifest = adversarial_run
    counts = manifest["counts"]
    assert counts["read"] == len(adversarial_lines())
    assert manifest["reconciles"] is True


def test_no_secret_is_readable_anywhere_under_the_output_root(adversarial_run: Any) -> None:
    out, _ = adversarial_run
    assert secrets_in(out) == []


def test_the_first_line_after_a_byte_order_mark_is_accepted(adversarial_run: Any) -> None:
    out, _ = adversarial_run
    lines = payments(out)["source_line"].to_pylist()
    assert 1 in lines


def test_each_new_rejection_class_is_coded(adversarial_run: Any) -> None:
    out, _ = adversarial_run
    codes = set(rejected(out)["error_code"].to_pylist())
    assert {"DUPLICATE_KEY", "PERSONAL_DATA_IN_ID", "INVALID_AMOUNT", "TOO_DEEPLY_NESTED"} <= codes


def test_free_text_of_accepted_events_is_redacted_not_rejected(adversarial_run: Any) -> None:
    out, _ = adversarial_run
    sites = [s for s in payments(out)["kiosk_site"].to_pylist() if s]
    assert "Isa Town ************1486" in sites
    assert "Isa Town <redacted-cpr>" in sites


def test_amounts_and_manifest_figures_are_positive(adversarial_run: Any) -> None:
    _, manifest = adversarial_run
    for channel in manifest["by_channel"].values():
        for amount in channel["amount_bhd_by_status"].values():
            assert not amount.startswith("-")


@pytest.mark.slow
@pytest.mark.usefixtures("key_env")
def test_a_night_whose_every_event_is_rejected_keeps_each_rejection_once(tmp_path: Path) -> None:
    """A portal that renamed a field overnight: every event is rejected, by two worker
    processes, in many blocks. Each rejection reaches the rejected file once; the manifest's
    count is the file's (a 1M-event night of this kind lost the last blocks of each worker
    when the rejected rows were collected in memory, issue #11)."""
    events = 30_000
    landing = tmp_path / "landing"
    landing.mkdir()
    drifted = PORTAL_EVENT.replace(b'"amount_fils"', b'"amount_in_fils"')
    with open(landing / "portal.jsonl", "wb") as out:
        for n in range(events):
            out.write(drifted.replace(b"000123456", b"%09d" % n) + b"\n")
    manifest = run_batch(
        str(landing / "*.jsonl"),
        tmp_path / "out",
        "--direct_running_mode=multi_processing",
        "--range_bytes=1000000",
        "--block_events=500",
        workers=2,
    )
    lines = rejected(tmp_path / "out")["source_line"].to_pylist()
    assert manifest["counts"]["rejected"] == events
    assert sorted(lines) == list(range(1, events + 1))
