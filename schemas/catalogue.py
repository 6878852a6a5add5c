"""The service catalogue: reference data shipped with the package, not fetched at run time.

It lives in ``schemas/data/services.csv`` so that enrichment and the generator see the same
codes on a laptop and on a Dataflow worker, with no network or bucket access needed.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable, Iterator
from decimal import Decimal
from importlib import resources
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.enums import Channel

_CODE_PATTERN = r"^[A-Z0-9]+(-[A-Z0-9]+)*$"

# The channels as iGA's reports name them, in English and Arabic (the reports' own words).
CHANNEL_NAMES: dict[Channel, tuple[str, str]] = {
    Channel.PORTAL: ("National portal (bahrain.bh)", "البوابة الوطنية (bahrain.bh)"),
    Channel.MOBILE_APP: (
        "Government apps (bahrain.bh/apps)",
        "التطبيقات الحكومية (bahrain.bh/apps)",
    ),
    Channel.KIOSK: ("Self-service kiosks", "أجهزة الخدمة الذاتية"),
}


class Service(BaseModel):
    """One payable e-service. Frozen so a cached catalogue can be shared without copies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Annotated[str, Field(pattern=_CODE_PATTERN)]
    name_en: Annotated[str, Field(min_length=1)]
    name_ar: Annotated[str, Field(min_length=1)]
    entity: Annotated[str, Field(min_length=1)]
    sector: Annotated[str, Field(min_length=1)]
    channels: frozenset[Channel]
    # BHD has three minor digits: a fourth decimal in reference data is a typo, not precision.
    typical_fee_bhd: Annotated[Decimal, Field(max_digits=18, decimal_places=3, gt=0)]


class Catalogue:
    """Services indexed by code. Duplicate codes are refused: enrichment would be ambiguous."""

    def __init__(self, services: Iterable[Service]) -> None:
        self._by_code: dict[str, Service] = {}
        for service in services:
            if service.code in self._by_code:
                raise ValueError(f"duplicate service code in catalogue: {service.code}")
            self._by_code[service.code] = service

    def get(self, code: str) -> Service | None:
        """The service with this code, or None: unknown codes are a warning, not an error."""
        return self._by_code.get(code)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __len__(self) -> int:
        return len(self._by_code)

    def __iter__(self) -> Iterator[Service]:
        return iter(self._by_code.values())

    @property
    def services(self) -> list[Service]:
        """All services, in file order (a copy, so callers cannot mutate the index)."""
        return list(self._by_code.values())

    def codes_for(self, channel: Channel) -> list[str]:
        """Codes offered on one channel, sorted so that seeded consumers stay deterministic."""
        return sorted(s.code for s in self._by_code.values() if channel in s.channels)


def _parse(text: str) -> Catalogue:
    """Build a catalogue from CSV text; ``channels`` is a ``|``-separated list of channels."""
    rows = csv.DictReader(io.StringIO(text))
    return Catalogue(
        Service.model_validate({**row, "channels": frozenset(row["channels"].split("|"))})
        for row in rows
    )


@functools.lru_cache(maxsize=1)
def _default_catalogue() -> Catalogue:
    """The packaged catalogue, parsed once per process (workers enrich millions of rows)."""
    text = resources.files("schemas").joinpath("data/services.csv").read_text(encoding="utf-8")
    return _parse(text)


def load_catalogue(path: str | None = None) -> Catalogue:
    """Load the packaged catalogue (cached), or a CSV at ``path`` (not cached: tests vary it)."""
    if path is None:
        return _default_catalogue()
    with open(path, encoding="utf-8", newline="") as handle:
        return _parse(handle.read())
