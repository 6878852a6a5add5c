"""The seeded event generator: shapes, determinism, calibration and its own ground truth.

The ground truth in `_generator_totals.json` is re-derived here from the written files with an
independent, strict reading of contract.md, so a generator bug cannot hide behind its totals.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.catalogue import load_catalogue
from schemas.enums import Channel
from tools._generate_invalid import REALISTIC_INVALID_KINDS
from tools.generate import (
    PROFILES,
    PUBLISHED,
    PUBLISHED_H1_2017,
    SUCCESS_RAW,
    TOTALS_FILE,
    GeneratorConfig,
    generate,
    main,
    plan,
)

BAHRAIN = timezone(timedelta(hours=3))
CLEAN = GeneratorConfig(
    days=2, scale=0.05, invalid_rate=0, duplicate_rate=0, conflict_rate=0, late_rate=0
)
DIRTY = GeneratorConfig(
    start=date(2017, 3, 1),
    days=4,
    scale=0.05,
    invalid_rate=0.3,
    duplicate_rate=0.05,
    conflict_rate=0.03,
    late_rate=0.1,
    full_pan_rate=0.3,
)
AMOUNT = re.compile(r"[0-9]+\.[0-9]{3}")
CPR = re.compile(r"[0-9]{9}")
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
APP_METHODS = ("APPLE_PAY", "GOOGLE_PAY", "HUAWEI_PAY", "BENEFIT_PAY", "DEBIT_CARD", "CREDIT_CARD")
NORMALISED = {
    "PAID": "SUCCESS",
    "success": "SUCCESS",
    "OK": "SUCCESS",
    "DECLINED": "FAILED",
    "failure": "FAILED",
    "CANCELLED": "CANCELLED",
    "REFUNDED": "REFUNDED",
    "refund": "REFUNDED",
}


def _fils(text: str) -> int:
    whole, frac = text.split(".")
    return int(whole) * 1000 + int(frac)


def _luhn_ok(number: str) -> bool:
    if re.fullmatch(r"\d{16}", number) is None:
        return False
    digits = [int(d) for d in reversed(number)]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


Parsed = tuple[str, str, int, datetime]  # event id, raw status, fils, instant


def _amount(text: Any) -> int:
    """Fils of a contract amount string; 0 (never valid) if it is not one."""
    return _fils(text) if isinstance(text, str) and AMOUNT.fullmatch(text) else 0


def _cpr_ok(value: Any) -> bool:
    return isinstance(value, str) and CPR.fullmatch(value) is not None


def _check_portal(e: dict[str, Any]) -> Parsed | None:
    fils = e["amount_fils"]
    ok = (
        re.fullmatch(r"PTL-\d{4}-\d{9}", e["txn_id"]) is not None
        and set(e["service"]) == {"code", "entity"}
        and type(fils) is int
        and fils > 0
        and e["currency"] == "BHD"
        and e["status"] in ("PAID", "DECLINED", "REFUNDED")
        and e["method"] in ("DEBIT_CARD", "CREDIT_CARD", "BENEFIT_PAY")
        and _cpr_ok(e["payer"]["cpr"])
        and isinstance(e["gateway_ref"], str)
        and e["paid_at"].endswith("+03:00")
    )
    at = datetime.fromisoformat(e["paid_at"])
    return (f"portal:{e['txn_id']}", e["status"], fils, at) if ok else None


def _check_mobile(e: dict[str, Any]) -> Parsed | None:
    payment, fils = e["payment"], _amount(e["payment"]["amount"])
    ok = (
        UUID4.fullmatch(e["event_id"]) is not None
        and set(e["app"]) == {"id", "version", "os"}
        and e["app"]["os"] in ("ios", "android", "huawei")
        and fils > 0
        and payment["currency"] == "BHD"
        and payment["outcome"] in ("success", "failure", "refund")
        and payment["method"] in APP_METHODS
        and type(e["ts"]) is int
        and _cpr_ok(e["user"]["cpr"])
    )
    at = datetime.fromtimestamp(e["ts"] / 1000, tz=timezone.utc)
    return (f"mobile_app:{e['event_id']}", payment["outcome"], fils, at) if ok else None


def _check_kiosk(e: dict[str, Any]) -> Parsed | None:
    card, fils = e["card"], _amount(e["amount"])
    ok = (
        re.fullmatch(r"KSK-\d{3}", e["kiosk_id"]) is not None
        and type(e["seq"]) is int
        and isinstance(e["site"], str)
        and fils > 0
        and re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", e["local_time"]) is not None
        and e["result"] in ("OK", "DECLINED", "CANCELLED", "REFUNDED")
        and (re.fullmatch(r"\*{12}\d{4}", card) is not None or _luhn_ok(card))
        and ("cpr" not in e or _cpr_ok(e["cpr"]))
    )
    at = datetime.fromisoformat(e["local_time"]).replace(tzinfo=BAHRAIN)
    return (f"kiosk:{e['kiosk_id']}:{e['seq']}", e["result"], fils, at) if ok else None


CHECKS = {"portal": _check_portal, "mobile_app": _check_mobile, "kiosk": _check_kiosk}


def _valid(line: bytes) -> tuple[str, str, int, datetime, dict[str, Any]] | None:
    """(event id, raw status, fils, instant, event) of a contract-valid line, else None."""
    if len(line) > 1 << 20:
        return None
    try:
        event = orjson.loads(line)
        if not isinstance(event, dict) or event.get("channel") not in CHECKS:
            return None
        parsed = CHECKS[event["channel"]](event)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError, OSError):
        return None
    return None if parsed is None else (*parsed, event)


def _lines(root: Path) -> list[tuple[str, bytes]]:
    """Every line in input order: sorted file path, then line number."""
    out = []
    for path in sorted(p for p in root.rglob("*.jsonl*")):
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        assert data == b"" or data.endswith(b"\n")
        rel = path.relative_to(root).as_posix()
        out += [(rel, line) for line in data.split(b"\n")[:-1]]
    return out


def _recount(root: Path) -> dict[str, Any]:
    """The ground truth, recomputed from the files: the first occurrence of an id wins."""
    seen: dict[str, bytes] = {}
    counts: Counter[str] = Counter()
    money: Counter[tuple[str, str, str]] = Counter()
    late = 0
    for rel, line in _lines(root):
        parsed = _valid(line)
        if parsed is None:
            counts["invalid"] += 1
            continue
        event_id, raw, fils, at, event = parsed
        if event_id in seen:
            counts["duplicate" if seen[event_id] == line else "conflict"] += 1
            continue
        seen[event_id] = line
        counts["valid"] += 1
        status = NORMALISED[raw]
        money[event["channel"], status, "count"] += 1
        money[event["channel"], status, "fils"] += fils
        late += at.astimezone(BAHRAIN).date().isoformat() < rel[:10]
    return {"counts": counts, "money": money, "late": late}


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("dirty")
    return root, generate(DIRTY, str(root))


def test_same_seed_gives_byte_identical_output(tmp_path: Path) -> None:
    config = replace(DIRTY, days=2, gzip=True)
    generate(config, str(tmp_path / "a"))
    generate(config, str(tmp_path / "b"))
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.*"))
    assert files_a == files_b
    assert files_a
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_another_seed_gives_other_events(tmp_path: Path) -> None:
    generate(CLEAN, str(tmp_path / "a"))
    generate(replace(CLEAN, seed=7), str(tmp_path / "b"))
    rel = "2017-06-24/portal.jsonl"
    assert (tmp_path / "a" / rel).read_bytes() != (tmp_path / "b" / rel).read_bytes()


def test_layout_is_one_file_per_channel_per_bahrain_day(tmp_path: Path) -> None:
    totals = generate(CLEAN, str(tmp_path))
    expected = {f"{d}/{c.value}.jsonl" for d in ("2017-06-24", "2017-06-25") for c in Channel}
    assert set(totals["files"]) == expected
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jsonl")} == expected
    assert not TOTALS_FILE.endswith(".jsonl")
    assert (tmp_path / TOTALS_FILE).is_file()


def test_every_clean_line_parses_and_has_the_contract_fields(tmp_path: Path) -> None:
    generate(CLEAN, str(tmp_path))
    lines = _lines(tmp_path)
    assert len(lines) > 100
    for rel, line in lines:
        parsed = _valid(line)
        assert parsed is not None, line
        assert parsed[4]["channel"] == rel.split("/")[1].removesuffix(".jsonl")


def test_all_three_channels_and_their_statuses_appear(tmp_path: Path) -> None:
    totals = generate(replace(CLEAN, scale=2.0), str(tmp_path))
    by_status = totals["by_channel_status"]
    assert by_status["portal"]["FAILED"]["count"] > 0
    assert by_status["portal"]["REFUNDED"]["count"] > 0
    assert by_status["kiosk"]["CANCELLED"]["count"] > 0
    assert by_status["mobile_app"]["FAILED"]["count"] > 0


def test_services_come_from_the_catalogue_for_their_channel(tmp_path: Path) -> None:
    generate(replace(CLEAN, scale=0.2), str(tmp_path))
    catalogue = load_catalogue()
    for _, line in _lines(tmp_path):
        event = orjson.loads(line)
        channel = Channel(event["channel"])
        code = {"portal": lambda e: e["service"]["code"], "mobile_app": lambda e: e["service_code"],
                "kiosk": lambda e: e["service"]}[channel.value](event)  # fmt: skip
        assert code in catalogue.codes_for(channel)


def test_h1_plan_reproduces_the_published_figures_within_half_a_percent() -> None:
    day_plans = plan(PROFILES["h1-2017"])
    assert len(day_plans) == 181
    for channel, (count, fils) in PUBLISHED_H1_2017.items():
        success = sum(p[channel].statuses[SUCCESS_RAW[channel]] for p in day_plans.values())
        amount = sum(p[channel].success_amount_fils for p in day_plans.values())
        assert abs(success - count) <= 0.005 * count, channel
        assert abs(amount - fils) <= 0.005 * fils, channel


def _planned_success(profile: str) -> dict[Channel, tuple[int, int]]:
    day_plans = plan(PROFILES[profile]).values()
    return {
        ch: (
            sum(p[ch].statuses[SUCCESS_RAW[ch]] for p in day_plans),
            sum(p[ch].success_amount_fils for p in day_plans),
        )
        for ch in Channel
    }


@pytest.mark.parametrize("profile", ["h1-2016", "h1-2017", "fy-2020", "fy-2021"])
def test_each_published_profile_plans_its_period_at_the_published_volume(profile: str) -> None:
    period = PUBLISHED[profile]
    assert (PROFILES[profile].start, PROFILES[profile].days) == (period.start, period.days)
    assert _planned_success(profile) == period.payments


def _growth(later: int, earlier: int) -> float:
    return later / earlier - 1


def test_the_earlier_periods_reproduce_the_published_growth() -> None:
    h16, h17 = _planned_success("h1-2016"), _planned_success("h1-2017")
    fy20, fy21 = _planned_success("fy-2020"), _planned_success("fy-2021")
    p, m = Channel.PORTAL, Channel.MOBILE_APP
    assert _growth(h17[p][0], h16[p][0]) == pytest.approx(0.35, abs=0.0005)
    assert _growth(h17[m][1], h16[m][1]) == pytest.approx(1.33, abs=0.0005)
    for i, growth in ((0, 0.42), (1, 0.62)):
        total = _growth(sum(v[i] for v in h17.values()), sum(v[i] for v in h16.values()))
        assert total == pytest.approx(growth, abs=0.0005)
    for i, growth in ((0, 0.65), (1, 1.16)):
        total = _growth(sum(v[i] for v in fy21.values()), sum(v[i] for v in fy20.values()))
        assert total == pytest.approx(growth, abs=0.0005)
    assert _growth(fy21[m][0], fy20[m][0]) == pytest.approx(0.84, abs=0.0005)
    assert _growth(fy21[m][1], fy20[m][1]) == pytest.approx(0.98, abs=0.0005)
    assert sum(v[0] for v in fy21.values()) == 3_700_000
    assert sum(v[1] for v in fy21.values()) == 500_000_000_000


def test_a_scaled_profile_writes_that_fraction_of_its_period(tmp_path: Path) -> None:
    config = replace(PROFILES["fy-2020"], scale=0.001)
    totals = generate(config, str(tmp_path))
    assert totals["config"]["volumes"] == "fy-2020"
    assert len(totals["by_event_date_channel"]) == 366
    for channel, (count, _) in PUBLISHED["fy-2020"].payments.items():
        written = totals["by_channel_status"][channel.value]["SUCCESS"]["count"]
        assert written == round(0.001 * count)


def test_h1_plan_adds_unsuccessful_events_on_top() -> None:
    day_plans = plan(PROFILES["h1-2017"]).values()
    portal = Counter[str]()
    for day_plan in day_plans:
        portal.update(day_plan[Channel.PORTAL].statuses)
    assert portal["PAID"] == 411_000
    assert portal["DECLINED"] == pytest.approx(0.04 * 411_000, rel=0.01)
    assert portal["REFUNDED"] == pytest.approx(0.01 * 411_000, rel=0.01)


def test_h1_plan_has_quieter_weekends() -> None:
    day_plans = plan(PROFILES["h1-2017"])
    thursday, friday = day_plans[date(2017, 3, 2)], day_plans[date(2017, 3, 3)]
    assert friday[Channel.PORTAL].statuses["PAID"] < 0.7 * thursday[Channel.PORTAL].statuses["PAID"]


def test_written_counts_follow_the_plan_and_amounts_its_total(dirty: tuple[Path, Any]) -> None:
    _, totals = dirty
    day_plans = plan(DIRTY)
    for day, channels in day_plans.items():
        for channel, day_plan in channels.items():
            written = totals["by_event_date_channel"][day.isoformat()][channel.value]
            assert written == sum(day_plan.statuses.values())
    for channel in Channel:
        planned = sum(p[channel].success_amount_fils for p in day_plans.values())
        assert _fils(totals["by_channel_status"][channel.value]["SUCCESS"]["amount"]) == planned


def test_totals_add_up(dirty: tuple[Path, Any]) -> None:
    root, totals = dirty
    parts = ("valid_events", "invalid_lines", "duplicate_lines", "conflict_lines")
    assert totals["lines_written"] == sum(totals[key] for key in parts)
    assert totals["lines_written"] == len(_lines(root)) == sum(totals["files"].values())
    assert totals["invalid_lines"] == sum(totals["invalid_by_kind"].values())
    assert all(totals[key] > 0 for key in (*parts, "late_events", "full_pan_kiosk_events"))
    assert json.loads((root / TOTALS_FILE).read_text()) == totals


def test_ground_truth_matches_an_independent_recount(dirty: tuple[Path, Any]) -> None:
    root, totals = dirty
    recount = _recount(root)
    assert recount["counts"]["valid"] == totals["valid_events"]
    assert recount["counts"]["invalid"] == totals["invalid_lines"]
    assert recount["counts"]["duplicate"] == totals["duplicate_lines"]
    assert recount["counts"]["conflict"] == totals["conflict_lines"]
    assert recount["late"] == totals["late_events"]
    for channel, statuses in totals["by_channel_status"].items():
        for status, money in statuses.items():
            assert recount["money"][channel, status, "count"] == money["count"]
            assert recount["money"][channel, status, "fils"] == _fils(money["amount"])


def test_every_invalid_kind_appears_when_the_rate_is_high(dirty: tuple[Path, Any]) -> None:
    _, totals = dirty
    assert len(totals["invalid_by_kind"]) == 17
    assert all(count > 0 for count in totals["invalid_by_kind"].values()), totals["invalid_by_kind"]


def test_chosen_invalid_kinds_are_the_only_ones_written(tmp_path: Path) -> None:
    chosen = ("bad_cpr", "zero_amount")
    totals = generate(replace(DIRTY, days=1, invalid_kinds=chosen), str(tmp_path))
    written = {kind for kind, count in totals["invalid_by_kind"].items() if count}
    assert written == set(chosen)
    assert _recount(tmp_path)["counts"]["invalid"] == totals["invalid_lines"]


def test_realistic_invalid_kinds_write_no_huge_line(tmp_path: Path) -> None:
    config = replace(DIRTY, days=1, invalid_kinds=REALISTIC_INVALID_KINDS)
    generate(config, str(tmp_path))
    assert all(len(line) < 1 << 20 for _, line in _lines(tmp_path))


def test_an_unknown_invalid_kind_is_refused_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--out", str(tmp_path), "--invalid-kinds", "bad_cpr,no_such_kind"]) == 2
    assert "no_such_kind" in capsys.readouterr().err


def test_invalid_lines_include_the_nasty_ones(dirty: tuple[Path, Any]) -> None:
    root, _ = dirty
    lines = [line for _, line in _lines(root)]
    assert any(len(line) > 1 << 20 for line in lines)
    assert any(b"[" * 5000 in line for line in lines)
    assert any(line == b"[1,2]" for line in lines)
    assert any(re.search(rb'"\d+\.\d{4}"', line) for line in lines)  # a fourth decimal
    undecodable = 0
    for line in lines:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
    assert undecodable > 0


def test_late_events_are_one_to_five_days_late(dirty: tuple[Path, Any]) -> None:
    root, totals = dirty
    delays = []
    for rel, line in _lines(root):
        parsed = _valid(line)
        if parsed is not None:
            event_day = parsed[3].astimezone(BAHRAIN).date()
            delays.append((date.fromisoformat(rel[:10]) - event_day).days)
    assert min(delays) == 0
    assert max(delays) <= 5
    assert totals["late_events"] > 0


def test_small_hours_events_land_in_their_bahrain_day_file(tmp_path: Path) -> None:
    generate(replace(CLEAN, days=3, scale=3.0), str(tmp_path))
    small_hours: Counter[str] = Counter()
    for rel, line in _lines(tmp_path):
        parsed = _valid(line)
        assert parsed is not None
        local = parsed[3].astimezone(BAHRAIN)
        assert local.date().isoformat() == rel[:10]  # no late events in CLEAN
        if local.hour < 3:
            small_hours[parsed[4]["channel"]] += 1
            assert parsed[3].astimezone(timezone.utc).date() == local.date() - timedelta(days=1)
    assert small_hours["portal"] > 0
    assert small_hours["kiosk"] > 0
    assert small_hours["mobile_app"] > 0


def test_full_pans_are_luhn_valid_and_counted(dirty: tuple[Path, Any]) -> None:
    root, totals = dirty
    seen, full = set(), 0
    for _, line in _lines(root):
        parsed = _valid(line)
        if parsed is None or parsed[0] in seen:
            continue
        seen.add(parsed[0])
        card = parsed[4].get("card", "*")
        if not card.startswith("*"):
            assert _luhn_ok(card)
            full += 1
    assert full == totals["full_pan_kiosk_events"] > 0


def test_kiosk_seq_is_unique_and_increasing_per_kiosk(tmp_path: Path) -> None:
    generate(replace(CLEAN, scale=1.0), str(tmp_path))
    last: dict[str, int] = {}
    for _, line in _lines(tmp_path):
        event = orjson.loads(line)
        if event["channel"] == "kiosk":
            assert event["seq"] > last.get(event["kiosk_id"], -1)
            last[event["kiosk_id"]] = event["seq"]


def test_gzip_output_holds_the_same_lines(tmp_path: Path) -> None:
    generate(CLEAN, str(tmp_path / "plain"))
    totals = generate(replace(CLEAN, gzip=True), str(tmp_path / "gz"))
    assert all(name.endswith(".jsonl.gz") for name in totals["files"])
    plain = [line for _, line in _lines(tmp_path / "plain")]
    assert [line for _, line in _lines(tmp_path / "gz")] == plain


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="rates"):
        GeneratorConfig(invalid_rate=1.5)
    with pytest.raises(ValueError, match="scale"):
        GeneratorConfig(scale=0)
    with pytest.raises(ValueError, match="days"):
        GeneratorConfig(days=0)
    with pytest.raises(ValueError, match="volumes"):
        GeneratorConfig(volumes="h1-2018")


def test_profiles_match_the_brief() -> None:
    sample, h1 = PROFILES["sample"], PROFILES["h1-2017"]
    assert (sample.start, sample.days, sample.scale) == (date(2017, 6, 24), 7, 0.1)
    assert (sample.invalid_rate, sample.duplicate_rate, sample.conflict_rate) == (
        0.01,
        0.005,
        0.001,
    )
    assert sample.late_rate == 0.02
    assert (h1.start, h1.days, h1.scale) == (date(2017, 1, 1), 181, 1.0)
    assert h1.invalid_rate == h1.duplicate_rate == h1.conflict_rate == h1.late_rate == 0


def test_cli_overrides_the_profile_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path), "--start", "2017-06-29", "--end", "2017-06-30",
            "--scale", "0.02", "--seed", "3", "--invalid-rate", "0", "--gzip"]  # fmt: skip
    assert main(argv) == 0
    totals = json.loads((tmp_path / TOTALS_FILE).read_text())
    assert totals["config"]["days"] == 2
    assert totals["config"]["seed"] == 3
    assert totals["config"]["gzip"] is True
    assert totals["invalid_lines"] == 0
    assert totals["config"]["late_rate"] == 0.02  # from the sample profile
    out = capsys.readouterr().out
    assert "6 files" in out
    assert "portal" in out
    assert TOTALS_FILE in out


def test_cli_help_lists_every_knob(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for option in ("--profile", "--start", "--days", "--scale", "--seed", "--invalid-rate",
                   "--duplicate-rate", "--conflict-rate", "--late-rate", "--full-pan-rate",
                   "--gzip"):  # fmt: skip
        assert option in text


@pytest.mark.slow
def test_h1_profile_writes_the_published_successful_totals(tmp_path: Path) -> None:
    totals = generate(PROFILES["h1-2017"], str(tmp_path))
    for channel, (count, fils) in PUBLISHED_H1_2017.items():
        success = totals["by_channel_status"][channel.value]["SUCCESS"]
        assert abs(success["count"] - count) <= 0.005 * count
        assert abs(_fils(success["amount"]) - fils) <= 0.005 * fils
