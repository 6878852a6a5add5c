"""The replay tool's schedule: restamped to now, some late, some twice, nothing lost."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson

from tests.samples import KIOSK_EVENT, MOBILE_EVENT, PORTAL_EVENT
from tools.replay import ReplayPlan, schedule
from transforms.core.validate import Rejection, parse_event

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
LINES = [PORTAL_EVENT, MOBILE_EVENT, KIOSK_EVENT, b"{not json"] * 50


def test_every_line_is_published_at_least_once() -> None:
    out = schedule(LINES, ReplayPlan(0.3, 0.1, 0.0, seed=1), NOW)
    assert len(out) == len(LINES)


def test_duplicates_add_exact_copies() -> None:
    out = schedule(LINES, ReplayPlan(0.0, 0.0, 0.5, seed=1), NOW)
    assert len(out) > len(LINES)
    assert len(set(out)) == 4  # three restamped events and the bad line


def test_restamped_events_stay_valid_and_happen_now() -> None:
    out = schedule(LINES[:3], ReplayPlan(0.0, 0.0, 0.0, seed=1), NOW)
    for line in out:
        event = parse_event(line)
        assert not isinstance(event, Rejection), event
    assert orjson.loads(out[1])["ts"] == int(NOW.timestamp() * 1000)
    assert orjson.loads(out[2])["local_time"] == "2026-11-23 15:00:00"  # Bahrain wall clock
