"""Shared test fixtures."""

from __future__ import annotations

import os

import pytest

from tests.samples import TEST_KEY


@pytest.fixture
def pseudonym_key() -> bytes:
    return TEST_KEY


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment with the pseudonymisation key, for pipelines run in or out of process."""
    monkeypatch.setenv("PAYMENTS_PSEUDONYM_KEY", TEST_KEY.decode())
    return {**os.environ}
