"""The streaming pipeline over every adversarial class of issue 8, through a real Pub/Sub
emulator: every message accounted for, and no secret readable under the output root or in
what it publishes to the dashboard topic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adversarial import SECRETS, adversarial_lines, secrets_in
from tests.emulators import pubsub_emulator
from tests.pipelines.test_streaming import (
    _payments_now,
    _processed,
    _publish,
    _run_until_balanced,
    _subscribed_topic,
)


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    with pubsub_emulator() as host:
        yield host


@pytest.mark.slow
@pytest.mark.usefixtures("key_env")
def test_adversarial_messages_are_accounted_for_and_leak_nothing(
    emulator: str, tmp_path: Path
) -> None:
    lines = [b"\xef\xbb\xbf" + adversarial_lines()[0], *adversarial_lines()[1:]]
    lines += _payments_now(5)
    subscription = _publish(emulator, lines, "adversarial")
    dashboard = _subscribed_topic("adversarial-live")
    out = tmp_path / "out"
    _run_until_balanced(
        subscription,
        out,
        emulator,
        len(lines),
        "--aggregates_topic",
        dashboard.topic,
        "--early_firing_seconds",
        "1",
    )
    counts = _processed(out)
    assert counts["read"] == len(lines)
    assert secrets_in(out) == []
    published = json.dumps(dashboard.received())
    assert not [secret for secret in SECRETS if secret in published]
