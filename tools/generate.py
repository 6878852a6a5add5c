"""Seeded generator of raw payment events in the three shapes of contract.md.

Why: the pipeline is judged against the published figures of H1 2017 and H1 2016 and of the years
2021 and 2020 (domain.md, "Published volumes"; `PUBLISHED`), and its edge cases
(Bahrain-day boundary, duplicates, late and broken lines, unmasked cards) need input whose
ground truth is known exactly. The generator writes that input plus `_generator_totals.json`,
its own account of what a correct pipeline must find. Same config and seed, same bytes.
"""

from __future__ import annotations

import functools
import glob
import gzip
import os
import random
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from fractions import Fraction
from itertools import accumulate
from typing import Any, NamedTuple

import orjson

from pipelines import cli
from schemas.catalogue import Catalogue, load_catalogue
from schemas.enums import Channel, PaymentStatus
from tools import _generate_invalid as defects

Event = dict[str, Any]
TOTALS_FILE = "_generator_totals.json"  # not *.jsonl, so input globs never pick it up
H1_2017_START, H1_2017_DAYS = date(2017, 1, 1), 181
_P, _M, _K = Channel.PORTAL, Channel.MOBILE_APP, Channel.KIOSK
_S, _F, _C, _R = (PaymentStatus.SUCCESS, PaymentStatus.FAILED, PaymentStatus.CANCELLED,
                  PaymentStatus.REFUNDED)  # fmt: skip

# fmt: off
# Published H1 2017 *successful* payments per channel: (count, amount in fils) (domain.md).
PUBLISHED_H1_2017: dict[Channel, tuple[int, int]] = {
    _P: (411_000, 28_000_000_000), _M: (50_000, 2_500_000_000), _K: (6_000, 152_000_000)}
# The other periods of the seeds. Where the seeds give a growth rate and no figure, the figure
# is the later period's divided by (1 + growth); where they give neither, the choice is ours
# and marked "chosen" (README.md, "Sample data", says why). Sums are over the three channels.
PUBLISHED_H1_2016: dict[Channel, tuple[int, int]] = {
    # all channels: 467,000 / 1.42 = 328,873 payments; 30,652,000 BHD / 1.62 = 18,920,988 BHD
    _P: (304_444, 17_723_027_000),  # 411,000 / 1.35; the amount is what the rest leaves
    _M: (19_429, 1_072_961_000),  # the count is what the rest leaves; 2,500,000 BHD / 2.33
    _K: (5_000, 125_000_000)}  # chosen: 5,000 at the kiosks' 25 BHD average
PUBLISHED_FY_2021: dict[Channel, tuple[int, int]] = {
    # all channels: about 3.7 million payments and close to 500 million BHD
    _P: (2_723_000, 445_000_000_000),  # what the apps and kiosks leave of the totals
    _M: (937_000, 54_000_000_000),
    _K: (40_000, 1_000_000_000)}  # chosen: 40,000 at 25 BHD
PUBLISHED_FY_2020: dict[Channel, tuple[int, int]] = {
    # all channels: 3,700,000 / 1.65 = 2,242,424 payments; 500 M BHD / 2.16 = 231,481,481 BHD
    _P: (1_703_185, 203_458_754_000),  # what the apps and kiosks leave of the totals
    _M: (509_239, 27_272_727_000),  # 937,000 / 1.84; 54,000,000 BHD / 1.98
    _K: (30_000, 750_000_000)}  # chosen: 30,000 at 25 BHD
SUCCESS_RAW = {_P: "PAID", _M: "success", _K: "OK"}
# Unsuccessful outcomes come on top of the published payments, as a fraction of successes.
EXTRA_RAW_RATES: dict[Channel, dict[str, float]] = {
    _P: {"DECLINED": 0.04, "REFUNDED": 0.01},
    _M: {"failure": 0.04, "refund": 0.01},
    _K: {"DECLINED": 0.04, "CANCELLED": 0.02, "REFUNDED": 0.01}}
NORMALISED = {"PAID": _S, "success": _S, "OK": _S, "DECLINED": _F, "failure": _F,
              "CANCELLED": _C, "REFUNDED": _R, "refund": _R}
# Bahrain works Sunday to Thursday; Friday and Saturday are the weekend (Mon=0 .. Sun=6).
_WEEKDAY_WEIGHT = (1.10, 1.10, 1.10, 1.05, 0.55, 0.75, 1.15)
_HOLIDAY_WEIGHT = {date(2017, 1, 1): 0.5, date(2017, 5, 1): 0.6,  # New Year, Labour Day
                   date(2017, 6, 25): 0.4, date(2017, 6, 26): 0.5, date(2017, 6, 27): 0.7,  # Eid
                   # The other seeded periods: New Year, Labour Day, the two Eids, National Day
                   date(2016, 1, 1): 0.5, date(2016, 5, 1): 0.6,
                   date(2020, 1, 1): 0.5, date(2020, 5, 1): 0.6, date(2020, 5, 24): 0.4,
                   date(2020, 5, 25): 0.5, date(2020, 5, 26): 0.7, date(2020, 7, 31): 0.4,
                   date(2020, 8, 1): 0.5, date(2020, 8, 2): 0.7, date(2020, 12, 16): 0.5,
                   date(2020, 12, 17): 0.6,
                   date(2021, 1, 1): 0.5, date(2021, 5, 1): 0.6, date(2021, 5, 13): 0.4,
                   date(2021, 5, 14): 0.5, date(2021, 5, 15): 0.7, date(2021, 7, 20): 0.4,
                   date(2021, 7, 21): 0.5, date(2021, 7, 22): 0.7, date(2021, 12, 16): 0.5,
                   date(2021, 12, 17): 0.6}
# Hourly rhythm in Bahrain time: quiet 01-06, late-morning and evening peaks, never zero.
_HOURLY: dict[Channel, tuple[float, ...]] = {
    _P: (2.2, 1.2, 0.7, 0.4, 0.3, 0.4, 1.0, 2.5, 5.0, 7.5, 8.5, 9.0,
         8.5, 7.0, 6.0, 5.5, 5.5, 6.0, 6.5, 7.0, 7.5, 7.0, 5.5, 3.8),
    _M: (3.0, 1.8, 1.0, 0.5, 0.3, 0.4, 1.0, 2.5, 4.5, 6.0, 7.0, 7.5,
         7.0, 6.0, 5.5, 5.5, 6.0, 6.5, 7.5, 8.5, 9.0, 8.5, 6.5, 4.5),
    _K: (1.2, 0.6, 0.4, 0.1, 0.1, 0.1, 0.3, 1.5, 5.0, 8.0, 9.0, 9.0,
         8.0, 6.0, 5.0, 5.0, 6.0, 7.0, 8.0, 8.5, 8.5, 7.5, 5.0, 2.5)}
# Relative popularity; catalogue codes not listed weigh 1. Traffic fines dominate portal and
# apps; vehicle registration renewal is the kiosks' largest service (domain.md).
_SERVICE_WEIGHTS: dict[Channel, dict[str, float]] = {
    _P: {"GDT-FINE": 30, "VEH-REG-RENEW": 8, "CR-RENEW": 8, "LMRA-WORK-PERMIT": 8,
         "EWA-BILL": 6, "MOJ-COURT-FEE": 6, "CUSTOMS-DUTY": 5, "RP-RENEW": 5,
         "ID-CARD-RENEW": 5, "HOUSING-INSTALMENT": 5, "GDT-DL-RENEW": 4, "GDT-DRV-SCHOOL": 4,
         "BIRTH-CERT": 3, "PASSPORT-RENEW": 3, "VISA-EVISA": 3, "GDT-DRV-TEST": 2,
         "VEH-OWNER-TRANSFER": 2, "MOH-EXPAT-MEDICAL": 2, "HOUSING-RENT": 2, "CR-NEW": 1.5,
         "CR-AMEND": 1.5, "GDT-DL-ISSUE": 1.5, "MOJ-NOTARY": 1.5, "SLRB-TITLE-DEED": 0.8,
         "MYS-FACILITY-BOOK": 0.8, "DEATH-CERT": 0.5, "VEH-PLATE-REPLACE": 0.5,
         "CD-PLAN-APPROVAL": 0.5, "MOE-CERT": 0.5, "MOE-CERT-EQUIV": 0.5,
         "MYS-YOUTH-CENTRE": 0.4, "PASSPORT-LOST": 0.3, "NHRA-LICENCE": 0.3, "GTS-COURSE": 0.3,
         "MTT-VESSEL-REG": 0.3, "MTT-TAXI-PERMIT": 0.3, "RERA-BROKER-LICENCE": 0.2,
         "SCE-ENV-PERMIT": 0.2},
    _M: {"GDT-FINE": 45, "EWA-BILL": 22, "HOUSING-INSTALMENT": 8, "VEH-REG-RENEW": 6,
         "GDT-DRV-SCHOOL": 5, "MOJ-COURT-FEE": 5, "GDT-DL-RENEW": 3, "ID-CARD-RENEW": 3,
         "HOUSING-RENT": 3, "GDT-DRV-TEST": 2, "PASSPORT-RENEW": 2},
    _K: {"VEH-REG-RENEW": 55, "GDT-FINE": 10, "EWA-BILL": 10, "MOE-TRANSCRIPT": 10,
         "MOE-CERT": 5, "ID-CARD-RENEW": 4, "GDT-DL-RENEW": 4}}
_SIGMA = 0.3  # log-normal spread of an amount around its service's typical fee (mean 1)
_KIOSKS = (  # (id, site, relative traffic); two old kiosks report Arabic site names
    ("KSK-001", "Isa Town", 8), ("KSK-002", "Isa Town", 6), ("KSK-003", "Muharraq", 5),
    ("KSK-004", "Muharraq", 3), ("KSK-005", "Seef Mall", 5), ("KSK-006", "City Centre Bahrain", 5),
    ("KSK-007", "Sitra", 3), ("KSK-008", "Hamad Town", 4), ("KSK-009", "Riffa", 4),
    ("KSK-010", "Budaiya", 2), ("KSK-011", "Bahrain Mall", 3), ("KSK-012", "Manama", 4),
    ("KSK-013", "Juffair", 2), ("KSK-014", "Galali", 1), ("KSK-015", "Aali", 2),
    ("KSK-016", "Zallaq", 1), ("KSK-017", "Isa Town", 4), ("KSK-018", "مدينة حمد", 2),
    ("KSK-019", "الرفاع", 2))
_APP_BY_ENTITY = {"GDT": "traffic", "EWA": "ewa", "MOHO": "housing", "MOJ": "moj", "IGA": "iga",
                  "NPRA": "npra", "MYS": "youth-sports", "MTT": "bahrain-post"}
_APP_VERSIONS = ("4.2.1", "4.2.1", "4.2.0", "4.1.7", "3.9.2")
_OSES, _OS_CUM = ("ios", "android", "huawei"), (46, 92, 100)
_APP_METHODS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "ios": (("APPLE_PAY", "BENEFIT_PAY", "DEBIT_CARD", "CREDIT_CARD"), (40, 65, 90, 100)),
    "android": (("GOOGLE_PAY", "BENEFIT_PAY", "DEBIT_CARD", "CREDIT_CARD"), (30, 60, 88, 100)),
    "huawei": (("HUAWEI_PAY", "BENEFIT_PAY", "DEBIT_CARD", "CREDIT_CARD"), (30, 65, 90, 100))}
_PORTAL_METHODS, _PORTAL_CUM = ("DEBIT_CARD", "CREDIT_CARD", "BENEFIT_PAY"), (60, 85, 100)
# fmt: on


@dataclass(frozen=True)
class PublishedPeriod:
    """A period of the seeds: its days and its successful payments per channel (count, fils).

    Scale 1.0 is its volume: a run over these days at scale 1 writes exactly these totals."""

    start: date
    days: int
    payments: dict[Channel, tuple[int, int]]


PUBLISHED: dict[str, PublishedPeriod] = {
    "h1-2016": PublishedPeriod(date(2016, 1, 1), 182, PUBLISHED_H1_2016),
    "h1-2017": PublishedPeriod(H1_2017_START, H1_2017_DAYS, PUBLISHED_H1_2017),
    "fy-2020": PublishedPeriod(date(2020, 1, 1), 366, PUBLISHED_FY_2020),
    "fy-2021": PublishedPeriod(date(2021, 1, 1), 365, PUBLISHED_FY_2021),
}


@dataclass(frozen=True)
class GeneratorConfig:
    """Every knob of a run; the defaults are the `sample` profile. Rates are fractions."""

    start: date = date(2017, 6, 24)
    days: int = 7
    scale: float = 0.1  # 1.0 = the published volume per day of `volumes`
    seed: int = 2017
    invalid_rate: float = 0.01  # extra invalid lines, per valid event
    duplicate_rate: float = 0.005  # extra exact redeliveries, per valid event
    conflict_rate: float = 0.001  # extra same-id, different-amount lines, per valid event
    late_rate: float = 0.02  # valid events delivered 1-5 days after their Bahrain day
    full_pan_rate: float = 0.05  # kiosk events whose card is a full PAN (old firmware)
    gzip: bool = False
    volumes: str = "h1-2017"  # the published period (`PUBLISHED`) whose daily volume is scale 1
    # The kinds invalid lines rotate over (tools/_generate_invalid.py): all of them unless
    # chosen, e.g. REALISTIC_INVALID_KINDS for a benchmark that should not be mostly huge lines.
    invalid_kinds: tuple[str, ...] = defects.INVALID_KINDS

    def __post_init__(self) -> None:
        if self.days < 1 or self.scale <= 0:
            raise ValueError("days must be >= 1 and scale > 0")
        if self.volumes not in PUBLISHED:
            raise ValueError(f"volumes must be one of {', '.join(PUBLISHED)}")
        rates = (self.invalid_rate, self.duplicate_rate, self.conflict_rate, self.late_rate)
        if not all(0 <= rate <= 1 for rate in (*rates, self.full_pan_rate)):
            raise ValueError("rates must be fractions between 0 and 1")
        unknown = sorted(set(self.invalid_kinds) - set(defects.INVALID_KINDS))
        if unknown or not self.invalid_kinds:
            raise ValueError(
                f"invalid kinds must be some of {', '.join(defects.INVALID_KINDS)}"
                + (f"; not {', '.join(unknown)}" if unknown else "")
            )

    @property
    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]


def _published_profile(name: str, seed: int) -> GeneratorConfig:
    """A whole published period at its published volume, without defects (for calibration)."""
    period = PUBLISHED[name]
    return GeneratorConfig(period.start, period.days, 1.0, seed, 0, 0, 0, 0, 0, volumes=name)


PROFILES: dict[str, GeneratorConfig] = {
    "sample": GeneratorConfig(),
    "h1-2016": _published_profile("h1-2016", 2016),
    "h1-2017": _published_profile("h1-2017", 2017),
    "fy-2020": _published_profile("fy-2020", 2020),
    "fy-2021": _published_profile("fy-2021", 2021),
}


@dataclass(frozen=True)
class DayPlan:
    """What one channel delivers for one Bahrain day: counts per raw status, success fils."""

    statuses: dict[str, int]
    success_amount_fils: int


def day_weight(day: date) -> float:
    """Relative volume of a day: weekday rhythm times public-holiday dip."""
    return _WEEKDAY_WEIGHT[day.weekday()] * _HOLIDAY_WEIGHT.get(day, 1.0)


@functools.cache
def _weight_sum(volumes: str) -> float:
    period = PUBLISHED[volumes]
    return sum(day_weight(period.start + timedelta(days=i)) for i in range(period.days))


def plan(config: GeneratorConfig) -> dict[date, dict[Channel, DayPlan]]:
    """The daily plan, computed without generating anything, so calibration tests are instant.

    Counts are exact (the generator writes precisely these); rounding is cumulative from the
    first day, so at scale 1 over the published period the totals are exactly its figures. The
    written success amounts add up exactly to the plan's over the window; a single day's
    differs from its plan by sampling noise only.
    """
    result: dict[date, dict[Channel, DayPlan]] = {day: {} for day in config.dates}
    for channel in Channel:
        count, amount = PUBLISHED[config.volumes].payments[channel]
        per_weight = config.scale * count / _weight_sum(config.volumes)
        mean_fils = Fraction(amount, count)
        expected, previous = 0.0, 0
        for day in config.dates:
            expected += per_weight * day_weight(day)
            cumulative = round(expected)
            statuses = {SUCCESS_RAW[channel]: cumulative - previous}
            for raw, rate in EXTRA_RAW_RATES[channel].items():
                statuses[raw] = round(cumulative * rate) - round(previous * rate)
            fils = round(cumulative * mean_fils) - round(previous * mean_fils)
            result[day][channel] = DayPlan(statuses, fils)
            previous = cumulative
    return result


def _bhd(fils: int) -> str:
    return f"{fils // 1000}.{fils % 1000:03d}"


@functools.cache
def _clock() -> list[str]:
    return [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)]


@functools.cache
def _midnight_utc_ms(day: date) -> int:
    return ((day - date(1970, 1, 1)).days * 86_400 - 3 * 3_600) * 1000  # Bahrain is UTC+3


class _Slot(NamedTuple):
    """What the three shapes share: Bahrain day and second, service, fils, raw outcome."""

    day: date
    sod: int
    code: str
    entity: str
    fils: int
    raw: str


@dataclass
class _Draft:
    """A day's events of one channel before they get times and ids: outcomes, services, fils."""

    raws: list[str]
    codes: list[str]
    raw_fils: list[float]
    fils: list[int] = field(default_factory=list)


@dataclass
class _Valid:
    """A valid event kept until its file is written (late ones wait for a later day)."""

    event: Event
    line: bytes
    status: PaymentStatus
    fils: int
    event_date: date


@dataclass
class _Totals:
    """The generator's ground truth, accumulated while writing."""

    money: dict[tuple[date, Channel, PaymentStatus], list[int]] = field(  # [count, fils]
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    invalid: dict[str, int] = field(default_factory=lambda: dict.fromkeys(defects.INVALID_KINDS, 0))
    files: dict[str, int] = field(default_factory=dict)
    valid: int = 0
    duplicates: int = 0
    conflicts: int = 0
    late: int = 0
    full_pan: int = 0

    def record(self, valid: _Valid, channel: Channel, late: bool) -> None:
        money = self.money[valid.event_date, channel, valid.status]
        money[0] += 1
        money[1] += valid.fils
        self.valid += 1
        self.late += late
        self.full_pan += channel is _K and not valid.event["card"].startswith("*")

    def _sum(self, days: list[date], channel: Channel, status: PaymentStatus) -> dict[str, Any]:
        pairs = [self.money.get((day, channel, status), [0, 0]) for day in days]
        return {"count": sum(p[0] for p in pairs), "amount": _bhd(sum(p[1] for p in pairs))}

    def as_dict(self, config: GeneratorConfig) -> dict[str, Any]:
        """The totals file's content (see `generate`); amounts are 3-decimal strings."""
        days = config.dates
        by_date = {
            day.isoformat(): {
                ch.value: {st.value: self._sum([day], ch, st) for st in PaymentStatus}
                for ch in Channel
            }
            for day in days
        }
        knobs = asdict(config)
        # Earlier releases knew only H1 2017's volumes and every invalid kind: the totals
        # files of those configurations stay byte-equal.
        if config.volumes == GeneratorConfig.volumes:
            del knobs["volumes"]
        if config.invalid_kinds == GeneratorConfig.invalid_kinds:
            del knobs["invalid_kinds"]
        return {
            "config": {**knobs, "start": days[0].isoformat(), "end": days[-1].isoformat()},
            "lines_written": sum(self.files.values()),
            "valid_events": self.valid,
            "invalid_lines": sum(self.invalid.values()),
            "duplicate_lines": self.duplicates,
            "conflict_lines": self.conflicts,
            "late_events": self.late,
            "full_pan_kiosk_events": self.full_pan,
            "invalid_by_kind": dict(self.invalid),
            "by_channel_status": {
                ch.value: {st.value: self._sum(days, ch, st) for st in PaymentStatus}
                for ch in Channel
            },
            "by_event_date_channel": {
                day: {ch: sum(m["count"] for m in st.values()) for ch, st in chans.items()}
                for day, chans in by_date.items()
            },
            "by_event_date_channel_status": by_date,
            "files": dict(self.files),
        }


class _Generator:
    """One run: a single seeded random stream consumed in a fixed order (day, channel, event)."""

    def __init__(self, config: GeneratorConfig, catalogue: Catalogue) -> None:
        self.cfg, self.rng, self.catalogue = config, random.Random(config.seed), catalogue
        self.plan, self.last_day = plan(config), config.dates[-1]
        self.tables = {channel: self._service_table(channel) for channel in Channel}
        self.kiosk_cum = list(accumulate(weight for _, _, weight in _KIOSKS))
        self.kiosk_seq = [10_000 + self.rng.randrange(90_000) for _ in _KIOSKS]
        self.portal_no: dict[date, int] = defaultdict(int)
        self.quotas: dict[tuple[str, Channel], float] = defaultdict(float)
        self.drafts: dict[tuple[date, Channel], _Draft] = {}
        self.invalid_turn = 0
        self.late: dict[tuple[date, Channel], list[_Valid]] = defaultdict(list)
        self.carried: dict[tuple[date, Channel], list[bytes]] = defaultdict(list)
        self.totals = _Totals()
        self._draft()

    def _service_table(self, channel: Channel) -> tuple[list[str], list[float], dict[str, float]]:
        """Codes, cumulative weights and mean fils per code, calibrated for one channel.

        All fees of a channel are multiplied by one factor so that the expected mean payment is
        the published one; `_fit` then only has to absorb sampling noise.
        """
        codes = self.catalogue.codes_for(channel)
        weights = [_SERVICE_WEIGHTS[channel].get(code, 1.0) for code in codes]
        fee_of = {s.code: float(s.typical_fee_bhd) * 1000 for s in self.catalogue.services}
        mean_fee = sum(w * fee_of[c] for w, c in zip(weights, codes, strict=True)) / sum(weights)
        count, amount = PUBLISHED[self.cfg.volumes].payments[channel]
        factor = amount / count / mean_fee
        return codes, list(accumulate(weights)), {c: fee_of[c] * factor for c in codes}

    def _quota(self, name: str, channel: Channel, n: int, rate: float) -> int:
        """How many of `n` items get a treatment at `rate`, rounded cumulatively (no drift)."""
        before = self.quotas[name, channel]
        self.quotas[name, channel] = before + n * rate
        return round(before + n * rate) - round(before)

    def _cpr(self) -> str:
        value = self.rng.randrange(60 * 12 * 100_000)  # YYMM of birth (1940-99), then 5 digits
        return f"{40 + value // 1_200_000:02d}{1 + value // 100_000 % 12:02d}{value % 100_000:05d}"

    def _event(self, ch: Channel, day: date, sod: int, code: str, fils: int, raw: str) -> Event:
        """One event in the channel's own shape (contract.md); ids are taken in time order."""
        service = self.catalogue.get(code)
        slot = _Slot(day, sod, code, service.entity if service else "IGA", fils, raw)
        return {_P: self._portal, _M: self._mobile, _K: self._kiosk}[ch](slot)

    def _portal(self, s: _Slot) -> Event:
        self.portal_no[s.day] += 1
        if self.portal_no[s.day] > 999_999:
            raise ValueError("scale too large: portal txn_id allows 999,999 per day")
        txn_id = f"PTL-{s.day.year}-{s.day.timetuple().tm_yday:03d}{self.portal_no[s.day]:06d}"
        method = self.rng.choices(_PORTAL_METHODS, cum_weights=_PORTAL_CUM)[0]
        return {"channel": "portal", "txn_id": txn_id,
                "service": {"code": s.code, "entity": s.entity}, "amount_fils": s.fils,
                "currency": "BHD", "status": s.raw, "paid_at": f"{s.day}T{_clock()[s.sod]}+03:00",
                "payer": {"cpr": self._cpr()}, "method": method,
                "gateway_ref": f"BNF{self.rng.randrange(10_000_000):07d}"}  # fmt: skip

    def _mobile(self, s: _Slot) -> Event:
        rng = self.rng
        os_name = rng.choices(_OSES, cum_weights=_OS_CUM)[0]
        methods, cum = _APP_METHODS[os_name]
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))  # seeded, not uuid4()
        app = {"id": _APP_BY_ENTITY.get(s.entity, "egov"), "version": rng.choice(_APP_VERSIONS),
               "os": os_name}  # fmt: skip
        method = rng.choices(methods, cum_weights=cum)[0]
        payment = {"amount": _bhd(s.fils), "currency": "BHD", "method": method, "outcome": s.raw}
        return {"channel": "mobile_app", "event_id": event_id, "app": app,
                "service_code": s.code, "payment": payment,
                "ts": _midnight_utc_ms(s.day) + s.sod * 1000 + rng.randrange(1000),
                "user": {"cpr": self._cpr()}}  # fmt: skip

    def _kiosk(self, s: _Slot) -> Event:
        rng = self.rng
        kiosk = rng.choices(range(len(_KIOSKS)), cum_weights=self.kiosk_cum)[0]
        self.kiosk_seq[kiosk] += 1
        full_pan = self._quota("full_pan", _K, 1, self.cfg.full_pan_rate) > 0
        card = defects.luhn_pan(rng) if full_pan else f"{'*' * 12}{rng.randrange(10_000):04d}"
        event: Event = {"channel": "kiosk", "kiosk_id": _KIOSKS[kiosk][0],
                        "seq": self.kiosk_seq[kiosk], "site": _KIOSKS[kiosk][1],
                        "service": s.code, "amount": _bhd(s.fils),
                        "local_time": f"{s.day} {_clock()[s.sod]}", "result": s.raw,
                        "card": card}  # fmt: skip
        if rng.random() < 0.5:  # the cpr is optional on kiosks: about half carry one
            event["cpr"] = self._cpr()
        return event

    def _times(self, channel: Channel, n: int) -> list[int]:
        """Sorted Bahrain seconds-of-day following the channel's hourly rhythm."""
        hours = self.rng.choices(range(24), weights=_HOURLY[channel], k=n)
        return sorted(h * 3600 + self.rng.randrange(3600) for h in hours)

    def _draft(self) -> None:
        """First pass: outcome, service and amount of every planned event of the window.

        Successful amounts of a channel are then scaled by one common factor, so the window's
        total is exactly the plan's while every payment keeps its relative size: no day or
        service is distorted more than any other.
        """
        for day in self.cfg.dates:
            for channel in Channel:
                raws = [r for r, n in self.plan[day][channel].statuses.items() for _ in range(n)]
                self.rng.shuffle(raws)
                codes, cum, mean_fils = self.tables[channel]
                chosen = self.rng.choices(codes, cum_weights=cum, k=len(raws))
                spread = [self.rng.lognormvariate(-(_SIGMA**2) / 2, _SIGMA) for _ in chosen]
                raw_fils = [mean_fils[code] * x for code, x in zip(chosen, spread, strict=True)]
                self.drafts[day, channel] = _Draft(raws, chosen, raw_fils)
        for channel in Channel:
            self._fit(channel)

    def _fit(self, channel: Channel) -> None:
        """Round the drafted amounts to fils, successful ones summing exactly to the plan."""
        success, drafts = SUCCESS_RAW[channel], [self.drafts[d, channel] for d in self.cfg.dates]
        target = sum(self.plan[day][channel].success_amount_fils for day in self.cfg.dates)
        raw_total = sum(
            f for d in drafts for r, f in zip(d.raws, d.raw_fils, strict=True) if r == success
        )
        factor = target / raw_total if raw_total else 1.0
        paid, largest = 0, (0, -1, -1)  # (fils, draft, index) of the largest successful payment
        for n, draft in enumerate(drafts):
            draft.fils, draft.raw_fils = [max(1, round(f * factor)) for f in draft.raw_fils], []
            for i, raw in enumerate(draft.raws):
                if raw == success:
                    paid += draft.fils[i]
                    largest = max(largest, (draft.fils[i], n, i))
        fils, n, i = largest
        if n >= 0:  # the rounding residue, a few fils, goes to the largest payment
            drafts[n].fils[i] = max(1, fils + target - paid)

    def day_events(self, day: date, channel: Channel) -> list[_Valid]:
        """The planned valid events of one Bahrain day and channel, in time order."""
        draft = self.drafts.pop((day, channel))
        times = self._times(channel, len(draft.raws))
        out = []
        for sod, code, fils, raw in zip(times, draft.codes, draft.fils, draft.raws, strict=True):
            event = self._event(channel, day, sod, code, fils, raw)
            out.append(_Valid(event, orjson.dumps(event), NORMALISED[raw], fils, day))
        return out

    def _defer_late(self, day: date, channel: Channel, events: list[_Valid]) -> list[_Valid]:
        """Move some events into the file of a day 1-5 days later; return the on-time ones."""
        room = (self.last_day - day).days
        if room < 1 or not events:
            return events
        k = min(len(events), self._quota("late", channel, len(events), self.cfg.late_rate))
        picked = set(self.rng.sample(range(len(events)), k))
        for i in sorted(picked):
            delivery = day + timedelta(days=self.rng.randint(1, min(5, room)))
            self.late[delivery, channel].append(events[i])
        return [valid for i, valid in enumerate(events) if i not in picked]

    def _redeliver(
        self, key: float, n: int, line: bytes, day: date, channel: Channel
    ) -> list[tuple[float, bytes]]:
        """Place a redelivery after its original: later in this file, or in the next day's."""
        if day < self.last_day and self.rng.random() < 0.5:
            self.carried[day + timedelta(days=1), channel].append(line)
            return []
        return [(key + 1e-6 + self.rng.random() * (n - key), line)]

    def file_lines(self, day: date, channel: Channel) -> list[bytes]:
        """All lines of one file: originals, late arrivals, redeliveries and invalid lines.

        Each line gets a sort key; originals are in time order, everything else lands at a
        random place, except that a redelivery always comes after its original.
        """
        rng, cfg, totals = self.rng, self.cfg, self.totals
        on_time = self._defer_late(day, channel, self.day_events(day, channel))
        late = self.late.pop((day, channel), [])
        n = len(on_time) + len(late)
        originals = [(float(i), v) for i, v in enumerate(on_time)]
        originals += [(rng.random() * n, v) for v in late]
        for i, (_, valid) in enumerate(originals):
            totals.record(valid, channel, late=i >= len(on_time))
        entries = [(key, valid.line) for key, valid in originals]
        entries += [(rng.random() * n, line) for line in self.carried.pop((day, channel), [])]
        k = min(n, self._quota("dup", channel, n, cfg.duplicate_rate))
        for key, valid in (originals[i] for i in rng.sample(range(n), k)):
            entries += self._redeliver(key, n, valid.line, day, channel)
        totals.duplicates += k
        k = min(n, self._quota("conflict", channel, n, cfg.conflict_rate))
        for key, valid in (originals[i] for i in rng.sample(range(n), k)):
            conflict = defects.make_conflict(valid.line, valid.fils, rng)
            entries += self._redeliver(key, n, conflict, day, channel)
        totals.conflicts += k
        # A channel none of the chosen kinds can break (only wrong_currency, for a kiosk) gets
        # no invalid line.
        can_break = set(cfg.invalid_kinds) & set(defects.kinds_for(channel))
        for _ in range(self._quota("invalid", channel, n, cfg.invalid_rate) if can_break else 0):
            entries.append((rng.random() * max(n, 1), self._invalid(day, channel)))
        entries.sort(key=lambda entry: entry[0])  # stable: ties keep insertion order
        return [line for _, line in entries]

    def _invalid(self, day: date, channel: Channel) -> bytes:
        """An invalid line; kinds rotate over all channels so that every kind shows up soon."""
        kinds, applicable = self.cfg.invalid_kinds, defects.kinds_for(channel)
        while kinds[self.invalid_turn % len(kinds)] not in applicable:
            self.invalid_turn += 1
        kind = kinds[self.invalid_turn % len(kinds)]
        self.invalid_turn += 1
        self.totals.invalid[kind] += 1
        codes, cum, mean_fils = self.tables[channel]
        code = self.rng.choices(codes, cum_weights=cum)[0]
        sod, fils = self._times(channel, 1)[0], round(mean_fils[code])
        event = self._event(channel, day, sod, code, fils, SUCCESS_RAW[channel])
        return defects.make_invalid(kind, event, self.rng)


def _write(path: str, lines: list[bytes], compress: bool) -> None:
    """Write one file; gzip has no name or mtime in its header, so reruns are byte-identical."""
    data = b"".join(line + b"\n" for line in lines)
    with open(path, "wb") as raw:
        if not compress:
            raw.write(data)
            return
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            gz.write(data)


def generate(config: GeneratorConfig, out_dir: str) -> dict[str, Any]:
    """Write `<out>/<YYYY-MM-DD>/<channel>.jsonl[.gz]` and the totals file; return the totals.

    Valid events are counted once, at their first occurrence in input order (sorted path,
    then line); exact redeliveries, conflicting ones and invalid lines are extra lines.
    """
    gen = _Generator(config, load_catalogue())
    suffix = ".jsonl.gz" if config.gzip else ".jsonl"
    for day in config.dates:
        os.makedirs(os.path.join(out_dir, day.isoformat()), exist_ok=True)
        for channel in Channel:
            lines = gen.file_lines(day, channel)
            relative = f"{day.isoformat()}/{channel.value}{suffix}"
            _write(os.path.join(out_dir, relative), lines, config.gzip)
            gen.totals.files[relative] = len(lines)
    totals = gen.totals.as_dict(config)
    with open(os.path.join(out_dir, TOTALS_FILE), "wb") as handle:
        handle.write(orjson.dumps(totals, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return totals


_KNOBS = (
    ("invalid", "extra invalid lines, spread over every kind"),
    ("duplicate", "extra exact redeliveries (same or next day's file)"),
    ("conflict", "extra same-id lines with a changed amount"),
    ("late", "events delivered 1-5 days after their Bahrain day"),
    ("full-pan", "kiosk events carrying a full card number"),
)


def _kinds(text: str) -> tuple[str, ...]:
    """--invalid-kinds: a comma-separated list, or `realistic` (every kind but huge_line)."""
    if text.strip() == "realistic":
        return defects.REALISTIC_INVALID_KINDS
    return tuple(kind.strip() for kind in text.split(",") if kind.strip())


def _parse_args(argv: list[str] | None) -> tuple[GeneratorConfig, str]:
    parser = cli.Parser(
        prog="python -m tools.generate",
        description="Write seeded raw payment events as <out>/<YYYY-MM-DD>/<channel>.jsonl, one "
        "file per channel per Bahrain day, plus <out>/_generator_totals.json (ground truth). "
        "A profile sets the defaults; every other option overrides it. Rates are fractions "
        "of the valid events.",
        epilog=cli.exit_statuses("when the files are written"),
    )
    add = parser.add_argument
    add("--out", required=True, help="output directory, e.g. landing/")
    add("--profile", choices=sorted(PROFILES), default="sample",
        help="sample (default): 2017-06-24..30, scale 0.1, 1%% invalid, 0.5%% duplicates, "
        "0.1%% conflicts, 2%% late, 5%% kiosk full PANs; h1-2016, h1-2017, fy-2020, fy-2021: "
        "that whole period at its published volume (with --scale, a fraction of it), no "
        "defects")  # fmt: skip
    add("--start", type=date.fromisoformat, help="first Bahrain day, YYYY-MM-DD")
    span = parser.add_mutually_exclusive_group()
    span.add_argument("--days", type=int, help="number of days")
    span.add_argument("--end", type=date.fromisoformat, help="last Bahrain day, inclusive")
    add(
        "--scale",
        type=float,
        help="volume; 1.0 = the profile's published payments per day (sample: H1 2017's)",
    )
    add("--seed", type=int, help="random seed: same options and seed give the same bytes")
    for knob, what in _KNOBS:
        add(f"--{knob}-rate", type=float, metavar="F", help=what)
    add("--invalid-kinds", metavar="K,K", type=_kinds,
        help="the invalid kinds to rotate over (default: all), or `realistic` for all but "
        "huge_line: " + ", ".join(defects.INVALID_KINDS))  # fmt: skip
    add("--gzip", action="store_true", default=None, help="write .jsonl.gz files")
    args = vars(parser.parse(argv))
    cli.check_output(args["out"], "--out")
    out, end, profile = args.pop("out"), args.pop("end"), PROFILES[args.pop("profile")]
    config = replace(profile, **{key: value for key, value in args.items() if value is not None})
    if end is not None:
        config = replace(config, days=(end - config.start).days + 1)
    return config, out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (`payments-generate`): generate, then print what was written."""
    try:
        config, out = _parse_args(argv)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    t = generate(config, out)
    print(f"{out}: {len(t['files'])} files, {t['lines_written']:,} lines in "
          f"{time.perf_counter() - began:.1f} s ({config.start}..{config.dates[-1]}, "
          f"scale {config.scale}, seed {config.seed})")  # fmt: skip
    print(f"  valid {t['valid_events']:,} (late {t['late_events']:,}), invalid "
          f"{t['invalid_lines']:,}, duplicates {t['duplicate_lines']:,}, conflicts "
          f"{t['conflict_lines']:,}, kiosk full PANs {t['full_pan_kiosk_events']:,}")  # fmt: skip
    for channel, statuses in t["by_channel_status"].items():
        ok = statuses[PaymentStatus.SUCCESS.value]
        print(f"  {channel:<10} successful {ok['count']:>9,}  {ok['amount']:>16} BHD")
    print(f"  ground truth: {os.path.join(out, TOTALS_FILE)}")
    others = [p for p in glob.glob(os.path.join(out, "*", "*.jsonl*"))
              if os.path.relpath(p, out).replace(os.sep, "/") not in t["files"]]  # fmt: skip
    if others:  # input globs would read them too, and the totals would not match
        print(f"warning: {len(others)} older files under {out}, e.g. {others[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
